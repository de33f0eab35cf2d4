// Engine benchmark: the same server workload on each engine, alternated A B C A B C in one run, so
// that every engine pays the same (shared, noisy) machine conditions. Prints ops/s per engine and
// round, ratios against `bun`, the server's CPU per exchange and its peak OS thread count, and the
// kernel's own ceiling for the upload workloads (../shared/tools/fs-ceiling), measured in the same
// rotation.
//
//   bun scripts/bench-engines.ts [--rounds 3] [--quick] [--only upload-5k,download-50k]
//                                [--ceiling ../shared/tools/fs-ceiling]
//
// Every timed run writes into a fresh data directory under .bench/<run>/, after an untimed warm-up
// on the same server (JIT). Nothing is ever deleted by this script: on ext4 without a journal, mass
// deletion slows creates for minutes, which would distort this run or the next. Remove old runs by
// hand (`rm -rf .bench`) and wait six minutes before benchmarking again.
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { runLoad, type LoadResult } from "../src/client/load";
import { startServer, type TestServer } from "./lib/server-process";
import { args, option, KiB, MiB } from "./lib/options";

const root = resolve(import.meta.dir, "..");
const flag = (name: string) => args.includes(name);

const quick = flag("--quick");
const rounds = Number(option("--rounds", quick ? "1" : "3"));

interface Workload {
  name: string;
  op: "upload" | "download";
  size: number;
  connections: number;
  count: number;
}
const workloads: Workload[] = [
  { name: "upload-5k", op: "upload", size: 5 * KiB, connections: 500, count: quick ? 5000 : 20_000 },
  { name: "upload-50k", op: "upload", size: 50 * KiB, connections: 500, count: quick ? 3000 : 10_000 },
  { name: "upload-1m", op: "upload", size: MiB, connections: 50, count: quick ? 200 : 1000 },
  { name: "upload-64m", op: "upload", size: 64 * MiB, connections: 8, count: quick ? 8 : 16 },
  { name: "download-50k", op: "download", size: 50 * KiB, connections: 500, count: quick ? 5000 : 20_000 },
];
const only = option("--only", "");
const selected = only ? workloads.filter((w) => only.split(",").includes(w.name)) : workloads;

/** What is compared: the three engines, the C pool's second submission path, and the kernel. */
const variants = [
  { name: "cpool", fields: { ioEngine: "cpool", ioSubmitMode: "direct" } },
  { name: "cpool-batch", fields: { ioEngine: "cpool", ioSubmitMode: "batch" } },
  { name: "bun", fields: { ioEngine: "bun" } },
  { name: "sync", fields: { ioEngine: "sync" } },
] as const;
const IO_THREADS = 8;

const runDir = join(root, ".bench", new Date().toISOString().replace(/[:.]/g, "-"));
mkdirSync(runDir, { recursive: true });
let dirSeq = 0;
const freshDir = (label: string) => join(runDir, `${String(++dirSeq).padStart(3, "0")}-${label}`);

function procCpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

/** Run and runnable-but-waiting time (ns) of the server's main thread, from schedstat. */
function mainThreadSched(pid: number): [number, number] {
  const [run, wait] = readFileSync(`/proc/${pid}/task/${pid}/schedstat`, "utf8").trim().split(" ").map(Number);
  return [run!, wait!];
}

function sync(): void {
  Bun.spawnSync(["sync"]);
}

interface Sample {
  variant: string;
  round: number;
  result: LoadResult;
  serverCpuMs: number;
  threadsMax: number;
  /** Share of the run the event-loop thread spent ready to run but waiting for a CPU. */
  mainWaitShare: number;
}

async function timedRun(server: TestServer, w: Workload, keyPrefix: string): Promise<Omit<Sample, "variant" | "round">> {
  let threadsMax = 0;
  const sampleThreads = () => {
    try {
      threadsMax = Math.max(threadsMax, readdirSync(`/proc/${server.pid}/task`).length);
    } catch {}
  };
  const sampler = setInterval(sampleThreads, 25);
  // Untimed warm-up on other keys, so the JIT has compiled the hot path before timing starts
  // (at most 256 MiB of it: disk space is finite).
  const warmupCount = Math.max(1, Math.min(Math.max(w.connections, Math.floor(w.count / 10)), Math.floor((256 * MiB) / w.size)));
  await runLoad({ host: "127.0.0.1", port: server.port, op: w.op, connections: w.connections, count: warmupCount, size: w.size, keyPrefix: w.op === "download" ? keyPrefix : "warmup_" });
  const cpuBefore = procCpuMs(server.pid);
  const [, waitBefore] = mainThreadSched(server.pid);
  const result = await runLoad({ host: "127.0.0.1", port: server.port, op: w.op, connections: w.connections, count: w.count, size: w.size, keyPrefix });
  const serverCpuMs = procCpuMs(server.pid) - cpuBefore;
  const [, waitAfter] = mainThreadSched(server.pid);
  clearInterval(sampler);
  sampleThreads();
  const mainWaitShare = (waitAfter - waitBefore) / 1e6 / result.ms;
  return { result, serverCpuMs, threadsMax, mainWaitShare };
}

function ceilingRun(w: Workload): number {
  const tool = option("--ceiling", resolve(root, "../shared/tools/fs-ceiling"));
  if (!existsSync(tool)) return NaN;
  const r = Bun.spawnSync([tool, freshDir("ceiling"), String(w.count), String(w.size), String(IO_THREADS), "256", String(256 * KiB)], { stdout: "pipe", stderr: "pipe" });
  const m = /([\d.]+) files\/s/.exec(r.stdout.toString());
  return m ? Number(m[1]) : NaN;
}

const samples = new Map<string, Sample[]>();
const ceilings = new Map<string, number[]>();

for (const w of selected) {
  const list: Sample[] = [];
  samples.set(w.name, list);
  ceilings.set(w.name, []);
  // Downloads read one prepared set of files, the same for every engine.
  let downloadDir = "";
  if (w.op === "download") {
    downloadDir = freshDir("download-set");
    const prep = await startServer({ dataDir: downloadDir });
    await runLoad({ host: "127.0.0.1", port: prep.port, op: "upload", connections: 100, count: w.count, size: w.size, keyPrefix: "dl_" });
    await prep.stop();
    sync();
  }
  for (let round = 1; round <= rounds; round++) {
    for (const v of variants) {
      const dataDir = w.op === "download" ? downloadDir : freshDir(`${w.name}-${v.name}`);
      const server = await startServer({ ...v.fields, ioThreads: IO_THREADS, dataDir, idleTimeoutMs: 600_000 });
      const s = await timedRun(server, w, w.op === "download" ? "dl_" : "bench_mark_file_");
      await server.stop();
      sync();
      list.push({ variant: v.name, round, ...s });
      const r = s.result;
      const errs = Object.keys(r.errors).length ? ` errors ${JSON.stringify(r.errors)}` : "";
      console.log(`${w.name} round ${round} ${v.name.padEnd(12)} ${r.opsPerSec.toFixed(0).padStart(7)} ops/s ${(r.mibPerSec ?? 0).toFixed(1).padStart(7)} MiB/s  p99 ${(r.latencyMs?.p99 ?? NaN).toFixed(1)} ms  server CPU ${(s.serverCpuMs / r.ok * 1000).toFixed(0)} us/op  client CPU ${(r.clientCpuMs / r.ok * 1000).toFixed(0)} us/op  loop thread waiting for a CPU ${(100 * s.mainWaitShare).toFixed(0)}%  threads ${s.threadsMax}${errs}`);
    }
    if (w.op === "upload") {
      const c = ceilingRun(w);
      ceilings.get(w.name)!.push(c);
      console.log(`${w.name} round ${round} fs-ceiling  ${c.toFixed(0).padStart(7)} files/s`);
      sync();
    }
  }
}

// ---- the engines alone: no network, no protocol ----
// What each engine costs for the work an upload of 5 KiB hands it (create, write, close, rename), at
// 500 callers, beside the kernel's own ceiling for the same system calls.
interface EngineSample {
  variant: string;
  filesPerSec: number;
  perFileUs: Record<string, number>;
}
const engineSamples: EngineSample[] = [];
const engineCount = quick ? 10_000 : 40_000;
if (!only || only.split(",").includes("engine-commit-5k")) {
  for (let round = 1; round <= rounds; round++) {
    for (const v of ["cpool", "cpool-batch", "bun", "sync", "fs-ceiling"]) {
      let sample: EngineSample;
      if (v === "fs-ceiling") {
        sample = { variant: v, filesPerSec: ceilingRun({ name: "engine", op: "upload", size: 5 * KiB, connections: 500, count: engineCount }), perFileUs: {} };
      } else {
        const r = Bun.spawnSync([process.execPath, join(root, "scripts/lib/engine-load.ts"), v, freshDir(`engine-${v}`), String(engineCount), String(5 * KiB), "500"], { stdout: "pipe", stderr: "pipe" });
        sample = JSON.parse(r.stdout.toString().trim().split("\n").at(-1)!);
      }
      sync();
      engineSamples.push(sample);
      console.log(`engine-commit-5k round ${round} ${v.padEnd(12)} ${sample.filesPerSec.toFixed(0).padStart(7)} files/s  CPU per file (us): ${JSON.stringify(sample.perFileUs)}`);
    }
  }
}

// ---- summary ----
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const lines: string[] = [];
lines.push(`rounds: ${rounds}; ioThreads ${IO_THREADS}; machine: ${navigator.hardwareConcurrency} CPUs`);
lines.push("| workload | engine | ops/s (mean) | per round | vs bun | server CPU µs/op | loop thread waiting for CPU | max threads | p99 ms |");
lines.push("|---|---|---|---|---|---|---|---|---|");
for (const w of selected) {
  const list = samples.get(w.name)!;
  const by = (v: string) => list.filter((s) => s.variant === v);
  const bunMean = mean(by("bun").map((s) => s.result.opsPerSec));
  for (const v of variants) {
    const ss = by(v.name);
    const ops = mean(ss.map((s) => s.result.opsPerSec));
    const cpu = mean(ss.map((s) => (s.serverCpuMs / s.result.ok) * 1000));
    lines.push(
      `| ${w.name} ×${w.connections} | ${v.name} | ${ops.toFixed(0)} | ${ss.map((s) => s.result.opsPerSec.toFixed(0)).join(", ")} | ${(ops / bunMean).toFixed(2)}x | ${cpu.toFixed(0)} | ${(100 * mean(ss.map((s) => s.mainWaitShare))).toFixed(0)}% | ${Math.max(...ss.map((s) => s.threadsMax))} | ${mean(ss.map((s) => s.result.latencyMs?.p99 ?? NaN)).toFixed(1)} |`,
    );
  }
  const c = ceilings.get(w.name)!;
  if (c.length > 0) lines.push(`| ${w.name} ×${w.connections} | fs-ceiling (kernel, ${IO_THREADS} threads) | ${mean(c).toFixed(0)} | ${c.map((x) => x.toFixed(0)).join(", ")} | ${(mean(c) / bunMean).toFixed(2)}x | | | | |`);
}
if (engineSamples.length > 0) {
  const bunEngine = mean(engineSamples.filter((s) => s.variant === "bun").map((s) => s.filesPerSec));
  lines.push("", `engine alone: 5 KiB commits (create, write, close, rename), 500 callers, ${engineCount} files per run`, "");
  lines.push("| engine | files/s (mean) | per round | vs bun | JS thread µs/file | worker threads µs/file |");
  lines.push("|---|---|---|---|---|---|");
  for (const v of ["cpool", "cpool-batch", "bun", "sync", "fs-ceiling"]) {
    const ss = engineSamples.filter((s) => s.variant === v);
    const m = mean(ss.map((s) => s.filesPerSec));
    const js = mean(ss.map((s) => s.perFileUs["bun.exe"] ?? s.perFileUs.bun ?? 0));
    const workers = mean(ss.map((s) => (s.perFileUs["fsgw-io"] ?? 0) + (s.perFileUs["Bun Pool"] ?? 0)));
    lines.push(`| ${v} | ${m.toFixed(0)} | ${ss.map((s) => s.filesPerSec.toFixed(0)).join(", ")} | ${(m / bunEngine).toFixed(2)}x | ${v === "fs-ceiling" ? "" : js.toFixed(0)} | ${v === "fs-ceiling" ? "" : workers.toFixed(0)} |`);
  }
}
console.log("\n" + lines.join("\n"));
writeFileSync(join(runDir, "results.json"), JSON.stringify({ rounds, workloads: selected, samples: Object.fromEntries(samples), ceilings: Object.fromEntries(ceilings) }, null, 2));
writeFileSync(join(runDir, "summary.md"), lines.join("\n") + "\n");

const du = Bun.spawnSync(["du", "-sh", runDir], { stdout: "pipe" }).stdout.toString().trim();
console.log(`\ndata left in place (${du}); remove it by hand when done, then let the disk settle for six minutes`);
console.log(`\nsummary: ${join(runDir, "summary.md")}`);
