// Proves the one guard of src/server/connection.ts: a bug that throws after an await (in an engine,
// or in the connection's own code when a store result arrives) closes only that connection, logged
// with its stack and counted, its temporary file removed, while other clients' exchanges go on
// byte for byte. The server runs in this process, so a throw that escaped the guard would surface
// as an unhandled rejection and fail this file.
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { deleteExchange, downloadExchange, existExchange, uploadExchange } from "../../src/client/exchanges";
import { WireConn } from "../../src/client/wire-conn";
import { loadConfig } from "../../src/config";
import { BunEngine } from "../../src/engine/bun-engine";
import { createEngine } from "../../src/engine/create-engine";
import type { FileStat, IoEngine } from "../../src/engine/io-engine";
import { Logger } from "../../src/log";
import { Connection } from "../../src/server/connection";
import type { Server } from "../../src/server/server";
import { inProcessServer } from "../helpers/in-process-server";
import { payload, sha256 } from "../helpers/data";
import { storedKeys, tempFiles } from "../helpers/fs";
import { tempDir } from "../helpers/server";

const MARK = 0xee;
/** A body whose first 8 bytes are MARK: the faulty engine fails its first write. */
function marked(size: number): Uint8Array {
  const body = payload(size, 99);
  body.fill(MARK, 0, 8);
  return body;
}
function isMarked(data: Uint8Array): boolean {
  for (let i = 0; i < 8; i++) if (data[i] !== MARK) return false;
  return data.length >= 8;
}

/** Bun's engine with two bugs planted: both throw a TypeError (not an IoError) after an await. */
class FaultyEngine extends BunEngine {
  override async stat(path: string): Promise<FileStat> {
    if (path.endsWith("/boom-engine")) {
      await Bun.sleep(1);
      throw new TypeError("planted engine bug in stat");
    }
    return super.stat(path);
  }
  override async write(fd: number, data: Uint8Array, position: number): Promise<void> {
    if (isMarked(data)) {
      await Bun.sleep(1);
      throw new TypeError("planted engine bug in write");
    }
    return super.write(fd, data, position);
  }
}

// A planted bug in the connection itself: the step after a delete's reply throws for "boom-reply".
// It runs when the store's result arrives, after the engine's await (or its completion callback).
const proto = Connection.prototype as unknown as { answered(this: { keyText: string }): void };
const realAnswered = proto.answered;
proto.answered = function (this: { keyText: string }) {
  if (this.keyText === "boom-reply") throw new TypeError("planted connection bug in answered");
  return realAnswered.call(this);
};
afterAll(() => {
  proto.answered = realAnswered;
});

interface Running {
  server: Server;
  lines: string[];
  dataDir: string;
}
let running: Running | null = null;
afterEach(async () => {
  await running?.server.stop();
  running = null;
});

async function start(engine: IoEngine, fields: string[] = []): Promise<Running> {
  const dataDir = join(tempDir("guard"), "d");
  const config = loadConfig({ argv: ["--host", "127.0.0.1", "--port", "0", "--data-dir", dataDir, "--shards", "4", "--inline-bytes-max", "16384", "--io-chunk-bytes", "16384", ...fields], env: {} });
  const lines: string[] = [];
  const server = await inProcessServer(config, engine, new Logger(process.env.GUARD_LOG ? "debug" : "info", (line) => (lines.push(line), process.env.GUARD_LOG && console.log(line))));
  running = { server, lines, dataDir };
  return running;
}

/** Clients that upload, download and compare until `stop` is set; resolves with their exchange count. */
async function bystanders(port: number, clients: number, stop: { now: boolean }): Promise<number> {
  let exchanges = 0;
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      const conn = await WireConn.connect({ host: "127.0.0.1", port });
      for (let i = 0; !stop.now; i++) {
        const size = i % 2 === 0 ? 3000 + c : 90_000 + c; // small (whole) and streamed
        const body = payload(size, c * 1000 + i);
        const key = `by-${c}-${i % 3}`;
        await uploadExchange(conn, key, size, (w) => w.write(body));
        const parts: Uint8Array[] = [];
        await downloadExchange(conn, key, (p) => void parts.push(p.slice()));
        expect(sha256(Buffer.concat(parts))).toBe(sha256(body));
        exchanges += 2;
      }
      conn.close();
    }),
  );
  return exchanges;
}

/**
 * Runs `attempt` on a fresh connection and expects the server to close it. A bug before the reply
 * leaves the exchange unanswered; one after it (`repliedFirst`) closes the connection all the same.
 */
async function expectClosedByBug(port: number, attempt: (conn: WireConn) => Promise<unknown>, repliedFirst = false): Promise<void> {
  const conn = await WireConn.connect({ host: "127.0.0.1", port });
  const outcome = await attempt(conn).then(
    () => "answered",
    (e) => String((e as Error).message),
  );
  expect(outcome).toBe(repliedFirst ? "answered" : "connection closed by peer");
  expect(await conn.closedWithin(2000)).toBe(true);
}

describe("a bug after an await closes only its connection", () => {
  test("engine bugs (stat, a streamed write) and a connection bug, under load from other clients (bun engine)", async () => {
    const { server, lines, dataDir } = await start(new FaultyEngine());
    const port = server.port;
    const stop = { now: false };
    const load = bystanders(port, 4, stop);
    const rounds = 5;
    for (let i = 0; i < rounds; i++) {
      await expectClosedByBug(port, (c) => existExchange(c, "boom-engine"));
      const body = marked(200_000);
      await expectClosedByBug(port, (c) => uploadExchange(c, `boom-upload-${i}`, body.length, (w) => w.write(body)));
      const setup = await WireConn.connect({ host: "127.0.0.1", port });
      await uploadExchange(setup, "boom-reply", 10, (w) => w.write(payload(10, i)));
      setup.close();
      await expectClosedByBug(port, (c) => deleteExchange(c, "boom-reply"), true);
    }
    stop.now = true;
    const exchanges = await load;
    expect(exchanges).toBeGreaterThan(0);

    expect(server.stats.connectionBugs).toBe(3 * rounds);
    const bugs = lines.filter((l) => l.includes("event=connection_bug"));
    expect(bugs.length).toBe(3 * rounds);
    expect(bugs.filter((l) => l.includes("planted engine bug in stat")).length).toBe(rounds);
    expect(bugs.filter((l) => l.includes("planted engine bug in write")).length).toBe(rounds);
    expect(bugs.filter((l) => l.includes("planted connection bug in answered")).length).toBe(rounds);
    expect(bugs.every((l) => l.includes("level=error") && l.includes(".ts:"))).toBe(true); // with the stack
    // The failed uploads left nothing behind, neither under their names nor as temporary files.
    expect(storedKeys(dataDir).filter((k) => k.startsWith("boom-upload"))).toEqual([]);
    expect(tempFiles(dataDir)).toEqual([]);
    // And the server still serves.
    const after = await WireConn.connect({ host: "127.0.0.1", port });
    await uploadExchange(after, "after", 5, (w) => w.write(payload(5, 5)));
    expect(await existExchange(after, "after")).toEqual({ size: 5, type: "file" });
    after.close();
  }, 60_000);

  test("a connection bug when a pooled completion arrives (cpool engine)", async () => {
    const config = loadConfig({ argv: ["--io-threads", "2"], env: {} });
    const { server, lines } = await start(createEngine(config));
    const port = server.port;
    const stop = { now: false };
    const load = bystanders(port, 3, stop);
    for (let i = 0; i < 5; i++) {
      const setup = await WireConn.connect({ host: "127.0.0.1", port });
      await uploadExchange(setup, "boom-reply", 10, (w) => w.write(payload(10, i)));
      setup.close();
      await expectClosedByBug(port, (c) => deleteExchange(c, "boom-reply"), true);
    }
    stop.now = true;
    expect(await load).toBeGreaterThan(0);
    expect(server.stats.connectionBugs).toBe(5);
    expect(lines.filter((l) => l.includes("event=connection_bug") && l.includes("planted connection bug")).length).toBe(5);
  }, 60_000);
});
