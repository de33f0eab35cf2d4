// Proves the client library against a real server: every call, every kind of source and sink,
// streaming without loading large files whole, the pool, typed errors, and timeouts (never a hang).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createReadStream, createWriteStream, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect, ConnectionError, ProtocolError, ServerError, TimeoutError, type FsgwClient } from "../../src/client/client";
import { payload, sha256, sha256File } from "../helpers/data";
import { startServer, tempDir, type TestServer } from "../helpers/server";

let server: TestServer;
let client: FsgwClient;
const dir = tempDir("client");

beforeAll(async () => {
  server = await startServer({});
  client = connect({ host: "127.0.0.1", port: server.port, poolSize: 4 });
});
afterAll(async () => {
  client.close();
  await server.stop();
});

describe("client", () => {
  test("upload bytes, then exist, download (bytes), delete", async () => {
    const body = payload(70_000, 1);
    await client.upload("bytes", body);
    expect(await client.exist("bytes")).toEqual({ size: 70_000, type: "file", digest: sha256(body) });
    expect(sha256(await client.download("bytes"))).toBe(sha256(body));
    await client.delete("bytes");
    await client.bench("still-here");
  });

  test("upload a file by path and download into a file by path, streamed, equal by SHA-256", async () => {
    const src = join(dir, "src.bin");
    writeFileSync(src, payload(20 * 1024 * 1024 + 13, 2));
    const seen: number[] = [];
    await client.upload("from-file", src, { onProgress: (done) => seen.push(done) });
    expect(seen.length).toBeGreaterThan(10); // streamed in pieces, not in one
    expect(seen.at(-1)).toBe(20 * 1024 * 1024 + 13);
    const out = join(dir, "out.bin");
    const n = await client.download("from-file", out);
    expect(n).toBe(20 * 1024 * 1024 + 13);
    expect(await sha256File(out)).toBe(await sha256File(src));
    expect(readdirSync(dir).filter((f) => f.includes("fsgw-part"))).toEqual([]);
  });

  test("upload from a web ReadableStream and a node Readable, with and without a size", async () => {
    const body = payload(300_000, 3);
    const web = () => new Blob([body]).stream();
    await client.upload("web-sized", web(), { size: body.length });
    await client.upload("web-unsized", web()); // spooled to a temporary file to learn its size
    const file = join(dir, "node-src.bin");
    writeFileSync(file, body);
    await client.upload("node-unsized", createReadStream(file));
    for (const key of ["web-sized", "web-unsized", "node-unsized"]) expect(sha256(await client.download(key))).toBe(sha256(body));
    await expect(client.upload("wrong-size", web(), { size: body.length + 1 })).rejects.toThrow("ended after");
  });

  test("download into a node Writable and a web WritableStream", async () => {
    const body = payload(500_000, 4);
    await client.upload("sinks", body);
    const nodeOut = join(dir, "node-sink.bin");
    const ws = createWriteStream(nodeOut);
    await client.download("sinks", ws);
    await new Promise<void>((r) => ws.end(r));
    expect(sha256(readFileSync(nodeOut))).toBe(sha256(body));
    const parts: Uint8Array[] = [];
    await client.download("sinks", new WritableStream<Uint8Array>({ write: (p) => void parts.push(p) }));
    expect(sha256(Buffer.concat(parts))).toBe(sha256(body));
  });

  test("server error texts are ServerErrors with the op, key and text; the connection stays usable", async () => {
    const e = await client.download("no-such-file").catch((x) => x);
    expect(e).toBeInstanceOf(ServerError);
    expect(e).toMatchObject({ op: "download", key: "no-such-file", text: "no such key" });
    expect(await client.exist("../etc/passwd").catch((x: ServerError) => x.text)).toBe("invalid key: contains the segment '..'");
    expect(await client.delete("nope").catch((x: ServerError) => x.text)).toBe("no such key");
    // A failed download into a file leaves no file and no partial file behind.
    await client.download("no-such-file", join(dir, "never.bin")).catch(() => {});
    expect(existsSync(join(dir, "never.bin"))).toBe(false);
    await client.bench();
  });

  test("concurrent calls share the pool: 40 calls over 4 connections", async () => {
    const bodies = Array.from({ length: 40 }, (_, i) => payload(10_000 + i, 100 + i));
    await Promise.all(bodies.map((b, i) => client.upload(`pool-${i}`, b)));
    const back = await Promise.all(bodies.map((_, i) => client.download(`pool-${i}`)));
    expect(back.map(sha256)).toEqual(bodies.map(sha256));
  });

  test("an unreachable server is a ConnectionError", async () => {
    const c = connect({ host: "127.0.0.1", port: 1, timeoutMs: 2000 });
    await expect(c.bench()).rejects.toBeInstanceOf(ConnectionError);
    c.close();
  });

  test("a server that says nothing is a TimeoutError, not a hang; one that breaks the protocol is a ProtocolError", async () => {
    const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const c1 = connect({ host: "127.0.0.1", port: silent.port, timeoutMs: 300 });
    const started = Date.now();
    await expect(c1.exist("x")).rejects.toBeInstanceOf(TimeoutError);
    expect(Date.now() - started).toBeLessThan(3000);
    c1.close();
    silent.stop(true);

    const rude = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data: (s) => void s.write(new Uint8Array([0xff, 0xff, 0xff, 0x7f])) } });
    const c2 = connect({ host: "127.0.0.1", port: rude.port, timeoutMs: 2000 });
    await expect(c2.exist("x")).rejects.toBeInstanceOf(ProtocolError);
    c2.close();
    rude.stop(true);

    const hangup = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data: (s) => void s.end() } });
    const c3 = connect({ host: "127.0.0.1", port: hangup.port, timeoutMs: 2000 });
    await expect(c3.exist("x")).rejects.toBeInstanceOf(ConnectionError);
    c3.close();
    hangup.stop(true);
  });
});
