// One engine, no network: `concurrency` callers commit `count` files of `size` bytes into `dir`
// (256 shard directories, as the store lays them out) through IoEngine.commitFile. Prints one JSON
// line: files/s, and CPU per file of the JS thread and of the engine's worker threads.
//   bun scripts/lib/engine-load.ts <cpool|cpool-batch|bun|sync> <dir> <count> <size> <concurrency>
import { mkdirSync, readdirSync, readFileSync } from "node:fs";
import { loadConfig } from "../../src/config";
import { createEngine } from "../../src/engine/create-engine";

const [variant, dir, countText, sizeText, concurrencyText] = process.argv.slice(2);
const count = Number(countText);
const size = Number(sizeText);
const concurrency = Number(concurrencyText);
const engineName = variant === "cpool-batch" ? "cpool" : variant!;
const engine = createEngine(loadConfig({ argv: ["--io-engine", engineName, "--io-submit-mode", variant === "cpool-batch" ? "batch" : "direct"], env: {} }));

/** CPU ms per thread group of this process (threads named like "fsgw-io-3" group as "fsgw-io"). */
function threadCpuMs(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const tid of readdirSync("/proc/self/task")) {
    try {
      const st = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
      const name = st.slice(st.indexOf("(") + 1, st.lastIndexOf(")")).replace(/[- ]?\d+$/, "");
      const f = st.split(") ")[1]!.split(" ");
      out[name] = (out[name] ?? 0) + (Number(f[11]) + Number(f[12])) * 10;
    } catch {}
  }
  return out;
}

mkdirSync(dir!, { recursive: true });
for (let s = 0; s < 256; s++) mkdirSync(`${dir}/${s.toString(16).padStart(2, "0")}`, { recursive: true });
const body = new Uint8Array(size).fill(0x5a);
let next = 0;
async function caller(): Promise<void> {
  while (next < count) {
    const i = next++;
    const shard = `${dir}/${(i % 256).toString(16).padStart(2, "0")}`;
    await engine.commitFile(`${shard}/.fsgw-tmp\\${i}`, `${shard}/bench_mark_file_${i}`, body, false);
  }
}
const before = threadCpuMs();
const t0 = performance.now();
await Promise.all(Array.from({ length: concurrency }, caller));
const ms = performance.now() - t0;
const after = threadCpuMs();
const perFileUs: Record<string, number> = {};
for (const k in after) {
  const d = after[k]! - (before[k] ?? 0);
  if (d > 0) perFileUs[k] = Math.round((d * 1000) / count);
}
await engine.shutdown();
console.log(JSON.stringify({ variant, filesPerSec: Math.round((count * 1000) / ms), ms: Math.round(ms), perFileUs }));
process.exit(0);
