// Proves the server's bounds: idle timeout, connectionsMax, the JSON wire, and a full disk.
import { afterEach, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { benchExchange, deleteExchange, downloadExchange, existExchange, uploadExchange } from "../../src/client/exchanges";
import { WireConn } from "../../src/client/wire-conn";
import { Op } from "../../src/protocol/message";
import { protobufCodec } from "../../src/protocol/codec";
import { FrameDecoder } from "../../src/protocol/frame-decoder";
import { engineNames } from "../../src/config";
import { payload, sha256 } from "../helpers/data";
import { storedKeys, tempFiles } from "../helpers/fs";
import { connectWhenAdmitted, eventually, freePort, startServer, tempDir, type TestServer } from "../helpers/server";

/** Why a small file system cannot be mounted here (the disk-full test needs one), or null. */
const smallDiskProblem = (() => {
  if (process.getuid?.() !== 0) return "mounting a small tmpfs needs root";
  const probe = join(tempDir("mount-probe"), "mnt");
  mkdirSync(probe);
  const r = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe]);
  if (r.exitCode !== 0) return `mount -t tmpfs failed: ${r.stderr.toString().trim()}`;
  Bun.spawnSync(["umount", probe]);
  return null;
})();
if (smallDiskProblem !== null) console.warn(`limits.test.ts: the disk-full tests are skipped: ${smallDiskProblem}`);

let server: TestServer | null = null;
afterEach(async () => {
  await server?.stop();
  server = null;
});

describe.each(engineNames.map((e) => [e]))("limits, engine %s", (engine) => {
  test("idleTimeoutMs closes a silent connection, between exchanges and mid-upload (discarding the upload)", async () => {
    server = await startServer({ ioEngine: engine, idleTimeoutMs: 300, inlineBytesMax: 1024, ioChunkBytes: 4096 });
    const idle = await WireConn.connect({ host: "127.0.0.1", port: server.port });
    await benchExchange(idle, "x");
    const stalled = await WireConn.connect({ host: "127.0.0.1", port: server.port });
    await stalled.sendFrame({ operation: Op.UPLOAD, key: "stalled", size: 100_000 });
    expect((await stalled.readFrame()).message).toBe("START");
    await stalled.write(payload(10_000, 1));
    const stalledSince = Date.now();
    const busy = await WireConn.connect({ host: "127.0.0.1", port: server.port });
    // A connection that keeps talking (an exchange every 50 ms) stays open while the silent ones
    // reach the timeout and are closed.
    const silentClosed = Promise.all([idle.closedWithin(5000), stalled.closedWithin(5000)]);
    let closed = false;
    void silentClosed.then(() => (closed = true));
    while (!closed) {
      await benchExchange(busy, "alive");
      await Bun.sleep(50);
    }
    expect(await silentClosed).toEqual([true, true]);
    expect(Date.now() - stalledSince).toBeGreaterThanOrEqual(300); // not before the timeout
    await benchExchange(busy, "still alive");
    expect(busy.isClosed).toBe(false);
    await eventually(() => tempFiles(server!.dataDir).length === 0, 3000, "temporary file removed");
    expect(storedKeys(server.dataDir)).toEqual([]);
    await server.line("event=idle_timeout");
    busy.close();
  });

  test("connectionsMax: one connection past it is closed at once and logged; the others keep working", async () => {
    server = await startServer({ ioEngine: engine, connectionsMax: 2 });
    const a = await WireConn.connect({ host: "127.0.0.1", port: server.port });
    const b = await WireConn.connect({ host: "127.0.0.1", port: server.port });
    await benchExchange(a, "a");
    await benchExchange(b, "b");
    // Refused at once: the connect itself may see the reset, or the connection closes right after.
    const c = await WireConn.connect({ host: "127.0.0.1", port: server.port }).catch((e: Error) => e);
    if (c instanceof WireConn) expect(await c.closedWithin(2000)).toBe(true);
    else expect(c.message).toContain("Failed to connect");
    await eventually(() => server!.lines.some((l) => l.includes("event=connection_refused")), 2000, "refusal logged");
    await benchExchange(a, "a2");
    a.close();
    // Once the server has seen that close, its slot is free for a new connection.
    const d = await connectWhenAdmitted(server.port);
    b.close();
    d.close();
  });

  test("fsyncOnCommit: every upload, small or streamed, fsyncs its file and its directory (counted); off, none", async () => {
    for (const durable of [true, false]) {
      const adminPort = freePort();
      // Files (volumes off): records' group fsync is counted in test/storage/volumes.test.ts.
      server = await startServer({ ioEngine: engine, fsyncOnCommit: durable, inlineBytesMax: 16384, ioChunkBytes: 16384, adminPort, volumes: false });
      const fsyncs = async () => ((await (await fetch(`http://127.0.0.1:${adminPort}/debug/stats`)).json()) as { engine: { fsyncs: number } }).engine.fsyncs;
      const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
      for (const size of [1000, 100_000]) {
        const before = await fsyncs();
        const body = payload(size, size);
        await uploadExchange(conn, `durable-${size}`, size, (c) => c.write(body));
        // Acknowledged means synced: the file's bytes, then the directory that holds its new name.
        expect(await fsyncs()).toBe(before + (durable ? 2 : 0));
        expect(await existExchange(conn, `durable-${size}`)).toEqual({ size, type: "file", ...(engine === "cpool" ? { digest: sha256(body) } : {}) });
      }
      conn.close();
      await server.stop();
      server = null;
    }
  });

  test("a client that pipelines requests and never reads the replies is held to connectionBufferBytesMax", async () => {
    server = await startServer({ ioEngine: engine, connectionBufferBytesMax: 65536, inlineBytesMax: 4096, ioChunkBytes: 4096 });
    const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${server!.pid}/status`, "utf8"))![1]) * 1024;
    const before = rss();
    const frame = protobufCodec.encodeFrame({ operation: Op.BENCH_MARK, key: "p".repeat(200) });
    const batch = Buffer.concat(Array.from({ length: 1000 }, () => frame));
    let replies = 0;
    const decoder = new FrameDecoder(65536);
    let reading = false;
    const socket = await Bun.connect({
      hostname: "127.0.0.1",
      port: server.port,
      socket: {
        data(s, chunk) {
          if (!reading) return;
          let offset = 0;
          while (offset < chunk.length) {
            offset += decoder.feed(chunk, offset);
            if (decoder.takeFrame() !== null) replies++;
          }
        },
      },
    });
    socket.pause(); // read nothing: replies pile up on the server, unless it stops reading requests
    let sent = 0;
    let stalledSince = 0;
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const n = socket.write(batch.subarray(sent % batch.length));
      if (n > 0) {
        sent += n;
        stalledSince = 0;
      } else {
        stalledSince ||= Date.now();
        if (Date.now() - stalledSince > 500) break; // the server has stopped taking requests
        await Bun.sleep(10);
      }
    }
    const requestsSent = Math.floor(sent / frame.length);
    expect(Date.now()).toBeLessThan(deadline); // it did stop taking them
    expect(sent).toBeLessThan(64 * 1024 * 1024);
    expect(rss() - before).toBeLessThan(48 * 1024 * 1024);
    // Reading resumes the flow: every request is answered, in order, once the client reads.
    reading = true;
    socket.resume();
    const fullFrames = requestsSent;
    await eventually(() => replies >= fullFrames, 20_000, `${fullFrames} replies (got ${replies})`);
    socket.end();
  }, 40_000);

  test("wire json: every exchange in JSON frames", async () => {
    server = await startServer({ ioEngine: engine, wire: "json" });
    const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port, wire: "json" });
    await benchExchange(conn, "j");
    const body = payload(70_000, 5);
    await uploadExchange(conn, "json-file", body.length, (c) => c.write(body));
    // The digest travels in JSON frames too (a lower-case "digest" key); only the C pool records one.
    expect(await existExchange(conn, "json-file")).toEqual({ size: 70_000, type: "file", ...(engine === "cpool" ? { digest: sha256(body) } : {}) });
    // The longest JSON frames: a 255-byte key of characters JSON escapes, small and large bodies.
    const quoted = '"'.repeat(255);
    for (const size of [1000, 200_000]) {
      const b = payload(size, size);
      await uploadExchange(conn, quoted, size, (c) => c.write(b));
      const parts: Uint8Array[] = [];
      await downloadExchange(conn, quoted, (p) => void parts.push(p.slice()));
      expect(Buffer.concat(parts).equals(Buffer.from(b))).toBe(true);
    }
    conn.close();
    // A protobuf client against a JSON server is a protocol violation: closed, nothing stored.
    const wrong = await WireConn.connect({ host: "127.0.0.1", port: server.port });
    await wrong.sendFrame({ operation: Op.BENCH_MARK, key: "x" });
    expect(await wrong.closedWithin(2000)).toBe(true);
  });

  test.skipIf(smallDiskProblem !== null)(`a full disk is answered with 'disk full', leaves no partial or temporary file, and still takes deletes${smallDiskProblem === null ? "" : ` (skipped: ${smallDiskProblem})`}`, async () => {
    const mountPoint = join(tempDir("full"), "mnt");
    mkdirSync(mountPoint);
    const mounted = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mountPoint]);
    expect(mounted.stderr.toString()).toBe("");
    try {
      // 256 KiB of the 2 MiB kept free for deletes (a record's delete appends a tombstone) and compaction.
      server = await startServer({ ioEngine: engine, dataDir: join(mountPoint, "d"), shards: 4, inlineBytesMax: 16384, ioChunkBytes: 16384, diskFreeBytesMin: 256 * 1024 });
      const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
      for (const [key, size] of [["too-big-streamed", 3 * 1024 * 1024], ["fits", 100_000]] as const) {
        const body = payload(size, 7);
        try {
          await uploadExchange(conn, key, size, (c) => c.write(body));
          expect(key).toBe("fits");
        } catch (e) {
          expect(key).toBe("too-big-streamed");
          expect((e as Error).message).toContain("disk full");
        }
      }
      expect(storedKeys(server.dataDir)).toEqual(["fits"]);
      expect(tempFiles(server.dataDir)).toEqual([]);
      // Fill the disk with small files until one is refused, then check it is not half there.
      let refused = "";
      for (let i = 0; i < 200 && refused === ""; i++) {
        const body = payload(12_000, i);
        await uploadExchange(conn, `small-${i}`, body.length, (c) => c.write(body)).catch((e) => (refused = `small-${i}: ${(e as Error).message}`));
      }
      expect(refused).toContain("disk full");
      expect(storedKeys(server.dataDir)).not.toContain(refused.split(":")[0]!);
      expect(tempFiles(server.dataDir)).toEqual([]);
      await benchExchange(conn, "still serving");
      // Deletes still work on the full disk (a record's delete appends a tombstone: below the floor),
      // and a removed file's room takes new bodies again.
      await deleteExchange(conn, "small-0");
      await deleteExchange(conn, "fits");
      const after = payload(5000, 99);
      await uploadExchange(conn, "after-room", after.length, (c) => c.write(after));
      conn.close();
    } finally {
      await server?.stop();
      server = null;
      Bun.spawnSync(["umount", mountPoint]);
    }
  });
});
