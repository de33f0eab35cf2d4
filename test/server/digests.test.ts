// End-to-end digests (extension field Digest): the server stores a body only when it hashes to
// the SHA-256 the client announced, records every stored file's digest with it (surviving a
// restart), answers it in exist and download, and the client checks downloads against it. Every
// size class and both body paths: through memory (small bodies, zeroCopy off) and by splice.
import { afterEach, describe, expect, test } from "bun:test";
import { openSync, readdirSync, writeSync, closeSync, readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { connect, DigestMismatchError, ServerError } from "../../src/client/client";
import { existExchange, uploadExchange } from "../../src/client/exchanges";
import { WireConn } from "../../src/client/wire-conn";
import { runClientCommand, type Io } from "../../src/cli/client-commands";
import { payload, sha256 } from "../helpers/data";
import { storedBody, tempFiles } from "../helpers/fs";
import { startServer, tempDir, type TestServer } from "../helpers/server";

let server: TestServer | null = null;
afterEach(async () => {
  await server?.stop();
  server = null;
});

const MiB = 1024 * 1024;

/** The path of a stored key's file (keys without '/'). */
function fileOf(dataDir: string, key: string): string {
  for (const shard of readdirSync(dataDir)) if (existsSync(join(dataDir, shard, key))) return join(dataDir, shard, key);
  throw new Error(`${key} is not stored`);
}

async function uploadWith(conn: WireConn, key: string, body: Uint8Array, digest: string): Promise<string> {
  try {
    return await uploadExchange(conn, key, body.length, (c) => c.write(body), digest);
  } catch (e) {
    if (e instanceof ServerError) return `refused: ${e.text}`;
    throw e;
  }
}

for (const [name, fields] of [
  ["spliced bodies (zeroCopy on)", { zeroCopy: true }],
  ["bodies through memory (zeroCopy off)", { zeroCopy: false }],
] as const) {
  describe(name, () => {
    test("match and mismatch at every size class; a mismatch stores nothing and the previous body survives", async () => {
      server = await startServer(fields);
      const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
      for (const size of [1, 5 * 1024, MiB, 64 * MiB]) {
        const key = `sized-${size}`;
        const first = payload(size, 1);
        const second = payload(size, 2);
        // Stored with the right digest: the END reply and exist carry it.
        expect(await uploadWith(conn, key, first, sha256(first))).toBe(sha256(first));
        expect((await existExchange(conn, key)).digest).toBe(sha256(first));
        // Another body announced with the first one's digest: refused, nothing replaced.
        expect(await uploadWith(conn, key, second, sha256(first))).toBe("refused: digest mismatch");
        expect(sha256(storedBody(server.dataDir, key)!)).toBe(sha256(first));
        expect((await existExchange(conn, key)).digest).toBe(sha256(first));
        // The connection is still in step, and an upload with no digest is recorded all the same.
        expect(await uploadWith(conn, key, second, "")).toBe(sha256(second));
        expect((await existExchange(conn, key)).digest).toBe(sha256(second));
      }
      expect(await uploadWith(conn, "bad", payload(10, 3), "not-a-digest")).toBe("refused: invalid digest: expected the SHA-256 as 64 hex digits");
      conn.close();
      expect(tempFiles(server.dataDir)).toEqual([]);
    }, 60_000);
  });
}

test("a digest survives a restart; the client checks downloads against it and refuses damaged bytes", async () => {
  server = await startServer({});
  const dataDir = server.dataDir;
  let client = connect({ port: server.port });
  const body = payload(300_000, 9);
  await client.upload("kept", body); // the client sends the digest by default
  client.close();
  await server.stop();
  server = await startServer({ dataDir });
  client = connect({ port: server.port });
  expect((await client.exist("kept")).digest).toBe(sha256(body));
  expect(sha256(await client.download("kept"))).toBe(sha256(body));
  // Damage the stored bytes behind the server's back (same size, the attribute untouched).
  const fd = openSync(fileOf(dataDir, "kept"), "r+");
  writeSync(fd, new Uint8Array([body[1000]! ^ 0xff]), 0, 1, 1000);
  closeSync(fd);
  const err = await client.download("kept").catch((e) => e);
  expect(err).toBeInstanceOf(DigestMismatchError);
  expect((err as Error).message).toContain(`the server recorded ${sha256(body)}`);
  // A range is not checked against the whole file's digest: it is served as stored.
  const parts: Uint8Array[] = [];
  const n = await client.download("kept", new WritableStream<Uint8Array>({ write: (p) => void parts.push(p) }), { range: { offset: 999, length: 3 } });
  expect([n, [...Buffer.concat(parts)]]).toEqual([3, [body[999]!, body[1000]! ^ 0xff, body[1001]!]]);
  const dir = tempDir("digest-cli");
  const out: string[] = [];
  const io: Io = { stdout: (t) => void out.push(t), stderr: { isTTY: false, columns: 80, write: (t) => void out.push(t) }, stdoutBytes: () => {} };
  const target = join(dir, "kept.bin");
  expect(await runClientCommand("get", ["kept", "-o", target, "--port", String(server.port)], io)).toBe(1);
  expect(out.join("")).toContain("digest mismatch");
  expect(existsSync(target)).toBe(false);
  expect(await runClientCommand("get", ["kept", "-o", target, "--no-verify", "--port", String(server.port)], io)).toBe(0);
  client.close();
});

test("the bun engine checks announced digests but records none (node:fs has no extended attributes)", async () => {
  server = await startServer({ ioEngine: "bun" });
  const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
  const body = payload(200_000, 4);
  expect(await uploadWith(conn, "b", body, sha256(payload(200_000, 5)))).toBe("refused: digest mismatch");
  expect(await uploadWith(conn, "b", body, sha256(body))).toBe(sha256(body)); // END says what it hashed
  expect((await existExchange(conn, "b")).digest).toBeUndefined(); // but it is not recorded
  conn.close();
});
