// Resumable uploads (extension: Resumable, UploadId, RESUME) against a real server process: a 64
// MiB upload broken 20 times at random points (hung up, and reset) and finished, byte for byte and
// by digest, re-sending nothing that was already on disk; parked uploads expiring with their
// files; bounds refusing politely; RESUME of the wrong key, of an upload still in progress, and
// with a wrong digest.
import { afterEach, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ServerError, uploadExchange } from "../../src/client/exchanges";
import { WireConn } from "../../src/client/wire-conn";
import { Msg, Op, type WireMessage } from "../../src/protocol/message";
import { payload, sha256 } from "../helpers/data";
import { tempFiles } from "../helpers/fs";
import { eventually, freePort, startServer, type TestServer } from "../helpers/server";

let server: TestServer | null = null;
afterEach(async () => {
  await server?.stop();
  server = null;
});

const MiB = 1024 * 1024;
const connect = () => WireConn.connect({ host: "127.0.0.1", port: server!.port });

function fileOf(dataDir: string, key: string): string {
  for (const shard of readdirSync(dataDir)) if (existsSync(join(dataDir, shard, key))) return join(dataDir, shard, key);
  throw new Error(`${key} is not stored`);
}

/** RESUME until the server has parked the upload (right after a break it may still be writing it out). */
async function resume(key: string, uploadId: string, digest = ""): Promise<{ conn: WireConn; reply: WireMessage }> {
  for (let attempt = 0; ; attempt++) {
    const conn = await connect();
    await conn.sendFrame({ operation: Op.RESUME, key, uploadId, digest });
    const reply = await conn.readFrame();
    if (reply.message !== "upload in progress on another connection" || attempt > 200) return { conn, reply };
    conn.close();
    await Bun.sleep(5);
  }
}

async function finish(conn: WireConn, key: string): Promise<WireMessage> {
  const end = await conn.readFrame();
  if (end.message === Msg.END) await conn.sendFrame({ operation: Op.UPLOAD, key, message: Msg.ACK });
  return end;
}

// With two event loops every RESUME may reach the other loop: the one that parked the upload hands
// it over (file, offset, hash state) through the loop group.
test.each([1, 2])("a resumable 64 MiB upload broken 20 times at random points is finished, exact, re-sending nothing already on disk (%d event loops)", async (loops) => {
  server = await startServer({ inlineBytesMax: 65536, loops });
  // 64 MiB, twenty breaks at random points across it: the test's point is the breaks, not the
  // size (it moved 256 MiB, in each of its two runs, before).
  const size = 64 * MiB;
  const body = payload(size, 77);
  const digest = sha256(body);
  const key = "resumed-64m";
  let seed = 12345;
  const random = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);

  let conn = await connect();
  await conn.sendFrame({ operation: Op.UPLOAD, key, size, digest, resumable: true });
  const start = await conn.readFrame();
  expect([start.operation, start.message]).toEqual([Op.UPLOAD_RSP, "START"]);
  const uploadId = start.uploadId;
  expect(uploadId).toMatch(loops === 1 ? /^0\.[0-9a-f]{32}$/ : /^[01]\.[0-9a-f]{32}$/); // <loop>.<random>
  let offset = 0;
  for (let brk = 0; brk < 20; brk++) {
    // Send a random part of what is left, then break: a hang-up (FIN) or a reset (RST).
    const part = 1 + random(Math.floor((size - offset) / 4));
    await conn.write(body.subarray(offset, offset + part));
    const sent = offset + part;
    if (brk % 2 === 0) conn.close();
    else conn.destroy();
    const resumed = await resume(key, uploadId, brk === 7 ? digest : "");
    expect([resumed.reply.operation, resumed.reply.message, resumed.reply.uploadId, resumed.reply.size]).toEqual([Op.RESUME_RSP, "START", uploadId, size]);
    const at = resumed.reply.offset;
    expect(at).toBeLessThanOrEqual(sent);
    // After a hang-up every byte sent reached the server, and all of it is kept.
    if (brk % 2 === 0) expect(at).toBe(sent);
    offset = at;
    conn = resumed.conn;
  }
  await conn.write(body.subarray(offset));
  const end = await finish(conn, key);
  expect([end.message, end.digest]).toEqual(["END", digest]);
  conn.close();
  expect(sha256(readFileSync(fileOf(server.dataDir, key)))).toBe(digest);
  expect(tempFiles(server.dataDir)).toEqual([]);
  if (loops > 1) {
    const moved = server.lines.filter((l) => l.includes("event=upload_moved")).length;
    expect(moved).toBeGreaterThan(0); // at least one RESUME reached the other loop (20 tries: all on one has odds 2^-19)
  }
}, 120_000);

test("a parked upload expires with its partial file; RESUME then says 'no such upload'", async () => {
  const adminPort = freePort();
  server = await startServer({ resumableTtlMs: 1000, adminPort });
  const stats = async () => ((await (await fetch(`http://127.0.0.1:${adminPort}/debug/stats`)).json()) as { resumableUploads: Record<string, number> }).resumableUploads;
  const conn = await connect();
  const body = payload(3 * MiB, 5);
  await conn.sendFrame({ operation: Op.UPLOAD, key: "expiring", size: body.length, resumable: true });
  const start = await conn.readFrame();
  await conn.write(body.subarray(0, MiB));
  conn.close();
  await eventually(() => tempFiles(server!.dataDir).length === 1, 5000, "the partial file parked");
  expect(await stats()).toMatchObject({ held: 1 });
  await eventually(() => tempFiles(server!.dataDir).length === 0, 5000, "the partial file removed after resumableTtlMs");
  const { conn: again, reply } = await resume("expiring", start.uploadId);
  expect([reply.operation, reply.message]).toEqual([Op.RESUME_RSP, "no such upload"]);
  again.close();
  expect(await stats()).toEqual({ held: 0, parked: 1, resumed: 0, refused: 0, notKept: 0, keptBytes: 0 });
});

test("past the bounds on resumable uploads an upload is an ordinary one; RESUME of another key, of one in progress, or with a wrong digest is refused", async () => {
  server = await startServer({ resumableUploadsMax: 1 });
  const first = await connect();
  const body = payload(2 * MiB, 6);
  await first.sendFrame({ operation: Op.UPLOAD, key: "one", size: body.length, resumable: true, digest: sha256(body) });
  const start = await first.readFrame();
  expect(start.message).toBe("START");
  await first.write(body.subarray(0, 1000));
  // In progress: a RESUME from elsewhere is refused, and so is a second resumable upload (the bound).
  const other = await connect();
  await other.sendFrame({ operation: Op.RESUME, key: "one", uploadId: start.uploadId });
  expect((await other.readFrame()).message).toBe("upload in progress on another connection");
  await other.sendFrame({ operation: Op.UPLOAD, key: "two", size: 10, resumable: true });
  // Past the bound it is an ordinary upload: START without an id, and it completes.
  const ordinary = await other.readFrame();
  expect(ordinary).toMatchObject({ operation: Op.UPLOAD_RSP, message: "START", uploadId: "" });
  await other.write(payload(10, 3));
  expect((await finish(other, "two")).message).toBe("END");
  // A plain upload is not bound by it.
  await uploadExchange(other, "plain", 10, (c) => c.write(payload(10, 1)));
  await other.sendFrame({ operation: Op.RESUME, key: "not-one", uploadId: start.uploadId });
  expect((await other.readFrame()).message).toBe("no such upload");
  other.close();
  first.close();
  // Resumed with a digest that the body cannot have: the whole upload ends, nothing is stored.
  const { conn, reply } = await resume("one", start.uploadId, sha256(payload(10, 9)));
  expect([reply.message, reply.offset]).toEqual(["START", 1000]);
  await conn.write(body.subarray(1000));
  expect((await finish(conn, "one")).message).toBe("digest mismatch");
  conn.close();
  await eventually(() => tempFiles(server!.dataDir).length === 0, 5000, "no partial left");
  const again = await connect();
  await again.sendFrame({ operation: Op.UPLOAD, key: "three", size: 10, resumable: true });
  expect((await again.readFrame()).message).toBe("START"); // the slot came back
  again.destroy();
  expect(await uploadExchange(await connect(), "x", 5, (c) => c.write(payload(5, 2))).catch((e: ServerError) => e.text)).toMatch(/^[0-9a-f]{64}$/);
});
