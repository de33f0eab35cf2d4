// What starting a server costs: CPU (every thread of the process, until it listens and settles)
// and wall time from spawn to listening, over repeated starts, with the default configuration
// unless told otherwise. Every test and every restart pays it, once per process and once per loop.
//
//   bun scripts/bench-startup.ts [--rounds 10] [--loops N] [--io-engine cpool] [--before ../fsgw-before]
//
// --before: another checkout of fsgw (the code before a change): its server starts alternately
// with this checkout's in every round (A B A B), and a ratio row compares the medians.
import { resolve } from "node:path";
import { cpuMsOf } from "./lib/cpu";
import { option } from "./lib/options";
import { startServer } from "./lib/server-process";

/** After "listening", how long the threads are given to finish what starting began (JIT, pools). */
const SETTLE_MS = 200;

const rounds = Number(option("--rounds", "10"));
const loops = option("--loops", "");
const ioEngine = option("--io-engine", "");
const before = option("--before", "");
const root = resolve(import.meta.dir, "..");
const checkouts: [string, string][] = [["this", root]];
if (before !== "") checkouts.push(["before", resolve(before)]);

const fields: Record<string, string> = {};
if (loops !== "") fields.loops = loops;
if (ioEngine !== "") fields.ioEngine = ioEngine;

const samples = new Map<string, { cpu: number[]; wall: number[] }>(checkouts.map(([name]) => [name, { cpu: [], wall: [] }]));
for (let round = 0; round < rounds; round++) {
  for (const [name, dir] of round % 2 === 0 ? checkouts : [...checkouts].reverse()) {
    const started = performance.now();
    const server = await startServer(fields, {}, [], dir);
    const wall = performance.now() - started;
    await Bun.sleep(SETTLE_MS);
    samples.get(name)!.cpu.push(cpuMsOf(server.pid));
    samples.get(name)!.wall.push(wall);
    await server.stop();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`server start-up, medians of ${rounds} starts (${loops === "" ? "default loops" : `loops ${loops}`}${ioEngine === "" ? "" : `, ${ioEngine}`}): CPU of every thread until listening + ${SETTLE_MS} ms; wall from spawn to listening\n`);
console.log("| checkout | CPU ms | wall ms |");
console.log("|---|---|---|");
for (const [name] of checkouts) console.log(`| ${name} | ${median(samples.get(name)!.cpu).toFixed(0)} | ${median(samples.get(name)!.wall).toFixed(0)} |`);
if (before !== "") {
  const ratio = (k: "cpu" | "wall") => (median(samples.get("this")![k]) / median(samples.get("before")![k])).toFixed(2);
  console.log(`| this ÷ before | ${ratio("cpu")} | ${ratio("wall")} |`);
}
