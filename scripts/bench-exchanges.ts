// Exchange benchmark on the Go original's load shape (500 connections, one request in flight each):
// server CPU per exchange, its excess over a bare bench round trip measured on the same server just
// before, context switches per exchange (all threads), and system calls per exchange (perf, when
// installed). Variants (engine settings, or another checkout of fsgw such as the code before a
// change) alternate A B C A B C on every row, each run on a fresh server, so all pay the same
// machine conditions.
//
//   bun scripts/bench-exchanges.ts [--rounds 2] [--only exist,delete] [--big]
//                                  [--before ../fsgw-v1] [--variants inline-adaptive,before,bun,before-bun]
//   bun scripts/bench-exchanges.ts --variants files,volumes --only upload-5k,exist,download-5k,delete
//                                  (small bodies as files against records in volumes)
//   bun scripts/bench-exchanges.ts --variants volumes,allocator-eager --only upload-5k,exist,download-5k
//                                  (fsgw's allocator setting against mimalloc's own)
//   bun scripts/bench-exchanges.ts --variants floor,volumes --only upload-5k
//                                  (fsgw against a server that stores nothing: what storing costs)
//
// Rows that create files run first and rows that delete files last: on ext4 without a journal,
// creating files right after a mass deletion is 3-4x slower for minutes. Nothing is deleted between
// runs except by the delete row itself; data directories stay under .bench/ (remove by hand).
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { runLoad, type LoadOp } from "../src/client/load";
import { startServer, type TestServer } from "./lib/server-process";
import { args, option, KiB, MiB } from "./lib/options";

const root = resolve(import.meta.dir, "..");
const rounds = Number(option("--rounds", "2"));
const CONNECTIONS = 500;
const BENCH_COUNT = 50_000;
/** Files prepared for the read rows (download, exist); exist-miss asks for as many never-stored keys. */
const READ_SET = 20_000;

interface Row {
  name: string;
  op: LoadOp;
  size: number;
  count: number;
  connections?: number;
  /** Upload body written in pieces of this size (the Go client writes 4096 at a time). */
  writeChunk?: number;
  /** exist on keys never stored (each looked up once: the kernel has no cached answer). */
  miss?: boolean;
  big?: boolean;
}
const rows: Row[] = [
  { name: "upload-5k", op: "upload", size: 5 * KiB, count: 20_000 },
  { name: "upload-5k/4096", op: "upload", size: 5 * KiB, count: 20_000, writeChunk: 4096 },
  { name: "upload-50k", op: "upload", size: 50 * KiB, count: 10_000 },
  { name: "upload-50k/4096", op: "upload", size: 50 * KiB, count: 10_000, writeChunk: 4096 },
  { name: "upload-1m", op: "upload", size: MiB, count: 1000, connections: 50, big: true },
  { name: "upload-64m", op: "upload", size: 64 * MiB, count: 24, connections: 8, big: true },
  { name: "download-50k", op: "download", size: 50 * KiB, count: READ_SET },
  { name: "download-5k", op: "download", size: 5 * KiB, count: READ_SET },
  { name: "exist", op: "exist", size: 5 * KiB, count: READ_SET },
  { name: "exist-miss", op: "exist", size: 5 * KiB, count: READ_SET, miss: true },
  { name: "delete", op: "delete", size: 5 * KiB, count: 20_000 },
];

interface Variant {
  name: string;
  fields: Record<string, string | number | boolean>;
  /** The server's environment beyond this process's ("" unsets a variable). */
  env?: Record<string, string>;
  projectRoot?: string;
  /** Another server than fsgw's (startServer's entry), which runs only the upload rows. */
  entry?: { script: string; serveArg: boolean };
}
const allVariants: Variant[] = [
  { name: "inline-batch", fields: { ioEngine: "cpool", ioInline: "cached", ioSubmitMode: "batch", ioJobsPerWake: 1 } },
  { name: "inline-adaptive", fields: { ioEngine: "cpool", ioInline: "cached", ioSubmitMode: "adaptive" } },
  { name: "inline-adaptive-nice", fields: { ioEngine: "cpool", ioInline: "cached", ioSubmitMode: "adaptive", ioThreadNice: 10 } },
  { name: "inline-batch-spin20", fields: { ioEngine: "cpool", ioInline: "cached", ioSubmitMode: "batch", ioSpinUs: 20 } },
  { name: "inline-batch-spin50", fields: { ioEngine: "cpool", ioInline: "cached", ioSubmitMode: "batch", ioSpinUs: 50 } },
  { name: "inline-batch4", fields: { ioEngine: "cpool", ioInline: "cached", ioSubmitMode: "batch", ioJobsPerWake: 4 } },
  { name: "zero-copy", fields: { ioEngine: "cpool", zeroCopy: true } },
  { name: "copy", fields: { ioEngine: "cpool", zeroCopy: false } },
  { name: "inline-direct", fields: { ioEngine: "cpool", ioInline: "cached", ioSubmitMode: "direct" } },
  { name: "pool-direct", fields: { ioEngine: "cpool", ioInline: "off", ioSubmitMode: "direct" } },
  { name: "sync", fields: { ioEngine: "sync" } },
  { name: "bun", fields: { ioEngine: "bun" } },
  // Small bodies as files or as records of append-only volumes (issue 27; the default).
  { name: "files", fields: { ioEngine: "cpool", volumes: false } },
  { name: "volumes", fields: { ioEngine: "cpool", volumes: true } },
  // Bun's allocator with its own purge delay (10 ms), as a bare `bun src/main.ts serve` runs it,
  // against fsgw's 10 s (src/util/allocator.ts; every other variant has it).
  { name: "allocator-eager", fields: { ioEngine: "cpool" }, env: { MIMALLOC_PURGE_DELAY: "" } },
  // The protocol's floor on Bun: bench and upload exchanges, each body hashed, nothing stored
  // (scripts/lib/upload-floor-server.ts); the upload rows only.
  { name: "floor", fields: {}, entry: { script: "scripts/lib/upload-floor-server.ts", serveArg: false } },
];
const before = option("--before", "");
if (before !== "") {
  allVariants.push({ name: "before", fields: { ioEngine: "cpool" }, projectRoot: resolve(before) });
  allVariants.push({ name: "before-bun", fields: { ioEngine: "bun" }, projectRoot: resolve(before) });
  allVariants.push({ name: "before-volumes", fields: { ioEngine: "cpool", volumes: true }, projectRoot: resolve(before) });
}
const variantNames = option("--variants", "inline-adaptive,inline-batch,inline-direct,pool-direct" + (before ? ",before" : "")).split(",");
const variants = variantNames.map((n) => allVariants.find((v) => v.name === n) ?? fail(`unknown variant ${n}`));
const only = option("--only", "");
const selected = rows.filter((r) => (only ? only.split(",").includes(r.name) : !r.big || args.includes("--big")));

function fail(message: string): never {
  console.error(message);
  process.exit(2);
}

const runDir = join(root, ".bench", "exchanges-" + new Date().toISOString().replace(/[:.]/g, "-"));
mkdirSync(runDir, { recursive: true });
let dirSeq = 0;
const freshDir = (label: string) => join(runDir, `${String(++dirSeq).padStart(3, "0")}-${label.replace(/\//g, "_")}`);
const perf = ["/usr/bin/perf", "/usr/local/bin/perf"].find(existsSync);

function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

/** Voluntary + involuntary context switches of every thread of the process. */
function switches(pid: number): number {
  let n = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      for (const m of readFileSync(`/proc/${pid}/task/${t}/status`, "utf8").matchAll(/ctxt_switches:\s+(\d+)/g)) n += Number(m[1]);
    } catch {}
  }
  return n;
}

/** Counts the process's system calls from now until the returned function is called. */
function countSyscalls(pid: number): () => Promise<number> {
  if (perf === undefined) return async () => NaN;
  const out = join(runDir, `perf-${pid}.csv`);
  const p = Bun.spawn([perf, "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p", String(pid), "-o", out], { stdout: "ignore", stderr: "ignore" });
  return async () => {
    p.kill("SIGINT");
    await p.exited;
    const m = /^(\d+),/m.exec(readFileSync(out, "utf8"));
    return m ? Number(m[1]) : NaN;
  };
}

interface Measure {  opsPerSec: number;
  cpuUs: number;
  switches: number;
  syscalls: number;
}

async function measure(server: TestServer, op: LoadOp, count: number, size: number, keyPrefix: string, connections: number, writeChunk = 0): Promise<Measure> {
  const c0 = cpuMs(server.pid);
  const s0 = switches(server.pid);
  const stopPerf = countSyscalls(server.pid);
  await Bun.sleep(50); // perf attaches
  const r = await runLoad({ host: "127.0.0.1", port: server.port, op, connections, count, size, keyPrefix, writeChunk });
  const cpu = cpuMs(server.pid) - c0;
  const sw = switches(server.pid) - s0;
  const sys = await stopPerf();
  const answered = r.ok + (r.errors["no such key"] ?? 0);
  if (answered !== count) fail(`${op} ${keyPrefix}: ${r.ok}/${count} ok, errors ${JSON.stringify(r.errors)}`);
  return { opsPerSec: r.opsPerSec, cpuUs: (cpu * 1000) / count, switches: sw / count, syscalls: sys / count };
}

async function fill(server: TestServer, count: number, size: number, prefix: string): Promise<void> {
  await runLoad({ host: "127.0.0.1", port: server.port, op: "upload", connections: 100, count, size, keyPrefix: prefix });
}

/** The kernel's own CPU per operation for the same file work (scripts/kernel-floor.c). */
function kernelFloor(label: string, unlink: boolean): string {
  const bin = join(runDir, "kernel-floor");
  if (!existsSync(bin)) {
    const cc = Bun.spawnSync(["gcc", "-O2", "-o", bin, join(root, "scripts/kernel-floor.c")], { stderr: "pipe" });
    if (cc.exitCode !== 0) return `kernel-floor not built: ${cc.stderr.toString().trim()}`;
  }
  const r = Bun.spawnSync([bin, freshDir(`floor-${label}`), "10000", String(5 * KiB), ...(unlink ? [] : ["keep"])], { stdout: "pipe", stderr: "pipe" });
  return (r.stdout.toString() + r.stderr.toString()).trim();
}
const floors: string[] = [`${"before rows".padEnd(12)} ${kernelFloor("first", false)}`];
console.log(floors[0]);

interface Result {
  row: string;
  variant: string;
  round: number;
  bench: Measure;
  m: Measure;
}
const results: Result[] = [];

// Files that read rows read: one prepared set per variant checkout, the same keys for all.
const readDirs = new Map<string, string>();
async function readDir(v: Variant, size: number): Promise<string> {
  // The variant's own setting, or (undefined) its checkout's default.
  const volumes = v.fields.volumes as boolean | undefined;
  const id = `${v.projectRoot ?? root}:${size}:${volumes}`;
  let dir = readDirs.get(id);
  if (dir === undefined) {
    dir = freshDir(`read-set-${size}${volumes === undefined ? "" : volumes ? "-volumes" : "-files"}`);
    const s = await startServer({ dataDir: dir, ...(volumes === undefined ? {} : { volumes }) }, {}, [], v.projectRoot);
    await fill(s, READ_SET, size, "r_");
    await s.stop();
    Bun.spawnSync(["sync"]);
    readDirs.set(id, dir);
  }
  return dir;
}

for (const row of selected) {
  for (let round = 1; round <= rounds; round++) {
    for (const v of variants) {
      if (v.entry !== undefined && row.op !== "upload") continue;
      const creates = row.op === "upload" || row.op === "delete";
      const dataDir = creates ? freshDir(`${row.name}-${v.name}`) : await readDir(v, row.size);
      const server = await startServer({ ...v.fields, dataDir, idleTimeoutMs: 600_000 }, v.env ?? {}, [], v.projectRoot, v.entry);
      const connections = row.connections ?? CONNECTIONS;
      // Warm-up (JIT), untimed: bench exchanges, then the row's own exchange on other keys.
      await runLoad({ host: "127.0.0.1", port: server.port, op: "bench", connections: CONNECTIONS, count: 20_000, size: 0 });
      let prefix = "r_";
      if (row.op === "upload") {
        await runLoad({ host: "127.0.0.1", port: server.port, op: "upload", connections, count: Math.min(2000, Math.max(connections, Math.floor((256 * MiB) / row.size))), size: row.size, keyPrefix: "warm_", writeChunk: row.writeChunk });
        prefix = "bench_mark_file_";
      } else if (row.op === "delete") {
        await fill(server, row.count, row.size, "d_");
        Bun.spawnSync(["sync"]);
        prefix = "d_";
      } else {
        await runLoad({ host: "127.0.0.1", port: server.port, op: row.op, connections, count: 5000, size: row.size, keyPrefix: "r_" });
        // A fresh server on the same files: the page cache and dentries stay warm, as in production.
        if (row.miss) prefix = `miss_${round}_${v.name}_`;
      }
      const bench = await measure(server, "bench", BENCH_COUNT, 0, "b_", CONNECTIONS);
      const m = await measure(server, row.op, row.count, row.size, prefix, connections, row.writeChunk);
      await server.stop();
      Bun.spawnSync(["sync"]);
      results.push({ row: row.name, variant: v.name, round, bench, m });
      console.log(
        `${row.name.padEnd(16)} r${round} ${v.name.padEnd(14)} ${m.opsPerSec.toFixed(0).padStart(7)} ops/s  CPU ${m.cpuUs.toFixed(1).padStart(7)} us/op  ` +
          `excess ${(m.cpuUs - bench.cpuUs).toFixed(1).padStart(7)}  (bench ${bench.cpuUs.toFixed(1)} us, ${bench.opsPerSec.toFixed(0)} ops/s)  ` +
          `switches ${m.switches.toFixed(2)}/op  syscalls ${m.syscalls.toFixed(1)}/op (bench ${bench.syscalls.toFixed(1)})`,
      );
    }
  }
}

// Summary: per row and variant, the median over rounds.
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const lines = [
  `| exchange | variant | ops/s | server CPU µs/exchange | excess over bench µs | bench µs | CPU ÷ bench | ops/s ÷ bench | context switches/exchange | syscalls/exchange |`,
  `|---|---|---|---|---|---|---|---|---|---|`,
];
for (const row of selected) {
  for (const v of variants) {
    const rs = results.filter((r) => r.row === row.name && r.variant === v.name);
    if (rs.length === 0) continue;
    const f = (g: (r: Result) => number, d = 1) => median(rs.map(g)).toFixed(d);
    lines.push(`| ${row.name} | ${v.name} | ${f((r) => r.m.opsPerSec, 0)} | ${f((r) => r.m.cpuUs)} | ${f((r) => r.m.cpuUs - r.bench.cpuUs)} | ${f((r) => r.bench.cpuUs)} | ${f((r) => r.m.cpuUs / r.bench.cpuUs, 2)} | ${f((r) => r.m.opsPerSec / r.bench.opsPerSec, 2)} | ${f((r) => r.m.switches, 2)} | ${f((r) => r.m.syscalls)} |`);
  }
}
// Last, because it unlinks files (creates right after deletions are slower for minutes).
floors.push(`${"after rows".padEnd(12)} ${kernelFloor("last", true)}`);
console.log(floors[1]);
const table = lines.join("\n") + "\n\n" + floors.join("\n");
console.log("\nmedians over " + rounds + " rounds:\n" + table);
writeFileSync(join(runDir, "summary.md"), table + "\n");
