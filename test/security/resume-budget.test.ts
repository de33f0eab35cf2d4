// Proves that one tenant cannot take every tenant's resumable uploads: the bounds count bytes
// actually kept, not announced sizes; each client (address, token id) has its own share; and an
// upload past a bound is still taken, as an ordinary one, so clients carry on instead of failing.
import { afterEach, describe, expect, test } from "bun:test";
import net from "node:net";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Access, createToken, newSecret } from "../../src/auth/token";
import { connect } from "../../src/client/client";
import { resumableUploadExchange, type ResumableState } from "../../src/client/exchanges";
import { WireConn } from "../../src/client/wire-conn";
import { protobufCodec } from "../../src/protocol/codec";
import { FrameDecoder } from "../../src/protocol/frame-decoder";
import { Msg, Op, type MessageInit, type WireMessage } from "../../src/protocol/message";
import { payload, sha256 } from "../helpers/data";
import { tempFiles } from "../helpers/fs";
import { eventually, freePort, startServer, tempDir, type TestServer } from "../helpers/server";

let server: TestServer | null = null;
const sockets: net.Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await server?.stop();
  server = null;
});

const GiB = 1024 * 1024 * 1024;

/** A protocol connection from `localAddress` (Bun.connect cannot choose one): frames in, frames out. */
class RawConn {
  private readonly decoder = new FrameDecoder(1 << 20);
  private readonly frames: WireMessage[] = [];
  private waiter: (() => void) | null = null;
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.on("data", (chunk: Buffer) => {
      for (let at = 0; at < chunk.length; ) {
        at += this.decoder.feed(chunk, at);
        const frame = this.decoder.takeFrame();
        if (frame !== null) this.frames.push(protobufCodec.decode(frame));
      }
      this.waiter?.();
    });
    socket.on("error", () => {});
    this.closed = new Promise((r) => socket.on("close", () => (r(), this.waiter?.())));
  }

  static open(port: number, localAddress: string): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: "127.0.0.1", port, localAddress });
      sockets.push(socket);
      socket.once("connect", () => resolve(new RawConn(socket)));
      socket.once("error", reject);
    });
  }

  send(msg: MessageInit): void {
    this.socket.write(protobufCodec.encodeFrame(msg));
  }

  async read(): Promise<WireMessage> {
    while (this.frames.length === 0) {
      if (this.socket.destroyed) throw new Error("connection closed");
      await new Promise<void>((r) => (this.waiter = r));
    }
    return this.frames.shift()!;
  }
}

function secretFile(): { file: string; secret: Uint8Array } {
  const secret = newSecret();
  const file = join(tempDir("resume-budget"), "secret");
  writeFileSync(file, secret);
  return { file, secret: new TextEncoder().encode(secret) };
}

function token(secret: Uint8Array, id: string, prefix: string): string {
  return createToken(secret, { id, access: Access.READ | Access.WRITE | Access.DELETE, prefix, expiresAtMs: Date.now() + 3600_000 });
}

/** Starts a huge resumable upload, sends `bytes` of it, and hangs up; returns the id START carried ("" for none). */
async function announceAndHangUp(port: number, localAddress: string, tok: string | null, key: string, size: number, bytes: number): Promise<string> {
  const c = await RawConn.open(port, localAddress);
  if (tok !== null) {
    c.send({ operation: Op.AUTH, key: "", token: tok });
    expect((await c.read()).message).toBe(Msg.SUCCESS);
  }
  c.send({ operation: Op.UPLOAD, key, size, resumable: true });
  const start = await c.read();
  expect(start.message).toBe(Msg.START);
  c.socket.write(payload(bytes, key.length));
  // Once the bytes are surely in the server's hands, the connection breaks.
  await new Promise<void>((r) => c.socket.write(new Uint8Array(0), () => r()));
  c.socket.destroy();
  await c.closed;
  return start.uploadId;
}

// These tests announce 64 GiB uploads, more than a test machine's disk may have free. The floor of
// free space would refuse them as "disk full" at START (as it should: such an upload cannot be
// stored there), so the tests that are about the resumable budget turn the floor off.
const NO_FLOOR = { diskFreeBytesMin: 0 };

describe("resumable uploads: bounded by what is kept, per client", () => {
  test("a tenant announcing 64 GiB uploads and sending a byte each cannot block another tenant's resumable uploads", async () => {
    const { file, secret } = secretFile();
    const adminPort = freePort();
    server = await startServer({ ...NO_FLOOR, auth: "token", authSecretFile: file, adminPort, resumableUploadsPerClientMax: 8 });
    const attacker = token(secret, "tenant-b", "b/");
    // Before the fix one such announcement filled resumableBytesMax (64 GiB) for a day.
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) ids.push(await announceAndHangUp(server.port, "127.0.0.2", attacker, `b/huge-${i}`, 64 * GiB, 1));
    // Its first 8 are resumable; past its own share its uploads are ordinary ones (no id), not refused.
    expect(ids.slice(0, 8).every((id) => id !== "")).toBe(true);
    expect(ids.slice(8)).toEqual(["", ""]);
    // Its parked uploads keep 8 bytes, not 512 GiB.
    await eventually(() => server!.lines.filter((l) => l.includes("event=resumable_refused")).length === 2, 5000, "refusals logged");
    const stats = async () => ((await (await fetch(`http://127.0.0.1:${adminPort}/debug/stats`)).json()) as { resumableUploads: { held: number; keptBytes: number; refused: number } }).resumableUploads;
    // Parking follows the hang-up: wait until all eight are parked (their bytes counted).
    let held = await stats();
    for (let n = 0; n < 500 && held.keptBytes < 8; n++) held = (await Bun.sleep(10), await stats());
    expect(held).toMatchObject({ held: 8, keptBytes: 8, refused: 2 });
    // Another tenant, from another address, uploads resumably: an id, and the upload completes.
    const other = await WireConn.connect({ host: "127.0.0.1", port: server.port, token: token(secret, "tenant-c", "c/") });
    const body = payload(3 * 1024 * 1024, 5);
    const state: ResumableState = { uploadId: null };
    await resumableUploadExchange(other, "c/big", body.length, state, (c) => c.write(body));
    expect(state.uploadId).not.toBe("");
    other.close();
    // And the client library's upload of a large file works for it as for everyone.
    const client = connect({ port: server.port, token: token(secret, "tenant-c", "c/") });
    await client.upload("c/big2", body);
    expect((await client.exist("c/big2")).digest).toBe(sha256(body));
    client.close();
  });

  test("without tokens the share is the address's: one address past its share, another address unaffected", async () => {
    server = await startServer({ ...NO_FLOOR, resumableUploadsPerClientMax: 3 });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await announceAndHangUp(server.port, "127.0.0.2", null, `huge-${i}`, 64 * GiB, 10));
    expect(ids.map((id) => id !== "")).toEqual([true, true, true, false, false]);
    expect(await announceAndHangUp(server.port, "127.0.0.3", null, "other", 64 * GiB, 10)).not.toBe("");
  });

  test("a broken upload over resumableBytesPerClientMax is discarded, not parked; RESUME says 'no such upload'; another client parks", async () => {
    server = await startServer({ resumableBytesPerClientMax: 1024 * 1024, loops: 1 });
    const id = await announceAndHangUp(server.port, "127.0.0.2", null, "too-much", 8 * 1024 * 1024, 2 * 1024 * 1024);
    expect(id).not.toBe("");
    await eventually(() => server!.lines.some((l) => l.includes("event=resumable_not_kept")), 5000, "the upload discarded");
    await eventually(() => tempFiles(server!.dataDir).length === 0, 5000, "its partial file removed");
    const c = await RawConn.open(server.port, "127.0.0.2");
    c.send({ operation: Op.RESUME, key: "too-much", uploadId: id });
    expect((await c.read()).message).toBe("no such upload");
    // Within the share, from another address: parked, and resumed.
    const kept = await announceAndHangUp(server.port, "127.0.0.3", null, "fits", 8 * 1024 * 1024, 512 * 1024);
    const r = await RawConn.open(server.port, "127.0.0.3");
    // Parking follows the hang-up: until it is parked, RESUME says it is still in progress.
    let start: WireMessage;
    for (let n = 0; ; n++) {
      r.send({ operation: Op.RESUME, key: "fits", uploadId: kept });
      start = await r.read();
      if (start.message !== "upload in progress on another connection" || n > 500) break;
      await Bun.sleep(10);
    }
    expect(start.message).toBe(Msg.START);
    expect(start.offset).toBe(512 * 1024);
  });

  test("resumableBytesMax counts kept bytes, server-wide: past it a broken upload is discarded", async () => {
    server = await startServer({ ...NO_FLOOR, resumableBytesMax: 1024 * 1024, loops: 2 });
    // Announced sizes far past the bound are fine: nothing is kept yet.
    const a = await announceAndHangUp(server.port, "127.0.0.2", null, "a", 64 * GiB, 700 * 1024);
    expect(a).not.toBe("");
    await eventually(() => tempFiles(server!.dataDir).length === 1, 5000, "a parked");
    const b = await announceAndHangUp(server.port, "127.0.0.3", null, "b", 64 * GiB, 700 * 1024);
    expect(b).not.toBe("");
    await eventually(() => server!.lines.some((l) => l.includes("event=resumable_not_kept") && l.includes("resumableBytesMax")), 5000, "b discarded");
    await eventually(() => tempFiles(server!.dataDir).length === 1, 5000, "b's file removed");
  });
});
