// Listing at a million keys (issue 24), on the file store:
//   - start-up: process start to the index ready (its own "ms") and to listening;
//   - the index's memory per key, beyond the key's own bytes;
//   - the first page of 1000 under a prefix: wall time of the exchange and the server's CPU for it;
//   - a full listing, page after page: keys per second, and server CPU per 1000 keys;
//   - what the index costs an upload or a delete: its add and remove, timed in this process over
//     an index of the same keys (the FFI call included).
//
//   bun scripts/bench-list.ts [--keys 1000000] [--dir /tmp/fsgw-bench-list] [--rounds 3] [--volumes false]
//                             [--ordered false]
//
// --volumes true: the keys are records of volumes (issue 27; the server's default now), whose
// digests a listing reads from their headers; the index's memory is then bench-volume-start's to
// measure (its load at start counts files only), and is not printed.
//
// The data directory is filled once (1 KiB files through fsgw's own uploads, 64 connections) and
// kept for later runs: deleting a million files slows this disk's creates for minutes.
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect } from "../src/client/client";
import { uploadExchange } from "../src/client/exchanges";
import { WireConn } from "../src/client/wire-conn";
import { NativeIndex } from "../src/ffi/pool-binding";
import { cpuMsOf } from "./lib/cpu";
import { option } from "./lib/options";
import { startServer, tempDir } from "./lib/server-process";

const KEYS = Number(option("--keys", "1000000"));
const DIR = option("--dir", "/tmp/fsgw-bench-list");
const ROUNDS = Number(option("--rounds", "3"));
const VOLUMES = option("--volumes", "false") === "true";
const ORDERED = option("--ordered", "false") === "true";
const PREFIXES = 1000;
const variant = `${KEYS}${VOLUMES ? "-volumes" : ""}${ORDERED ? "-ordered" : ""}`;
const dataDir = join(DIR, `data-${variant}`);
const populated = join(DIR, `populated-${variant}`);

/**
 * Key i: one of PREFIXES "directories" of KEYS / PREFIXES files each; uploaded in the order of i,
 * so a directory's keys are spread over the whole upload, or with --ordered, uploaded one after
 * another (as a tool that copies a sorted tree does: its records lie side by side in a volume).
 */
const perPrefix = Math.max(1, Math.floor(KEYS / PREFIXES));
const keyOf = (i: number) => `p${String(ORDERED ? Math.min(PREFIXES - 1, Math.floor(i / perPrefix)) : i % PREFIXES).padStart(3, "0")}/f${String(i).padStart(7, "0")}`;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function populate(): Promise<void> {
  if (existsSync(populated)) return;
  mkdirSync(DIR, { recursive: true });
  const server = await startServer({ dataDir, volumes: VOLUMES });
  const body = new Uint8Array(1024).fill(7);
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
      for (let i = next++; i < KEYS; i = next++) {
        await uploadExchange(conn, keyOf(i), body.length, (c) => c.write(body));
        if (i % 100_000 === 0) console.log(`populating: ${i} keys, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
      }
      conn.close();
    }),
  );
  await server.stop();
  writeFileSync(populated, `${KEYS}\n`);
}

interface Round {
  indexMs: number;
  startMs: number;
  bytesPerKey: number;
  pageMs: number;
  pageCpuMs: number;
  keysPerSec: number;
  cpuMsPer1000: number;
}

async function round(): Promise<Round> {
  const t0 = performance.now();
  const server = await startServer({ dataDir, volumes: VOLUMES });
  const startMs = performance.now() - t0;
  const ready = server.lines.find((l) => l.includes("event=index_ready"))!;
  const keys = Number(/keys=(\d+)/.exec(ready)![1]);
  const indexMs = Number(/ms=(\d+)/.exec(ready)![1]);
  const bytes = Number(/bytes=(\d+)/.exec(ready)![1]);
  if (!VOLUMES && keys !== KEYS) throw new Error(`the index holds ${keys} keys, not ${KEYS}`);
  const keyBytes = keyOf(0).length;
  const client = connect({ port: server.port });
  // First pages under random prefixes.
  const pageMs: number[] = [];
  const pageCpu: number[] = [];
  for (let i = 0; i < 30; i++) {
    const prefix = keyOf(Math.floor(Math.random() * KEYS)).slice(0, 5);
    const cpu0 = cpuMsOf(server.pid);
    const w0 = performance.now();
    const page = (await client.list({ prefix }).next()).value!;
    pageMs.push(performance.now() - w0);
    pageCpu.push(cpuMsOf(server.pid) - cpu0);
    if (page.entries.length !== Math.min(1000, KEYS / PREFIXES)) throw new Error(`a page of ${page.entries.length}`);
  }
  // The whole listing.
  const cpu0 = cpuMsOf(server.pid);
  const w0 = performance.now();
  let listed = 0;
  for await (const page of client.list({})) listed += page.entries.length;
  const ms = performance.now() - w0;
  const cpuMs = cpuMsOf(server.pid) - cpu0;
  client.close();
  await server.stop();
  if (listed !== KEYS) throw new Error(`listed ${listed} of ${KEYS}`);
  return { indexMs, startMs, bytesPerKey: VOLUMES ? NaN : bytes / keys - keyBytes, pageMs: median(pageMs), pageCpuMs: median(pageCpu), keysPerSec: (listed / ms) * 1000, cpuMsPer1000: (cpuMs / listed) * 1000 };
}

/** add and remove on an index of KEYS keys, in a random order, in this process (µs per call). */
function indexOps(): { addUs: number; removeUs: number } {
  const dir = tempDir("bench-index");
  for (let s = 0; s < 256; s++) mkdirSync(join(dir, s.toString(16).padStart(2, "0")));
  const index = NativeIndex.open(dir, 256, 2);
  const order = Array.from({ length: KEYS }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const keys = order.map(keyOf);
  let t = performance.now();
  const digest = new Uint8Array(32).fill(9);
  const now = Date.now();
  for (const k of keys) index.add(k, 1024, now, digest);
  const addUs = ((performance.now() - t) * 1000) / KEYS;
  const some = keys.slice(0, Math.min(200_000, KEYS));
  t = performance.now();
  for (const k of some) index.remove(k);
  const removeUs = ((performance.now() - t) * 1000) / some.length;
  index.close();
  return { addUs, removeUs };
}

await populate();
const rounds: Round[] = [];
for (let r = 0; r < ROUNDS; r++) {
  rounds.push(await round());
  console.log(`round ${r + 1}: ${JSON.stringify(rounds[r])}`);
}
const ops = indexOps();
const m = (f: (r: Round) => number) => median(rounds.map(f));
console.log(`\nmedians of ${ROUNDS} rounds, ${KEYS} keys of ${keyOf(0).length} bytes (1 KiB ${VOLUMES ? "records of volumes" : "files"}, ${PREFIXES} prefixes):`);
console.log("| measure | value | target |");
console.log("|---|---|---|");
console.log(`| index ready at start | ${m((r) => r.indexMs)} ms (listening after ${m((r) => r.startMs).toFixed(0)} ms) | ≤ 3 s |`);
console.log(`| index memory per key beyond the key | ${m((r) => r.bytesPerKey).toFixed(1)} B | ≤ 64 B |`);
console.log(`| first page of 1000 under a prefix | ${m((r) => r.pageMs).toFixed(1)} ms wall, ${m((r) => r.pageCpuMs).toFixed(1)} ms server CPU | ≤ 20 ms server time |`);
console.log(`| full listing | ${m((r) => r.keysPerSec).toFixed(0)} keys/s, ${m((r) => r.cpuMsPer1000).toFixed(2)} ms server CPU per 1000 | ≥ 200,000 keys/s |`);
console.log(`| index add / remove (FFI call included) | ${ops.addUs.toFixed(2)} / ${ops.removeUs.toFixed(2)} µs | ≤ 2 µs |`);
