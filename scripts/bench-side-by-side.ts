// Two checkouts of fsgw served at once, measured in short turns (A B, then B A, ...): server CPU per
// exchange beyond a bench round trip measured just before it on the same server. Both servers live
// through the whole run, so that the machine's drift (which moves bench-exchanges' per-round figures
// by ±30% on this VM) falls on both alike, and each turn is one pair.
//
//   bun scripts/bench-side-by-side.ts --a /tmp/wt-before --b . [--rounds 12] [--ops upload,overwrite,delete] [--count 20000]
//
// upload: new keys of 5 KiB (a prefix per round); overwrite: the same keys again; delete: them.
// Prints, per op, each turn's excess on A and B, their medians, and the median of B - A per turn.
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { runLoad, type LoadOp } from "../src/client/load";
import { cpuMsOf } from "./lib/cpu";
import { startServer, type TestServer } from "./lib/server-process";
import { option } from "./lib/options";

const root = resolve(import.meta.dir, "..");
const checkouts = { A: resolve(option("--a", root)), B: resolve(option("--b", root)) };
const rounds = Number(option("--rounds", "12"));
const ops = option("--ops", "upload").split(",");
const count = Number(option("--count", "20000"));
const CONNECTIONS = 500;
const SIZE = 5 * 1024;
const runDir = join(root, ".bench", "side-by-side-" + new Date().toISOString().replace(/[:.]/g, "-"));
mkdirSync(runDir, { recursive: true });

async function cpuUsPerExchange(server: TestServer, op: LoadOp, keyPrefix: string): Promise<number> {
  const c0 = cpuMsOf(server.pid);
  const r = await runLoad({ host: "127.0.0.1", port: server.port, op, connections: CONNECTIONS, count, size: SIZE, keyPrefix });
  if (r.ok !== count) throw new Error(`${op} ${keyPrefix}: ${r.ok}/${count} ok, errors ${JSON.stringify(r.errors)}`);
  return ((cpuMsOf(server.pid) - c0) * 1000) / count;
}

const servers = {
  A: await startServer({ dataDir: join(runDir, "A"), idleTimeoutMs: 600_000 }, {}, [], checkouts.A),
  B: await startServer({ dataDir: join(runDir, "B"), idleTimeoutMs: 600_000 }, {}, [], checkouts.B),
};
for (const s of Object.values(servers)) await runLoad({ host: "127.0.0.1", port: s.port, op: "bench", connections: CONNECTIONS, count: 20_000, size: 0 }); // JIT
const excess: Record<string, { A: number[]; B: number[] }> = Object.fromEntries(ops.map((op) => [op, { A: [], B: [] }]));
for (let round = 0; round < rounds; round++) {
  for (const side of round % 2 === 0 ? (["A", "B"] as const) : (["B", "A"] as const)) {
    const server = servers[side];
    for (const op of ops) {
      const bench = await cpuUsPerExchange(server, "bench", "b_");
      const load = op === "overwrite" ? "upload" : (op as LoadOp);
      excess[op]![side].push((await cpuUsPerExchange(server, load, `k${round}_`)) - bench);
    }
  }
}
for (const s of Object.values(servers)) await s.stop();

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const fmt = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(" ");
console.log(`A ${checkouts.A}\nB ${checkouts.B}\n${rounds} turns each of ${count} exchanges, 500 connections; µs of server CPU beyond a bench round trip`);
for (const op of ops) {
  const { A, B } = excess[op]!;
  console.log(`${op.padEnd(10)} A median ${median(A).toFixed(1)}  B median ${median(B).toFixed(1)}  B-A per turn median ${median(B.map((b, i) => b - A[i]!)).toFixed(1)}`);
  console.log(`${"".padEnd(10)} A: ${fmt(A)}\n${"".padEnd(10)} B: ${fmt(B)}`);
}
