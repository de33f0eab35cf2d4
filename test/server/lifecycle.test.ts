// Proves start-up housekeeping and shutdown: stale temporaries swept, layout guarded, SIGTERM clean.
import { afterEach, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { benchExchange } from "../../src/client/exchanges";
import { WireConn } from "../../src/client/wire-conn";
import { Op } from "../../src/protocol/message";
import { engineNames } from "../../src/config";
import { payload } from "../helpers/data";
import { listFiles, tempFiles } from "../helpers/fs";
import { startServer, tempDir, type TestServer } from "../helpers/server";

let server: TestServer | null = null;
afterEach(async () => {
  await server?.stop();
  server = null;
});

describe("lifecycle", () => {
  test("start-up sweeps temporary files a crash left behind and keeps stored files", async () => {
    const dataDir = join(tempDir("sweep"), "d");
    server = await startServer({ dataDir, shards: 4 });
    await server.stop();
    writeFileSync(join(dataDir, "01", ".fsgw-tmp\\123.4"), "partial");
    writeFileSync(join(dataDir, "02", "kept"), "stored");
    server = await startServer({ dataDir, shards: 4 });
    expect(tempFiles(dataDir)).toEqual([]);
    expect(listFiles(dataDir)).toContain("02/kept");
    expect(server.lines.some((l) => l.includes("staleTempFilesRemoved=1"))).toBe(true);
  });

  test("a data directory laid out with another shard count is refused with a clear message", async () => {
    const dataDir = join(tempDir("layout"), "d");
    server = await startServer({ dataDir, shards: 4 });
    await server.stop();
    server = null;
    const failed = await startServer({ dataDir, shards: 8 }).catch((e: Error) => e.message);
    expect(failed).toContain("laid out with shards=4");
  });

  test("a second server on the same data directory is refused while the first runs", async () => {
    const dataDir = join(tempDir("lock"), "d");
    server = await startServer({ dataDir, shards: 4 });
    const second = await startServer({ dataDir, shards: 4 }).catch((e: Error) => e.message);
    expect(second).toContain("is in use by another fsgw server");
    await server.stop();
    server = await startServer({ dataDir, shards: 4 }); // the lock went with the first process
  });

  test("a bad config value stops start-up naming the field", async () => {
    const failed = await startServer({ port: 70000 }).catch((e: Error) => e.message);
    expect(failed).toContain("invalid port = 70000 (from --port): expected an integer in 0..65535");
  });

  test.each(engineNames.map((e) => [e]))("SIGTERM mid-upload (engine %s): the partial upload's temporary file is removed and the exit is clean", async (engine) => {
    server = await startServer({ ioEngine: engine, shutdownGraceMs: 200, inlineBytesMax: 1024, ioChunkBytes: 4096 });
    const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
    await conn.sendFrame({ operation: Op.UPLOAD, key: "interrupted", size: 1_000_000 });
    expect((await conn.readFrame()).message).toBe("START");
    await conn.write(payload(100_000, 1));
    await Bun.sleep(50);
    expect(tempFiles(server.dataDir).length).toBe(1);
    const idle = await WireConn.connect({ host: "127.0.0.1", port: server.port }); // between exchanges: closed at once, not cut
    await benchExchange(idle, "idle");
    const code = await server.stop();
    expect(code).toBe(0);
    expect(tempFiles(server.dataDir)).toEqual([]);
    expect(await conn.closedWithin(1000)).toBe(true);
    // The log says what was cut: the one upload, its key and the bytes that had arrived.
    const cut = server.lines.filter((l) => l.includes("event=exchange_cut"));
    expect(cut.length).toBe(1);
    expect(cut[0]).toContain("op=upload key=interrupted bytesReceived=100000 bytesAnnounced=1000000");
    expect(server.lines.find((l) => l.includes("event=shutdown_cut"))).toContain("connections=1 exchangesCut=1");
    server = null;
  });
});
