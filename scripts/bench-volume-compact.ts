// Compaction under load (issue 27: compacting a 1 GiB volume at 50% live raises the load's p99
// latency by at most 2x). Prepares a data directory whose first volume holds two sets of 5 KiB
// bodies, one deleted (so half of it is dead), then alternates, on copies of it, a server that does
// not compact (A) and one that compacts that volume at the start of the load (B), under the same
// download load on the live set: p50, p99 and max latency of each, and how long B's compaction took.
//
//   bun scripts/bench-volume-compact.ts [--keys 100000] [--rounds 2] [--rate-mib 64]
//
// --keys: bodies per set (100,000 x 5 KiB x 2 sets: a volume of ~1 GiB). Data stays under .bench/.
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { runLoad } from "../src/client/load";
import { setStartTimeout, startServer } from "./lib/server-process";
import { option } from "./lib/options";

const root = resolve(import.meta.dir, "..");
const keys = Number(option("--keys", "100000"));
const rounds = Number(option("--rounds", "2"));
const rateMiB = Number(option("--rate-mib", "64"));
const SIZE = 5 * 1024;
const runDir = join(root, ".bench", "volume-compact-" + new Date().toISOString().replace(/[:.]/g, "-"));
const seed = join(runDir, "seed");
mkdirSync(runDir, { recursive: true, mode: 0o700 });
setStartTimeout(120_000);

const VOLUMES = { volumes: true, volumeFileBytesMax: 4 * 1024 * 1024 * 1024, volumeCompactLivePercent: 0 };
{
  const s = await startServer({ ...VOLUMES, dataDir: seed });
  const t0 = performance.now();
  for (const prefix of ["dead_", "live_"]) {
    const r = await runLoad({ host: "127.0.0.1", port: s.port, op: "upload", connections: 100, count: keys, size: SIZE, keyPrefix: prefix });
    if (r.ok !== keys) throw new Error(`filling ${prefix}: ${JSON.stringify(r.errors)}`);
  }
  const d = await runLoad({ host: "127.0.0.1", port: s.port, op: "delete", connections: 100, count: keys, size: SIZE, keyPrefix: "dead_" });
  if (d.ok !== keys) throw new Error(`deleting: ${JSON.stringify(d.errors)}`);
  await s.stop();
  Bun.spawnSync(["sync"]);
  console.log(`prepared ${2 * keys} bodies of 5 KiB, ${keys} deleted, in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${seed}`);
}

interface Run {
  variant: string;
  p50: number;
  p99: number;
  max: number;
  opsPerSec: number;
  compactMs: number | null;
}
const runs: Run[] = [];
let copy = 0;
for (let round = 1; round <= rounds; round++) {
  for (const compact of [false, true]) {
    // A copy per run (a compaction changes its directory); none is removed between timed runs.
    const dataDir = join(runDir, `run-${++copy}`);
    Bun.spawnSync(["cp", "-a", seed, dataDir]);
    Bun.spawnSync(["sync"]);
    const server = await startServer({ ...VOLUMES, dataDir, volumeCompactLivePercent: compact ? 60 : 0, volumeCompactCheckMs: 1000, volumeCompactBytesPerSecond: rateMiB * 1024 * 1024 });
    // Warm: the live set once (the page cache holds it, as it would on a serving machine).
    await runLoad({ host: "127.0.0.1", port: server.port, op: "download", connections: 100, count: keys, size: SIZE, keyPrefix: "live_", keys });
    const r = await runLoad({ host: "127.0.0.1", port: server.port, op: "download", connections: 100, count: 6 * keys, size: SIZE, keyPrefix: "live_", keys });
    let compactMs: number | null = null;
    if (compact) {
      const line = await server.line("event=volume_compacted", 600_000);
      compactMs = Number(/ ms=(\d+)/.exec(line)![1]);
    }
    await server.stop();
    if (r.ok !== 6 * keys) throw new Error(`load: ${JSON.stringify(r.errors)}`);
    const l = r.latencyMs!;
    const run = { variant: compact ? "compacting" : "idle", p50: l.p50, p99: l.p99, max: l.max, opsPerSec: r.opsPerSec, compactMs };
    runs.push(run);
    console.log(`round ${round} ${run.variant.padEnd(10)} ${r.opsPerSec.toFixed(0)} downloads/s  p50 ${l.p50} ms  p99 ${l.p99} ms  max ${l.max} ms  load ${r.ms.toFixed(0)} ms${compactMs === null ? "" : `  compaction ${compactMs} ms`}`);
  }
}
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const idle = runs.filter((r) => r.variant === "idle");
const busy = runs.filter((r) => r.variant === "compacting");
console.log(`\nmedians over ${rounds} rounds: p99 idle ${median(idle.map((r) => r.p99))} ms, compacting ${median(busy.map((r) => r.p99))} ms (x${(median(busy.map((r) => r.p99)) / median(idle.map((r) => r.p99))).toFixed(2)}); downloads/s ${median(idle.map((r) => r.opsPerSec)).toFixed(0)} vs ${median(busy.map((r) => r.opsPerSec)).toFixed(0)}`);
