// One event loop against several (`loops`), alternated round by round on one machine, and a model
// of what more cores would give. Per workload and loop count: ops/s, and the server's CPU per
// exchange split by thread: the event loops (the main thread with one loop, the "Worker" threads
// with several), the C pools' workers ("fsgw-io-*"), and the rest (JIT, GC, Bun's pool).
//
//   bun scripts/bench-loops.ts [--rounds 3] [--loops 1,2,2p] [--cores 4,16,64] [--connections 500]
//   (--loops: loop counts to compare; "2p": two loops with a pool each instead of one shared pool)
//
// The model (printed last): with one loop per core and the load generator elsewhere, each exchange
// costs the machine L + P + R µs of CPU (loop, pool, rest: measured here with one loop), so C cores
// serve C × 1e6 / (L + P + R) exchanges a second, and no loop needs more than one core while
// L ≤ that share. It assumes nothing shared saturates first (the disk, the directory locks, the
// NIC); a run of this script on the bigger machine (--loops 1,<cores>) confirms it or not.
//
// Data goes to .bench/loops-<time>/ and stays there (see BENCHMARKS.md on this disk).
import { mkdirSync, readFileSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { runLoad } from "../src/client/load";
import { option, KiB } from "./lib/options";
import { startServer } from "./lib/server-process";

const root = resolve(import.meta.dir, "..");
const rounds = Number(option("--rounds", "3"));
/** Variants: a loop count, "p" after it for a pool per loop (loopPools per-loop; else shared). */
const variants = option("--loops", "1,2,2p").split(",");
const loopsOf = (v: string) => Number(v.replace("p", ""));
const cores = option("--cores", "4,16,64").split(",").map(Number);
const connections = Number(option("--connections", "500"));
const runDir = join(root, ".bench", "loops-" + new Date().toISOString().replace(/[:.]/g, "-"));
mkdirSync(runDir, { recursive: true });

const workloads = [
  { name: "exist", op: "exist" as const, size: KiB, count: 20_000 },
  { name: "download-50k", op: "download" as const, size: 50 * KiB, count: 20_000 },
  { name: "upload-5k", op: "upload" as const, size: 5 * KiB, count: 20_000 },
];

type Split = { loop: number; pool: number; rest: number };
/** CPU ms of every thread of `pid`, by kind. */
function cpuByKind(pid: number, loops: number): Split {
  const out = { loop: 0, pool: 0, rest: 0 };
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim();
      const ns = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
      // One loop: the process's main thread; several: the "Worker" threads (the main thread then
      // only coordinates, and counts as rest).
      const kind = comm.startsWith("fsgw-io") ? "pool" : (loops === 1 ? Number(tid) === pid : comm === "Worker") ? "loop" : "rest";
      out[kind] += ns / 1e6;
    } catch {} // a thread that just exited
  }
  return out;
}

const results = new Map<string, { ops: number; loop: number; pool: number; rest: number }[]>();
for (let round = 1; round <= rounds; round++) {
  const order = round % 2 === 1 ? variants : [...variants].reverse();
  for (const variant of order) {
    const loops = loopsOf(variant);
    const server = await startServer({ loops, loopPools: variant.endsWith("p") ? "per-loop" : "shared", dataDir: join(runDir, `l${variant}-r${round}`, "d") });
    try {
      // Files for exist and download, and a warm-up (JIT) on the same server.
      await runLoad({ host: "127.0.0.1", port: server.port, op: "upload", connections, count: 20_000, size: 50 * KiB, keyPrefix: "f" });
      await runLoad({ host: "127.0.0.1", port: server.port, op: "download", connections, count: 20_000, size: 50 * KiB, keyPrefix: "f" });
      for (const w of workloads) {
        const before = cpuByKind(server.pid, loops);
        const r = await runLoad({ host: "127.0.0.1", port: server.port, op: w.op, connections, count: w.count, size: w.size, keyPrefix: w.op === "upload" ? `u${round}-` : "f" });
        const after = cpuByKind(server.pid, loops);
        const per = (k: keyof Split) => ((after[k] - before[k]) * 1000) / Math.max(1, r.ok);
        const m = { ops: r.opsPerSec, loop: per("loop"), pool: per("pool"), rest: per("rest") };
        const key = `${w.name} ${variant}`;
        results.set(key, [...(results.get(key) ?? []), m]);
        const errors = r.ok < w.count ? `  errors ${JSON.stringify(r.errors)}` : "";
        console.log(`${w.name.padEnd(13)} loops ${variant.padEnd(3)} r${round}  ${m.ops.toFixed(0).padStart(6)} ops/s  loop ${m.loop.toFixed(1).padStart(5)}  pool ${m.pool.toFixed(1).padStart(5)}  rest ${m.rest.toFixed(1).padStart(5)} µs/op${errors}`);
      }
    } finally {
      await server.stop();
    }
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const med = (key: string) => {
  const ms = results.get(key)!;
  return { ops: median(ms.map((m) => m.ops)), loop: median(ms.map((m) => m.loop)), pool: median(ms.map((m) => m.pool)), rest: median(ms.map((m) => m.rest)) };
};
console.log(`\nmedians of ${rounds} rounds, ${connections} connections, ${navigator.hardwareConcurrency} CPUs here (the load generator shares them)\n`);
console.log("| workload | loops | ops/s | ÷ 1 loop | loop µs/op | pool µs/op | rest µs/op | server CPU µs/op |");
console.log("|---|---|---|---|---|---|---|---|");
for (const w of workloads) {
  const one = med(`${w.name} ${variants[0]}`);
  for (const variant of variants) {
    const m = med(`${w.name} ${variant}`);
    const label = variant.endsWith("p") ? `${loopsOf(variant)}, a pool each` : `${variant}${loopsOf(variant) > 1 ? ", one pool" : ""}`;
    console.log(`| ${w.name} | ${label} | ${m.ops.toFixed(0)} | ${(m.ops / one.ops).toFixed(2)} | ${m.loop.toFixed(1)} | ${m.pool.toFixed(1)} | ${m.rest.toFixed(1)} | ${(m.loop + m.pool + m.rest).toFixed(1)} |`);
  }
}
console.log(`\nmodel from the ${variants[0]}-loop figures: ops/s = cores × 1e6 / (loop + pool + rest µs), one loop per core, the load generator elsewhere\n`);
console.log(`| workload | µs/op | ${cores.map((c) => `${c} cores`).join(" | ")} |`);
console.log(`|---|---|${cores.map(() => "---").join("|")}|`);
for (const w of workloads) {
  const m = med(`${w.name} ${variants[0]}`);
  const total = m.loop + m.pool + m.rest;
  console.log(`| ${w.name} | ${total.toFixed(1)} | ${cores.map((c) => ((c * 1e6) / total).toFixed(0)).join(" | ")} |`);
}
