// Proves the admin endpoint against a running server under load: profiles parse and show fsgw's own
// functions, stats move by exactly the exchanges made, /metrics is valid Prometheus text, health
// follows shutdown, unknown paths are 404; and logs: per-exchange lines at debug only, rotation.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { connect, type FsgwClient } from "../../src/client/client";
import { payload } from "../helpers/data";
import { eventuallyAsync, freePort, startServer, tempDir, type TestServer } from "../helpers/server";

let server: TestServer;
let admin: string;
let client: FsgwClient;

beforeAll(async () => {
  const adminPort = freePort();
  // With volumes: the store's own counters (volume records, writes...) are among the metrics too.
  server = await startServer({ adminPort, volumes: true });
  admin = `http://127.0.0.1:${adminPort}`;
  client = connect({ port: server.port, poolSize: 4 });
});
afterAll(async () => {
  client.close();
  await server.stop();
});

async function stats(): Promise<any> {
  const r = await fetch(`${admin}/debug/stats`);
  expect(r.status).toBe(200);
  return r.json();
}

/**
 * Keeps the server busy until `stop()`: uploads, downloads and bench exchanges in a loop, on a
 * client of its own, which `stop()` closes and waits until the server has seen every close: then
 * the loops have nothing left to do.
 */
async function backgroundLoad() {
  const openBefore = (await stats()).connections.open;
  const own = connect({ port: server.port, poolSize: 1 });
  let running = true;
  const loop = (async () => {
    const body = payload(20_000, 1);
    for (let i = 0; running; i++) {
      await own.upload(`load-${i % 50}`, body);
      await own.download(`load-${i % 50}`);
      await own.bench();
    }
  })();
  const stop = async () => {
    running = false;
    await loop;
    own.close();
    await eventuallyAsync(async () => (await stats()).connections.open === openBefore, 5000, "the load's connection closed at the server");
  };
  return { stop };
}

describe("admin endpoint", () => {
  test("/healthz answers 200 while serving; unknown paths 404; other methods 405", async () => {
    expect((await fetch(`${admin}/healthz`)).status).toBe(200);
    expect(await (await fetch(`${admin}/healthz`)).text()).toBe("ok\n");
    expect((await fetch(`${admin}/nope`)).status).toBe(404);
    expect((await fetch(`${admin}/debug/pprof/profile`)).status).toBe(404);
    expect((await fetch(`${admin}/metrics`, { method: "POST" })).status).toBe(405);
  });

  test("/debug/stats counters move by exactly the exchanges made", async () => {
    const before = await stats();
    const body = payload(12_345, 2);
    for (let i = 0; i < 7; i++) await client.upload(`s-${i}`, body);
    for (let i = 0; i < 5; i++) await client.download(`s-${i}`);
    for (let i = 0; i < 3; i++) await client.exist(`s-${i}`);
    await client.exist("missing").catch(() => {});
    for (let i = 0; i < 11; i++) await client.bench();
    for (let i = 0; i < 2; i++) await client.delete(`s-${i}`);
    await client.delete("missing").catch(() => {});
    const after = await stats();
    const d = (op: string, field: string) => after.exchanges[op][field] - before.exchanges[op][field];
    expect([d("upload", "count"), d("upload", "errors"), d("upload", "bytes")]).toEqual([7, 0, 7 * 12_345]);
    expect([d("download", "count"), d("download", "bytes")]).toEqual([5, 5 * 12_345]);
    expect([d("exist", "count"), d("exist", "errors")]).toEqual([4, 1]);
    expect(d("bench", "count")).toBe(11);
    expect([d("delete", "count"), d("delete", "errors")]).toEqual([3, 1]);
    expect(after.exchanges.upload.latencyMs.p99).toBeGreaterThanOrEqual(after.exchanges.upload.latencyMs.p50);
    expect(after.exchanges.upload.latencyMs.p50).toBeGreaterThan(0);
    // Engine, pool and process numbers are there and sane.
    expect(after.engine).toMatchObject({ name: "cpool", threads: 8, submitMode: "adaptive" });
    expect(after.engine.completed).toBeGreaterThan(before.engine.completed);
    expect(after.engine.drains).toBeGreaterThan(0);
    expect(after.engine.recordsPerDrain).toBeGreaterThanOrEqual(1);
    expect(after.engine.queueDepthHigh).toBeGreaterThanOrEqual(1);
    expect(after.connections.open).toBeGreaterThanOrEqual(1);
    expect(after.connections.total).toBeGreaterThanOrEqual(after.connections.open);
    expect(after.process.rssBytes).toBeGreaterThan(10_000_000);
    expect(after.process.threads).toBeGreaterThanOrEqual(9);
    expect(after.process.openFiles).toBeGreaterThan(3);
    expect(after.uptimeSeconds).toBeGreaterThan(0);
  });

  test("/metrics is Prometheus text: HELP and TYPE before each family, fsgw_ names, valid samples that agree with stats", async () => {
    await client.bench();
    const r = await fetch(`${admin}/metrics`);
    expect(r.headers.get("content-type")).toContain("text/plain; version=0.0.4");
    const body = await r.text();
    const s = await stats();
    const declared = new Map<string, string>();
    const values = new Map<string, number>();
    let lastHelp = "";
    for (const line of body.trimEnd().split("\n")) {
      let m: RegExpExecArray | null;
      if ((m = /^# HELP (fsgw_[a-z0-9_]+) \S.*$/.exec(line))) {
        lastHelp = m[1]!;
      } else if ((m = /^# TYPE (fsgw_[a-z0-9_]+) (counter|gauge|histogram)$/.exec(line))) {
        expect(m[1]).toBe(lastHelp);
        declared.set(m[1]!, m[2]!);
      } else {
        m = /^(fsgw_[a-z0-9_]+)(\{[a-z_]+="[^"\\]*"(?:,[a-z_]+="[^"\\]*")*\})? (-?[0-9.e+-]+|\+Inf|NaN)$/.exec(line);
        expect([line, m !== null]).toEqual([line, true]);
        const family = m![1]!.replace(/_(bucket|sum|count)$/, "");
        expect([line, declared.has(m![1]!) || declared.get(family) === "histogram"]).toEqual([line, true]);
        values.set(m![1]! + (m![2] ?? ""), Number(m![3]));
      }
    }
    for (const [name, type] of declared) if (type === "counter") expect(name).toEndWith("_total");
    expect(declared.get("fsgw_store_volume_records_total")).toBe("counter");
    expect(declared.get("fsgw_store_volume_files_open")).toBe("gauge");
    expect(values.get('fsgw_exchanges_total{op="bench"}')).toBeGreaterThanOrEqual(s.exchanges.bench.count - 1);
    expect(values.get("fsgw_process_resident_memory_bytes")).toBeGreaterThan(0);
    expect(declared.get("fsgw_exchange_duration_seconds")).toBe("histogram");
    // Buckets are cumulative and end at +Inf = _count.
    const buckets = [...values].filter(([k]) => k.startsWith('fsgw_exchange_duration_seconds_bucket{op="upload"'));
    for (let i = 1; i < buckets.length; i++) expect(buckets[i]![1]).toBeGreaterThanOrEqual(buckets[i - 1]![1]);
    expect(buckets.at(-1)![0]).toContain('le="+Inf"');
    expect(buckets.at(-1)![1]).toBe(values.get('fsgw_exchange_duration_seconds_count{op="upload"}')!);
  });

  test("/debug/profile: a .cpuprofile with fsgw's own functions; format=top; a second one at once is 409; bad seconds 400", async () => {
    expect((await fetch(`${admin}/debug/profile?seconds=0`)).status).toBe(400);
    expect((await fetch(`${admin}/debug/profile?seconds=301`)).status).toBe(400);
    expect((await fetch(`${admin}/debug/profile?seconds=1&format=svg`)).status).toBe(400);
    const load = await backgroundLoad();
    const first = fetch(`${admin}/debug/profile?seconds=2`);
    await server.line("event=profile_started"); // the first is taken: the second finds the profiler busy
    const second = await fetch(`${admin}/debug/profile?seconds=1`);
    expect(second.status).toBe(409);
    const res = await first;
    expect(res.status).toBe(200);
    const profile: any = await res.json();
    expect(Object.keys(profile)).toEqual(expect.arrayContaining(["nodes", "startTime", "endTime", "samples", "timeDeltas"]));
    expect(profile.samples.length).toBeGreaterThan(100);
    const urls = profile.nodes.map((n: any) => n.callFrame.url as string);
    const names = profile.nodes.map((n: any) => n.callFrame.functionName as string);
    expect(urls.some((u: string) => u.includes("/src/server/connection.ts"))).toBe(true);
    expect(names).toContain("onData");
    const top = await (await fetch(`${admin}/debug/profile?seconds=1&format=top`)).text();
    await load.stop();
    expect(top).toMatch(/^Showing top \d+ functions, [\d.]+ms of [\d.]+ms sampled \([\d.]+%\); the JavaScript thread was busy [\d.]+ms of the [\d.]+ s window/);
    expect(top).toContain("      flat  flat%        cum   cum%  function");
    expect(top).toMatch(/\n +[\d.]+ms +[\d.]+% +[\d.]+ms +[\d.]+% {2}\S/);
    // Idle, a profile has nothing to show, and says so instead of printing an empty table. With no
    // connection at all: one open keeps the timeout sweep ticking, which a profile may catch.
    client.close();
    await eventuallyAsync(async () => (await stats()).connections.open === 0, 5000, "every connection closed at the server");
    const idle = await (await fetch(`${admin}/debug/profile?seconds=1&format=top`)).text();
    expect(idle).toStartWith("No samples in the 1.0 s window: the JavaScript thread was idle throughout");
  }, 30_000);
});

describe("health and logs", () => {
  test("/healthz answers 503 while the server drains", async () => {
    const adminPort = freePort();
    const s = await startServer({ adminPort, shutdownGraceMs: 3000 });
    const c = connect({ port: s.port });
    await c.bench();
    // Keep an exchange open so draining lasts: an upload whose body never comes.
    const { WireConn } = await import("../../src/client/wire-conn");
    const raw = await WireConn.connect({ host: "127.0.0.1", port: s.port });
    await raw.sendFrame({ operation: 3, key: "slow", size: 1000 });
    await raw.readFrame();
    s.proc.kill("SIGTERM");
    await s.line("event=shutdown");
    const r = await fetch(`http://127.0.0.1:${adminPort}/healthz`);
    expect(r.status).toBe(503);
    raw.destroy();
    c.close();
    expect(await s.proc.exited).toBe(0);
  });

  test("per-exchange log lines only at debug level; the log file rotates by line count", async () => {
    const dir = tempDir("logs");
    const info = await startServer({ logFile: join(dir, "info.log") });
    const ci = connect({ port: info.port });
    for (let i = 0; i < 5; i++) await ci.bench();
    ci.close();
    await info.stop();
    expect(info.lines.some((l) => l.includes("event=exchange"))).toBe(false);
    expect(readFileSync(join(dir, "info.log"), "utf8")).toContain("event=listening");

    const debug = await startServer({ logLevel: "debug", logFile: join(dir, "fsgw.log"), logLinesPerFile: 10, logFilesKept: 3 });
    const cd = connect({ port: debug.port });
    for (let i = 0; i < 60; i++) await cd.bench(`k${i}`);
    cd.close();
    await debug.stop();
    const exchanges = debug.lines.filter((l) => l.includes("event=exchange"));
    expect(exchanges.length).toBe(60);
    expect(exchanges[0]).toMatch(/level=debug event=exchange remote=127\.0\.0\.1:\d+ op=bench key=k0 ok=true bytes=0 ms=[\d.]+/);
    const files = readdirSync(dir).filter((f) => f.startsWith("fsgw.log")).sort();
    expect(files).toEqual(["fsgw.log", "fsgw.log.1", "fsgw.log.2", "fsgw.log.3"]);
    for (const f of files) expect(readFileSync(join(dir, f), "utf8").trimEnd().split("\n").length).toBeLessThanOrEqual(10);
    // The newest lines are in fsgw.log, the oldest kept in fsgw.log.3.
    expect(readFileSync(join(dir, "fsgw.log"), "utf8")).toContain("event=stopped");
  }, 30_000);
});
