// Proves the C pool engine's own promises: bounded queue with JS-side backpressure, every operation
// settled exactly once, buffers safe across garbage collection, cancellation on shutdown, no CPU
// when idle, and a bounded thread count under load.
import { describe, expect, test } from "bun:test";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { CPoolEngine, PoolStat, type SubmitMode } from "../../src/engine/cpool-engine";
import { IoError } from "../../src/engine/io-error";
import { uploadExchange, downloadExchange, benchExchange } from "../../src/client/exchanges";
import { WireConn } from "../../src/client/wire-conn";
import { payload, sha256 } from "../helpers/data";
import { setOpDelayUs } from "../helpers/native-hooks";
import { startServer, tempDir, type TestServer } from "../helpers/server";

function engine(submitMode: SubmitMode, capacity = 64, threads = 4): CPoolEngine {
  return new CPoolEngine({ threads, capacity, priorThreads: 0, cpuAffinity: false, workerNice: 0, submitMode, batchMax: 16, drainBatchMax: 8, inline: "cached", jobsPerWake: 1, spinUs: 0 });
}

describe.each([["direct"], ["batch"]] as const)("cpool, %s submission", (mode) => {
  test("10,000 operations in flight through a 64-slot queue each complete exactly once", async () => {
    const e = engine(mode);
    const n = 10_000;
    const settled = new Uint8Array(n);
    const all = Array.from({ length: n }, (_, i) =>
      e.nop(i).then((v) => {
        expect(v).toBe(i);
        settled[i]!++;
      }),
    );
    expect(e.operationsInFlight).toBe(n);
    expect(e.blockedCount).toBeGreaterThanOrEqual(n - 64);
    await Promise.all(all);
    expect(settled.every((c) => c === 1)).toBe(true);
    const stats = e.nativeStats();
    expect(stats[PoolStat.SUBMITTED]).toBe(n);
    expect(stats[PoolStat.COMPLETED]).toBe(n);
    expect(stats[PoolStat.QUEUED_HIGH]).toBeLessThanOrEqual(64);
    expect(stats[PoolStat.IN_FLIGHT]).toBe(0);
    // Doorbells coalesce: a drain delivers many records.
    expect(stats[PoolStat.DRAINS]).toBeLessThan(n);
    if (mode === "batch") expect(e.batches).toBeLessThan(n);
    expect(e.operationsInFlight).toBe(0);
    await e.shutdown();
  }, 30_000);

  test("buffers and paths handed to C survive garbage collection until their completion", async () => {
    const e = engine(mode, 64, 2);
    const dir = tempDir(`gc-${mode}`);
    const fd = await e.open(join(dir, "f"), "create");
    setOpDelayUs(e.poolAddress, 20_000); // hold each operation 20 ms on a worker
    const chunk = 4096;
    const writes: Promise<void>[] = [];
    for (let i = 0; i < 32; i++) writes.push(e.write(fd, payload(chunk, i), i * chunk)); // buffers not kept by the test
    const stats: Promise<unknown>[] = [];
    for (let i = 0; i < 8; i++) stats.push(e.stat(join(dir, "f")).catch(() => null)); // paths not kept either
    for (let i = 0; i < 5; i++) {
      Bun.gc(true);
      const litter = Array.from({ length: 2000 }, (_, k) => new Uint8Array(chunk).fill(k & 0xff));
      void litter;
      await Bun.sleep(10);
    }
    await Promise.all(writes);
    expect((await Promise.all(stats)).every((s) => s !== null)).toBe(true);
    setOpDelayUs(e.poolAddress, 0);
    await e.close(fd);
    const bytes = readFileSync(join(dir, "f"));
    for (let i = 0; i < 32; i++) expect(sha256(bytes.subarray(i * chunk, (i + 1) * chunk))).toBe(sha256(payload(chunk, i)));
    await e.shutdown();
  });

  test("shutdown cancels queued operations with ECANCELED and refuses new ones", async () => {
    const e = engine(mode, 8, 1);
    setOpDelayUs(e.poolAddress, 100_000);
    const results = Array.from({ length: 20 }, (_, i) => e.nop(i).then(() => "done", (err: IoError) => err.code));
    await Bun.sleep(30);
    await e.shutdown();
    await e.shutdown(); // idempotent
    const codes = await Promise.all(results);
    expect(codes.filter((c) => c === "done").length).toBeLessThanOrEqual(1);
    expect(codes.filter((c) => c === "ECANCELED").length).toBeGreaterThanOrEqual(19);
    expect(await e.nop(1).catch((err: IoError) => err.code)).toBe("ECANCELED");
  });
});

function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]); // utime + stime
  return (ticks * 1000) / 100; // USER_HZ is 100 on Linux
}

/**
 * An idle server's CPU, measured over IDLE_WINDOW_MS. CPU time is counted in 10 ms ticks, so a
 * window must be long enough that one tick more or less cannot cross the bound: 8 s against 100 ms
 * (1.25% of one core) leaves ten ticks of margin above what an idle server measures (0-30 ms).
 */
const IDLE_WINDOW_MS = 8000;
const IDLE_CPU_MS_MAX = 100;
const idleVariants = [
  ["default settings", {}],
  ["workers that spin 200 us before they sleep (ioSpinUs)", { ioSpinUs: 200 }],
  ["direct submission", { ioSubmitMode: "direct" }],
  ["batch submission", { ioSubmitMode: "batch" }],
] as const;

test(`an idle server uses no CPU: under ${IDLE_CPU_MS_MAX} ms over ${IDLE_WINDOW_MS / 1000} idle seconds, with and without an idle connection (${idleVariants.map((v) => v[0]).join("; ")})`, async () => {
  // All variants idle side by side, so the long windows are paid once.
  const servers = await Promise.all(idleVariants.map(([, fields]) => startServer({ ioEngine: "cpool", ...fields })));
  try {
    await measureIdle(servers);
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}, 40_000);

async function measureIdle(servers: TestServer[]): Promise<void> {
  const conns = await Promise.all(
    servers.map(async (server) => {
      const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
      const body = payload(300_000, 1);
      await uploadExchange(conn, "warm", body.length, (c) => c.write(body));
      await downloadExchange(conn, "warm", () => {});
      return conn;
    }),
  );
  const idleCpu = async () => {
    await Bun.sleep(300);
    const before = servers.map((s) => cpuMs(s.pid));
    await Bun.sleep(IDLE_WINDOW_MS);
    return servers.map((s, i) => cpuMs(s.pid) - before[i]!);
  };
  const withConnection = await idleCpu();
  for (const conn of conns) conn.close();
  const withoutConnection = await idleCpu();
  expect(Math.max(...withConnection)).toBeLessThan(IDLE_CPU_MS_MAX);
  expect(Math.max(...withoutConnection)).toBeLessThan(IDLE_CPU_MS_MAX);
}

test("under load the server's OS threads stay within ioThreads + 12", async () => {
  const ioThreads = 8;
  const server = await startServer({ ioEngine: "cpool", ioThreads });
  let maxThreads = 0;
  const sampler = setInterval(() => (maxThreads = Math.max(maxThreads, readdirSync(`/proc/${server.pid}/task`).length)), 10);
  await Promise.all(
    Array.from({ length: 100 }, async (_, i) => {
      const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
      for (let k = 0; k < 5; k++) {
        const body = payload(i % 2 ? 5 * 1024 : 200 * 1024, i + k);
        await uploadExchange(conn, `t${i}_${k}`, body.length, (c) => c.write(body));
        await downloadExchange(conn, `t${i}_${k}`, () => {});
        await benchExchange(conn, "b");
      }
      conn.close();
    }),
  );
  clearInterval(sampler);
  expect(maxThreads).toBeGreaterThan(ioThreads);
  expect(maxThreads).toBeLessThanOrEqual(ioThreads + 12);
  await server.stop();
}, 30_000);

test("ioThreadNice lowers the workers' priority (nice), and only theirs", async () => {
  const server = await startServer({ ioEngine: "cpool", ioThreads: 3, ioThreadNice: 7 });
  const niceOf = (name: string) =>
    readdirSync(`/proc/${server.pid}/task`)
      .map((tid) => readFileSync(`/proc/${server.pid}/task/${tid}/stat`, "utf8"))
      .filter((st) => st.includes(`(${name}`))
      .map((st) => Number(st.split(") ")[1]!.split(" ")[16]));
  const workers = niceOf("fsgw-io-");
  expect(workers).toEqual([7, 7, 7]);
  expect(niceOf("bun")).not.toContain(7);
  await server.stop();
});
