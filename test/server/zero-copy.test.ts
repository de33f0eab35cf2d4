// Proves zero-copy bodies (zeroCopy: sendfile from the file to the socket for downloads, splice from
// the socket to the file for uploads) lose, duplicate and reorder no byte: pipelined requests
// around them, clients that hang up mid-body, one that stops reading (the idle timeout still
// comes), a 256 MiB file both ways compared by SHA-256 (many sendfile and splice calls); and
// the Bun behaviours the path relies on: `socket.fd` is the connection's own descriptor (checked
// with getsockname/getpeername; the stats show sendfile was used), a write Bun reports whole is in
// the kernel before the store writes behind it (replies in order), SIGPIPE is ignored.
import { afterEach, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { downloadExchange, existExchange, uploadExchange } from "../../src/client/exchanges";
import { WireConn } from "../../src/client/wire-conn";
import { protobufCodec } from "../../src/protocol/codec";
import { Msg, Op } from "../../src/protocol/message";
import { payload, sha256 } from "../helpers/data";
import { eventually, freePort, startServer, type TestServer } from "../helpers/server";

let server: TestServer | null = null;
afterEach(async () => {
  await server?.stop();
  server = null;
});

async function stats(adminPort: number): Promise<{ zeroCopy: { downloads: number; uploads: number; fallbacks: number }; connectionBugs: number }> {
  return (await (await fetch(`http://127.0.0.1:${adminPort}/debug/stats`)).json()) as never;
}
const openFds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

test("pipelined requests around sendfile downloads are answered in order, bodies exact; sendfile was used; SIGPIPE is ignored", async () => {
  const adminPort = freePort();
  server = await startServer({ zeroCopy: true, adminPort });
  const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
  const bodies = new Map<string, Uint8Array>();
  for (const [key, size] of [["small", 3000], ["mid", 200_000], ["large", 5_000_000]] as const) {
    const body = payload(size, size);
    bodies.set(key, body);
    await uploadExchange(conn, key, size, (c) => c.write(body));
  }
  // One write holding a download, an exist, two downloads and a bench; then read every reply.
  const frames = [
    protobufCodec.encodeFrame({ operation: Op.DOWNLOAD, key: "large" }),
    protobufCodec.encodeFrame({ operation: Op.DOWNLOAD, key: "large", message: Msg.ACK }),
    protobufCodec.encodeFrame({ operation: Op.EXIST, key: "mid" }),
    protobufCodec.encodeFrame({ operation: Op.DOWNLOAD, key: "small" }),
    protobufCodec.encodeFrame({ operation: Op.DOWNLOAD, key: "small", message: Msg.ACK }),
    protobufCodec.encodeFrame({ operation: Op.DOWNLOAD, key: "mid" }),
    protobufCodec.encodeFrame({ operation: Op.DOWNLOAD, key: "mid", message: Msg.ACK }),
    protobufCodec.encodeFrame({ operation: Op.BENCH_MARK, key: "after" }),
  ];
  await conn.write(Buffer.concat(frames));
  const readDownload = async (key: string) => {
    const start = await conn.readFrame();
    expect([start.operation, start.message, start.size]).toEqual([Op.DOWNLOAD_RSP, Msg.START, bodies.get(key)!.length]);
    const parts: Uint8Array[] = [];
    await conn.readBody(start.size, (p) => void parts.push(p.slice()));
    expect(sha256(Buffer.concat(parts))).toBe(sha256(bodies.get(key)!));
    expect((await conn.readFrame()).message).toBe(Msg.END);
  };
  await readDownload("large");
  const exist = await conn.readFrame();
  expect([exist.operation, exist.size]).toEqual([Op.EXIST_RSP, 200_000]);
  await readDownload("small");
  await readDownload("mid");
  expect((await conn.readFrame()).operation).toBe(Op.BENCH_MARK_RSP);
  conn.close();

  const s = await stats(adminPort);
  expect(s.zeroCopy.downloads).toBe(3); // "small" too: START, body and END in one sendfile call
  expect(s.zeroCopy.fallbacks).toBe(0);
  expect(server.lines.some((l) => l.includes("event=zero_copy_off"))).toBe(false);
  // SIGPIPE (signal 13, bit 12 of SigIgn) ignored: a peer gone mid-sendfile is an error, not death.
  const sigIgn = BigInt("0x" + /SigIgn:\s+([0-9a-f]+)/.exec(readFileSync(`/proc/${server.pid}/status`, "utf8"))![1]);
  expect((sigIgn >> 12n) & 1n).toBe(1n);
});

test("clients that hang up mid-body, or stop reading, cost nothing lasting: descriptors come back, the idle timeout comes", async () => {
  server = await startServer({ zeroCopy: true, idleTimeoutMs: 600 });
  // Made before the connection opens: making 32 MiB on a loaded machine once took longer than the
  // idle timeout, and the server rightly closed the silent connection before its upload began.
  const big = payload(32 * 1024 * 1024, 5);
  const setup = await WireConn.connect({ host: "127.0.0.1", port: server.port });
  await uploadExchange(setup, "big", big.length, (c) => c.write(big));
  setup.close();
  await Bun.sleep(100);
  const baseline = openFds(server.pid);

  for (let i = 0; i < 10; i++) {
    const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
    await conn.sendFrame({ operation: Op.DOWNLOAD, key: "big" });
    expect((await conn.readFrame()).message).toBe(Msg.START);
    let got = 0;
    await conn.readBody(1024 * 1024, (p) => void (got += p.length)).catch(() => {});
    conn.destroy(); // hang up mid-body
  }
  // One that never reads its body: the server's sends stall, and the idle timeout closes it.
  const stalled = await Bun.connect({ hostname: "127.0.0.1", port: server.port, socket: { data() {} } });
  stalled.pause();
  stalled.write(protobufCodec.encodeFrame({ operation: Op.DOWNLOAD, key: "big" }));
  await eventually(() => server!.lines.some((l) => l.includes("event=idle_timeout")), 5000, "the stalled download timed out");

  // Every download's file and socket descriptors are closed again.
  await eventually(() => openFds(server!.pid) <= baseline, 5000, `descriptors back to ${baseline} (now ${openFds(server!.pid)})`);
  const check = await WireConn.connect({ host: "127.0.0.1", port: server.port });
  expect(await existExchange(check, "big")).toEqual({ size: big.length, type: "file", digest: sha256(big) });
  check.close();
  stalled.end();
}, 30_000);

test("a 256 MiB file uploaded by splice and downloaded by sendfile is the same by SHA-256", async () => {
  server = await startServer({ zeroCopy: true });
  const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
  const piece = payload(8 * 1024 * 1024, 11);
  const pieces = 32; // 256 MiB: no bound or offset of the zero-copy paths lies between it and more
  const sent = createHash("sha256");
  await uploadExchange(conn, "gib", piece.length * pieces, async (c) => {
    for (let i = 0; i < pieces; i++) {
      piece[0] = i; // each piece differs, so a reordered or repeated piece changes the hash
      sent.update(piece);
      await c.write(piece);
    }
  });
  const got = createHash("sha256");
  const n = await downloadExchange(conn, "gib", (p) => void got.update(p));
  expect(n).toBe(piece.length * pieces);
  expect(got.digest("hex")).toBe(sent.digest("hex"));
  conn.close();
}, 120_000);

test("an engine without sendfile serves zeroCopy downloads by copying, and says so once", async () => {
  server = await startServer({ ioEngine: "bun", zeroCopy: true });
  const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
  const body = payload(300_000, 3);
  await uploadExchange(conn, "k", body.length, (c) => c.write(body));
  const parts: Uint8Array[] = [];
  await downloadExchange(conn, "k", (p) => void parts.push(p.slice()));
  expect(sha256(Buffer.concat(parts))).toBe(sha256(body));
  conn.close();
  expect(server.lines.filter((l) => l.includes("event=zero_copy_off")).length).toBe(1);
});

test("a spliced upload followed in the same write by its ACK and more requests: exact file, replies in order, nothing read by Bun meanwhile", async () => {
  const adminPort = freePort();
  server = await startServer({ zeroCopy: true, adminPort });
  const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
  const body = payload(3_000_000, 77);
  await conn.sendFrame({ operation: Op.UPLOAD, key: "spliced", size: body.length });
  expect((await conn.readFrame()).message).toBe(Msg.START);
  // The body, then (before END) the ACK the protocol expects after END, and two more requests.
  await conn.write(
    Buffer.concat([
      body,
      protobufCodec.encodeFrame({ operation: Op.UPLOAD, key: "spliced", message: Msg.ACK }),
      protobufCodec.encodeFrame({ operation: Op.EXIST, key: "spliced" }),
      protobufCodec.encodeFrame({ operation: Op.BENCH_MARK, key: "after" }),
    ]),
  );
  expect((await conn.readFrame()).message).toBe(Msg.END);
  const exist = await conn.readFrame();
  expect([exist.operation, exist.size]).toEqual([Op.EXIST_RSP, body.length]);
  expect((await conn.readFrame()).operation).toBe(Op.BENCH_MARK_RSP);
  const parts: Uint8Array[] = [];
  await downloadExchange(conn, "spliced", (p) => void parts.push(p.slice()));
  expect(sha256(Buffer.concat(parts))).toBe(sha256(body));
  conn.close();
  const s = await stats(adminPort);
  expect(s.zeroCopy.uploads).toBe(1);
  expect(s.connectionBugs).toBe(0);
});

test("clients that hang up mid-upload on the splice path leave no temporary file and no descriptor", async () => {
  // One worker, so its splice pipe (kept for the worker's life) exists before the baseline.
  server = await startServer({ zeroCopy: true, ioThreads: 1 });
  const warm = await WireConn.connect({ host: "127.0.0.1", port: server.port });
  await uploadExchange(warm, "warm", 100_000, (c) => c.write(payload(100_000, 1)));
  warm.close();
  await Bun.sleep(100);
  const baseline = openFds(server.pid);
  for (let i = 0; i < 10; i++) {
    const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
    await conn.sendFrame({ operation: Op.UPLOAD, key: `cut-${i}`, size: 10_000_000 });
    expect((await conn.readFrame()).message).toBe(Msg.START);
    await conn.write(payload(1_000_000, i));
    conn.destroy();
  }
  const tempFiles = () => readdirSync(server!.dataDir, { recursive: true }).filter((p) => String(p).includes("\\"));
  await eventually(() => tempFiles().length === 0 && openFds(server!.pid) <= baseline, 5000, "temporary files and descriptors gone").catch((e) => { throw new Error(`${e.message}: temp ${tempFiles().length}, fds ${openFds(server!.pid)} of ${baseline}, log: ${server!.lines.slice(-6).join(" | ")}`); });
  const check = await WireConn.connect({ host: "127.0.0.1", port: server.port });
  for (let i = 0; i < 10; i++) {
    await expect(existExchange(check, `cut-${i}`)).rejects.toThrow("no such key");
  }
  check.close();
}, 30_000);
