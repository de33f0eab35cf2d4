// What digests cost: uploads of 64 MiB (x8 over 4 connections) and 1 MiB (x50 over 10) against
// this checkout, which hashes every body (SHA-256) and records it with the file, and against a
// checkout from before digests (--before, a commit or a directory), alternated round by round.
// Printed per round: ops/s, MiB/s, server CPU per upload (every thread's schedstat run time), and
// beside them the kernel's own ceiling for the same files (../shared/tools/fs-ceiling: create,
// write, close, rename; no network, no runtime), measured in the same round.
//
//   bun scripts/bench-digests.ts --before ee9a57c [--rounds 4] [--zero-copy false]
//
// Data stays under .bench/ (nothing is deleted between runs: see BENCHMARKS.md on this disk).
import { existsSync, mkdirSync, symlinkSync } from "node:fs";
import { join, resolve } from "node:path";
import { runLoad } from "../src/client/load";
import { option, MiB } from "./lib/options";
import { cpuMsOf } from "./lib/cpu";
import { startServer } from "./lib/server-process";

const root = resolve(import.meta.dir, "..");
const rounds = Number(option("--rounds", "4"));
const before = option("--before", "");
const zeroCopy = option("--zero-copy", "true") === "true";
if (before === "") {
  console.error("bench-digests: --before <commit or directory> is required (the code without digests)");
  process.exit(2);
}
const runDir = join(root, ".bench", "digests-" + new Date().toISOString().replace(/[:.]/g, "-"));
mkdirSync(runDir, { recursive: true });

/** A checkout of `before`: the directory itself, or a git worktree of the commit sharing node_modules. */
function checkout(ref: string): string {
  if (existsSync(ref)) return resolve(ref);
  const dir = join(runDir, "before");
  const r = Bun.spawnSync(["git", "worktree", "add", "--detach", dir, ref], { cwd: root, stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`git worktree add ${ref}: ${r.stderr.toString()}`);
  symlinkSync(join(root, "node_modules"), join(dir, "node_modules"));
  return dir;
}
const beforeRoot = checkout(before);


const rows = [
  { name: "upload-64m", size: 64 * MiB, count: 8, connections: 4 },
  { name: "upload-1m", size: MiB, count: 50, connections: 10 },
];
const contestants = [
  { name: "digests", projectRoot: root },
  { name: "before", projectRoot: beforeRoot },
];

function ceiling(size: number, count: number, label: string): number {
  const tool = resolve(root, "../shared/tools/fs-ceiling");
  if (!existsSync(tool)) return NaN;
  const r = Bun.spawnSync([tool, join(runDir, `ceiling-${label}`), String(count), String(size), "8", "256", String(256 * 1024)], { stdout: "pipe", stderr: "pipe" });
  return Number(/([\d.]+) files\/s/.exec(r.stdout.toString())?.[1] ?? NaN);
}

const results = new Map<string, { cpuUs: number; opsPerSec: number; mibPerSec: number }[]>();
for (let round = 1; round <= rounds; round++) {
  for (const row of rows) {
    const order = round % 2 === 1 ? contestants : [...contestants].reverse();
    for (const c of order) {
      Bun.spawnSync(["sync"]);
      const server = await startServer({ dataDir: join(runDir, `${c.name}-${row.name}-r${round}`, "d"), zeroCopy }, {}, [], c.projectRoot);
      try {
        const c0 = cpuMsOf(server.pid);
        const r = await runLoad({ host: "127.0.0.1", port: server.port, op: "upload", connections: row.connections, count: row.count, size: row.size, keyPrefix: `r${round}_` });
        const cpu = cpuMsOf(server.pid) - c0;
        const m = { cpuUs: (cpu * 1000) / Math.max(1, r.ok), opsPerSec: r.opsPerSec, mibPerSec: r.mibPerSec ?? 0 };
        const k = `${row.name} ${c.name}`;
        results.set(k, [...(results.get(k) ?? []), m]);
        console.log(`${row.name.padEnd(10)} r${round} ${c.name.padEnd(8)} ${m.opsPerSec.toFixed(1).padStart(7)} ops/s ${m.mibPerSec.toFixed(0).padStart(5)} MiB/s  server CPU ${(m.cpuUs / 1000).toFixed(1).padStart(7)} ms/upload${r.ok < row.count ? `  errors ${JSON.stringify(r.errors)}` : ""}`);
      } finally {
        await server.stop();
      }
    }
    Bun.spawnSync(["sync"]);
    const fc = ceiling(row.size, row.count, `${row.name}-r${round}`);
    results.set(`${row.name} fs-ceiling`, [...(results.get(`${row.name} fs-ceiling`) ?? []), { cpuUs: NaN, opsPerSec: fc, mibPerSec: (fc * row.size) / MiB }]);
    console.log(`${row.name.padEnd(10)} r${round} fs-ceiling ${fc.toFixed(1).padStart(5)} files/s`);
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
console.log(`\nmedians of ${rounds} rounds (zeroCopy ${zeroCopy})\n`);
console.log("| upload | digests: ops/s | before: ops/s | digests ÷ before (ops/s) | digests: server CPU ms/upload | before | digests ÷ before (CPU) | fs-ceiling files/s |");
console.log("|---|---|---|---|---|---|---|---|");
for (const row of rows) {
  const d = results.get(`${row.name} digests`)!;
  const b = results.get(`${row.name} before`)!;
  const f = results.get(`${row.name} fs-ceiling`)!;
  const dOps = median(d.map((x) => x.opsPerSec));
  const bOps = median(b.map((x) => x.opsPerSec));
  const dCpu = median(d.map((x) => x.cpuUs)) / 1000;
  const bCpu = median(b.map((x) => x.cpuUs)) / 1000;
  console.log(`| ${row.name} | ${dOps.toFixed(1)} | ${bOps.toFixed(1)} | ${(dOps / bOps).toFixed(2)} | ${dCpu.toFixed(1)} | ${bCpu.toFixed(1)} | ${(dCpu / bCpu).toFixed(2)} | ${median(f.map((x) => x.opsPerSec)).toFixed(1)} |`);
}
