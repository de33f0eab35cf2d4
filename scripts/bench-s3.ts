// The S3 store against the file store, on one machine: a one-node OpenStack Swift on loopback
// (scripts/lib/swift.ts), gateways of this checkout in three configurations, alternated round by
// round (A B C, C B A, ...):
//   file          the file store (the default: uploads by splice), data under .bench/
//   file-copying  the file store with zeroCopy off (bodies through memory, as the S3 store's must go)
//   s3            the S3 store
//   s3+cache      the S3 store with a read cache (cacheDir under .bench/), whose copies stay fresh
//                 for the whole run (cacheFreshMs 600000): no HEAD once warm
//   s3+cache/0    the same with cacheFreshMs 0: a HEAD to the store before every cached download
// Rows: upload 5 KiB ×500 and 1 MiB ×50, download 50 KiB ×500 with the cache cold (the keys were
// uploaded through the plain s3 gateway, so the cached one has no copy yet), then warm (the same
// keys again, four passes), then hot (ten passes more). Printed per row: ops/s, gateway CPU per exchange and per MiB (every thread's
// schedstat run time), and for the S3 rows the Swift proxy's CPU and the whole cluster's (proxy,
// object, container, account servers, memcached) beside the gateway's, so that it is clear which
// side is the bottleneck. Upload rows also show the kernel's own ceiling for the same files
// (../shared/tools/fs-ceiling, when present: create, write, close, rename; no network, no runtime).
//
//   bun scripts/bench-s3.ts [--rounds 3] [--connections 10]
//
// Nothing is deleted between rounds (see BENCHMARKS.md on this disk): each round writes new keys
// under a new prefix, and the data stays under .bench/ until removed by hand.
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { runLoad, type LoadResult } from "../src/client/load";
import { cpuMsOf } from "./lib/cpu";
import { MiB, option } from "./lib/options";
import { startServer, type TestServer } from "./lib/server-process";
import { startSwift } from "./lib/swift";

const root = resolve(import.meta.dir, "..");
const rounds = Number(option("--rounds", "3"));
const connections = Number(option("--connections", "10"));
const runDir = join(root, ".bench", "s3-" + new Date().toISOString().replace(/[:.]/g, "-"));
mkdirSync(runDir, { recursive: true });

const swift = await startSwift("fsgw-bench");
const s3Fields = { store: "s3", s3Endpoint: swift.endpoint, s3Region: swift.region, s3Bucket: swift.bucket, s3AccessKeyId: swift.accessKeyId, s3SecretAccessKey: swift.secretAccessKey };

type Contestant = "file" | "file-copying" | "s3" | "s3+cache" | "s3+cache/0";
/** Uploads: the file store as shipped (splice) and through memory (zeroCopy off), beside the S3 ones. */
const uploaders: Contestant[] = ["file", "file-copying", "s3", "s3+cache"];
/** Downloads: the cache as configured by default but fresh for the whole run, and revalidated by a HEAD each time. */
const downloaders: Contestant[] = ["file", "s3", "s3+cache", "s3+cache/0"];
const contestants: Contestant[] = ["file", "file-copying", "s3", "s3+cache", "s3+cache/0"];

interface Measure {
  opsPerSec: number;
  gatewayUs: number;
  proxyUs: number;
  swiftUs: number;
  ok: number;
  bytes: number;
}
const results = new Map<string, Measure[]>();

const swiftCpu = () => swift.pids.reduce((sum, pid) => sum + cpuMsOf(pid), 0);

/** Runs a load against `server` `passes` times over the same keys, with the CPU each side spent on it. */
async function measured(server: TestServer, op: "upload" | "download", count: number, size: number, keyPrefix: string, passes = 1): Promise<Measure & { r: LoadResult }> {
  const g0 = cpuMsOf(server.pid);
  const p0 = cpuMsOf(swift.proxyPid);
  const s0 = swiftCpu();
  const t0 = performance.now();
  let r!: LoadResult;
  let done = 0;
  for (let i = 0; i < passes; i++) {
    r = await runLoad({ host: "127.0.0.1", port: server.port, op, connections, count, size, keyPrefix });
    done += r.ok;
  }
  const ok = Math.max(1, done);
  return {
    r,
    opsPerSec: (done * 1000) / (performance.now() - t0),
    gatewayUs: ((cpuMsOf(server.pid) - g0) * 1000) / ok,
    proxyUs: ((cpuMsOf(swift.proxyPid) - p0) * 1000) / ok,
    swiftUs: ((swiftCpu() - s0) * 1000) / ok,
    ok: r.ok,
    bytes: size,
  };
}

function record(row: string, c: Contestant, m: Measure & { r: LoadResult }, count: number): void {
  const key = `${row} ${c}`;
  results.set(key, [...(results.get(key) ?? []), m]);
  const store = c.startsWith("file") ? "" : `  proxy ${m.proxyUs.toFixed(0).padStart(6)} µs  swift ${m.swiftUs.toFixed(0).padStart(6)} µs`;
  const errors = m.r.ok < count ? `  errors ${JSON.stringify(m.r.errors)}` : "";
  console.log(`${row.padEnd(14)} ${c.padEnd(9)} ${m.opsPerSec.toFixed(0).padStart(6)} ops/s  gateway ${m.gatewayUs.toFixed(0).padStart(6)} µs/op${store}${errors}`);
}

function ceiling(size: number, count: number, label: string): number {
  const tool = resolve(root, "../shared/tools/fs-ceiling");
  if (!existsSync(tool)) return NaN;
  const r = Bun.spawnSync([tool, join(runDir, `ceiling-${label}`), String(count), String(size), "8", "256", String(256 * 1024)], { stdout: "pipe", stderr: "pipe" });
  return Number(/([\d.]+) files\/s/.exec(r.stdout.toString())?.[1] ?? NaN);
}

try {
  for (let round = 1; round <= rounds; round++) {
    const ordered = (list: Contestant[]) => (round % 2 === 1 ? list : [...list].reverse());
    const prefix = `r${round}/`;
    const gateways = new Map<Contestant, TestServer>();
    // One gateway each per round: the file store on a fresh directory, the two S3 ones on the
    // same prefix (so that the cached one finds the plain one's uploads cold).
    for (const c of contestants) {
      const cache: Record<string, string | number> = c === "s3+cache" ? { cacheDir: join(runDir, `cache-r${round}`), cacheFreshMs: 600_000 } : c === "s3+cache/0" ? { cacheDir: join(runDir, `cache0-r${round}`), cacheFreshMs: 0 } : {};
      const fields: Record<string, string | number | boolean> = c.startsWith("file")
        ? { dataDir: join(runDir, `${c}-r${round}`, "d"), zeroCopy: c === "file" }
        : { ...s3Fields, s3Prefix: prefix, ...cache, dataDir: join(runDir, "unused") };
      gateways.set(c, await startServer(fields));
    }
    try {
      for (const [row, size, count] of [["upload-5k", 5 * 1024, 500], ["upload-1m", MiB, 50]] as const) {
        for (const c of ordered(uploaders)) {
          Bun.spawnSync(["sync"]);
          record(row, c, await measured(gateways.get(c)!, "upload", count, size, `${row}-${c}-`), count);
        }
        const fc = ceiling(size, count, `${row}-r${round}`);
        results.set(`${row} fs-ceiling`, [...(results.get(`${row} fs-ceiling`) ?? []), { opsPerSec: fc, gatewayUs: NaN, proxyUs: NaN, swiftUs: NaN, ok: count, bytes: size }]);
        console.log(`${row.padEnd(14)} fs-ceiling ${fc.toFixed(0).padStart(6)} files/s`);
      }
      // Downloads: the file gateway reads its own keys; both S3 gateways read keys uploaded
      // through the plain s3 gateway (the cached gateway has no copy of them).
      const size = 50 * 1024;
      const count = 500;
      await runLoad({ host: "127.0.0.1", port: gateways.get("file")!.port, op: "upload", connections, count, size, keyPrefix: "dl-" });
      await runLoad({ host: "127.0.0.1", port: gateways.get("s3")!.port, op: "upload", connections, count, size, keyPrefix: "dl-" });
      // Cold: one pass (each key once: every one a miss for the cached gateways). Warm: the next
      // four passes over the same keys, measured together; hot: ten more after those (the
      // runtime's compilers have reached the hit path: see BENCHMARKS.md).
      for (const [pass, passes] of [["cold", 1], ["warm", 4], ["hot", 10]] as const) {
        for (const c of ordered(downloaders)) record(`download-50k ${pass}`, c, await measured(gateways.get(c)!, "download", count, size, "dl-", passes), count);
      }
    } finally {
      for (const g of gateways.values()) await g.stop();
    }
  }
} finally {
  await swift.stop();
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
console.log(`\nmedians of ${rounds} rounds, ${connections} connections; CPU in µs per exchange (per MiB for bodies)\n`);
console.log("| row | store | ops/s | ÷ file | gateway CPU µs/op | gateway ÷ file | gateway µs/MiB | Swift proxy µs/op | whole Swift µs/op |");
console.log("|---|---|---|---|---|---|---|---|---|");
for (const row of ["upload-5k", "upload-1m", "download-50k cold", "download-50k warm", "download-50k hot"]) {
  const file = results.get(`${row} file`)!;
  const fileOps = median(file.map((m) => m.opsPerSec));
  const fileCpu = median(file.map((m) => m.gatewayUs));
  for (const c of row.startsWith("upload") ? uploaders : downloaders) {
    const ms = results.get(`${row} ${c}`)!;
    const ops = median(ms.map((m) => m.opsPerSec));
    const cpu = median(ms.map((m) => m.gatewayUs));
    const perMiB = cpu / (ms[0]!.bytes / MiB);
    const store = c.startsWith("file") ? "–" : median(ms.map((m) => m.proxyUs)).toFixed(0);
    const whole = c.startsWith("file") ? "–" : median(ms.map((m) => m.swiftUs)).toFixed(0);
    console.log(`| ${row} | ${c} | ${ops.toFixed(0)} | ${(ops / fileOps).toFixed(2)} | ${cpu.toFixed(0)} | ${(cpu / fileCpu).toFixed(2)} | ${perMiB.toFixed(0)} | ${store} | ${whole} |`);
  }
  const f = results.get(`${row} fs-ceiling`);
  if (f !== undefined) console.log(`| ${row} | fs-ceiling | ${median(f.map((m) => m.opsPerSec)).toFixed(0)} | | | | | | |`);
}
