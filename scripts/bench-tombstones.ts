// What a workload that creates and deletes distinct keys leaves on disk once compaction has done its
// work (issue 27: a tombstone of a key that stays deleted was kept for good, ~100 bytes a key). Each
// round uploads --keys bodies under a prefix of their own and deletes 90% of them, on a server that
// compacts as it goes (volumes of 16 MiB, compacted under 50% live, looked at every 200 ms). Then:
// the volumes as that server left them, and after each of three passes of `fsgw volumes compact
// --live-percent 100`, against the bytes of the bodies still live.
//
// Then the index's set of dead records on its own (--set 4000000 notes over 64 volumes): its
// memory, the longest single note (one of its parts doubling, with the index's lock held), and the
// walk that forgets a removed volume.
//
//   bun scripts/bench-tombstones.ts [--keys 100000] [--rounds 5] [--size 1024] [--set 4000000]
//
// Data stays under .bench/ (never removed here: see BENCHMARKS.md on deleting many files).
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { runLoad } from "../src/client/load";
import { NativeIndex } from "../src/ffi/pool-binding";
import { setStartTimeout, startServer } from "./lib/server-process";
import { option } from "./lib/options";

const root = resolve(import.meta.dir, "..");
const keys = Number(option("--keys", "100000"));
const rounds = Number(option("--rounds", "5"));
const size = Number(option("--size", "1024"));
const setNotes = Number(option("--set", "4000000"));
const dataDir = join(root, ".bench", "tombstones-" + new Date().toISOString().replace(/[:.]/g, "-"));
mkdirSync(dataDir, { recursive: true, mode: 0o700 });
setStartTimeout(120_000);

const server = await startServer({ volumes: true, dataDir, volumeFileBytesMax: 16 * 1024 * 1024, volumeCompactLivePercent: 50, volumeCompactCheckMs: 200, volumeCompactBytesPerSecond: 1024 * 1024 * 1024 });
const load = { host: "127.0.0.1", port: server.port, connections: 50, size };
const kept = Math.floor(keys / 10);
for (let r = 0; r < rounds; r++) {
  const stay = await runLoad({ ...load, op: "upload", count: kept, keyPrefix: `r${r}_kept_` });
  const up = await runLoad({ ...load, op: "upload", count: keys - kept, keyPrefix: `r${r}_` });
  const del = await runLoad({ ...load, op: "delete", count: keys - kept, keyPrefix: `r${r}_` });
  if (stay.ok !== kept || up.ok !== keys - kept || del.ok !== keys - kept) throw new Error(`round ${r}: ${stay.ok + up.ok} uploads, ${del.ok} deletes: ${JSON.stringify({ ...up.errors, ...del.errors })}`);
}
// Settled: no compaction for 3 s (each check is 200 ms apart).
let seen = -1;
for (;;) {
  const n = server.lines.filter((l) => l.includes("event=volume_compacted")).length;
  if (n === seen) break;
  seen = n;
  await Bun.sleep(3000);
}
await server.stop();

interface Stats {
  totals: { volumes: number; bytes: number; liveBytes: number; tombstones: number; bodyRecords: number; keys: number };
}
const fsgw = (...args: string[]) => Bun.spawnSync([process.execPath, join(root, "src/main.ts"), ...args], { stdout: "pipe", stderr: "pipe" }).stdout.toString();
const stats = () => (JSON.parse(fsgw("volumes", "stats", "--data-dir", dataDir, "--json")) as Stats).totals;
const deleted = rounds * (keys - kept);
const show = (what: string, t: Stats["totals"]) =>
  console.log(
    `${what.padEnd(34)} ${t.volumes} volumes, ${(t.bytes / 2 ** 20).toFixed(1)} MiB (live ${(t.liveBytes / 2 ** 20).toFixed(1)} MiB), ${t.keys} keys, ${t.tombstones} tombstones: ${((t.bytes - t.liveBytes) / deleted).toFixed(1)} bytes beyond the live ones per deleted key`,
  );
console.log(`${rounds} rounds of ${keys} uploads of ${size} bytes, ${keys - kept} of each deleted (${deleted} in all), server compactions: ${seen}`);
show("as the compacting server left them", stats());
// Then every volume compacted (a volume of nothing but live bodies is left alone), a few times over:
// what is left beyond the live bodies is what compaction cannot give back.
for (let pass = 1; pass <= 3; pass++) {
  const out = JSON.parse(fsgw("volumes", "compact", "--data-dir", dataDir, "--live-percent", "100", "--json")) as { compacted: string[] };
  show(`volumes compact to 100%, pass ${pass} (${out.compacted.length})`, stats());
}
console.log(`data: ${dataDir}`);

{
  const index = NativeIndex.scratch();
  index.limitDead(setNotes + 1);
  let longest = 0;
  const t0 = performance.now();
  for (let i = 0; i < setNotes; i++) {
    const t = performance.now();
    index.noteDead(`some/key/${i}`, 1 + (i % 64));
    longest = Math.max(longest, performance.now() - t);
  }
  const noted = performance.now() - t0;
  const st = index.deadStats();
  const t1 = performance.now();
  const forgotten = index.forgetDead(7);
  const forgetMs = performance.now() - t1;
  index.close();
  console.log(
    `the set: ${setNotes} notes in ${noted.toFixed(0)} ms (${((noted * 1e6) / setNotes).toFixed(0)} ns each, with the key's encoding and the FFI call), ${st.bodies} held in ${(st.bytes / 2 ** 20).toFixed(1)} MiB; longest note ${longest.toFixed(1)} ms; forgetting one volume's ${forgotten}: ${forgetMs.toFixed(1)} ms over 256 holds of the lock`,
  );
}
