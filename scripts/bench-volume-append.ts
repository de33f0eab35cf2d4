// What storing a small body costs the process itself, with no network (issue 27: "its own CPU per
// record <= 0.25x fs-ceiling's CPU per file"): the file store in this process, on the C pool, takes
// `--count` bodies of `--size` bytes through putWhole from 500 callers at once, as files (A) and as
// volume records (B), alternated A B A B, each in a data directory of its own; CPU of every thread
// of the process per body, less the SHA-256 of the body (which both pay, measured alone in the same
// run), beside scripts/kernel-floor.c's commit (create, write, close, rename: the kernel alone).
//
//   bun scripts/bench-volume-append.ts [--count 50000] [--size 5120] [--rounds 2] [--only files|volumes]
//
// It runs with the allocator setting a server gets from `npm start` (scripts/lib/as-the-server-runs.ts).
import { mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { loadConfig } from "../src/config";
import { createCPool } from "../src/engine/create-engine";
import { NativeIndex, NativeSha256 } from "../src/ffi/pool-binding";
import { Logger } from "../src/log";
import { FileStore } from "../src/storage/file-store";
import { checkKey, type StoreKey } from "../src/storage/keys";
import type { StoreTarget } from "../src/storage/store";
import { VolumeCounters, recoverVolumes } from "../src/storage/volumes";
import { asTheServerRuns } from "./lib/as-the-server-runs";
import { option } from "./lib/options";

asTheServerRuns();
const root = resolve(import.meta.dir, "..");
const count = Number(option("--count", "50000"));
const size = Number(option("--size", "5120"));
const rounds = Number(option("--rounds", "2"));
const only = option("--only", "");
const CALLERS = 500;
const runDir = join(root, ".bench", "volume-append-" + new Date().toISOString().replace(/[:.]/g, "-"));
mkdirSync(runDir, { recursive: true, mode: 0o700 });

const config = loadConfig({ argv: [], env: {} });
const engine = createCPool(config);
const log = new Logger("warn", (line) => console.error(line));

function cpuMs(): number {
  const f = readFileSync("/proc/self/stat", "utf8").split(") ")[1]!.split(" ");
  return (Number(f[11]) + Number(f[12])) * 10;
}

function storeIn(dataDir: string, volumes: boolean): FileStore {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  for (let s = 0; s < 256; s++) mkdirSync(join(dataDir, s.toString(16).padStart(2, "0")), { recursive: true, mode: 0o700 });
  const index = NativeIndex.open(dataDir, 256, 2);
  index.load(8);
  let counters: VolumeCounters | null = null;
  if (volumes) {
    const found = recoverVolumes(dataDir, index, log, { dirMode: 0o700, fileMode: 0o600, pathOf: () => "" });
    counters = VolumeCounters.create(found.nextSeq, found.nextVolume);
  }
  const store = new FileStore(engine, {
    dataDir,
    shards: 256,
    resumable: null,
    fsyncOnCommit: false,
    fileMode: 0o600,
    dirMode: 0o700,
    ioChunkBytes: config.ioChunkBytes,
    uploadWritesInFlightMax: 2,
    index,
    volumes:
      counters === null
        ? null
        : { counters, bodyBytesMax: 65536, fileBytesMax: config.volumeFileBytesMax, batchBytesMax: config.volumeBatchBytesMax, fsync: false, fileMode: 0o600, loop: 0, filesOpenMax: 64, compact: null },
  });
  store.init(log);
  return store;
}

/** putWhole `count` bodies from CALLERS callers at once; CPU ms of the whole process. */
async function run(store: FileStore, label: string): Promise<number> {
  const body = new Uint8Array(size).fill(0x5a);
  const keys: StoreKey[] = Array.from({ length: count }, (_, i) => checkKey(`${label}_${i}`) as StoreKey);
  let next = 0;
  const c0 = cpuMs();
  await Promise.all(
    Array.from({ length: CALLERS }, async () => {
      while (next < count) {
        const key = keys[next++]!;
        await new Promise<void>((resolve, reject) => {
          const target: StoreTarget = { onStoreDone: () => resolve(), onStoreFailed: (_f, cause) => reject(new Error(cause.text)), onStoreBug: reject };
          store.putWhole(key, body, target);
        });
      }
    }),
  );
  return cpuMs() - c0;
}

/** The SHA-256 of `count` bodies alone, as putWhole computes it. */
function hashMs(): number {
  const body = new Uint8Array(size).fill(0x5a);
  const c0 = cpuMs();
  for (let i = 0; i < count; i++) {
    const h = new NativeSha256();
    h.update(body);
    h.digest();
  }
  return cpuMs() - c0;
}

function kernelFloor(label: string): string {
  const bin = join(runDir, "kernel-floor");
  const cc = Bun.spawnSync(["gcc", "-O2", "-o", bin, join(root, "scripts/kernel-floor.c")], { stderr: "pipe" });
  if (cc.exitCode !== 0) return `kernel-floor not built: ${cc.stderr.toString().trim()}`;
  const r = Bun.spawnSync([bin, join(runDir, `floor-${label}`), String(Math.min(count, 20000)), String(size), "keep"], { stdout: "pipe", stderr: "pipe" });
  return (r.stdout.toString() + r.stderr.toString()).trim();
}

console.log(kernelFloor("first"));
const lines: string[] = [];
for (let round = 1; round <= rounds; round++) {
  for (const volumes of [false, true]) {
    if (only !== "" && only !== (volumes ? "volumes" : "files")) continue;
    const label = `${volumes ? "volume" : "file"}-${round}`;
    const store = storeIn(join(runDir, label), volumes);
    const ms = await run(store, label);
    store.close();
    Bun.spawnSync(["sync"]);
    const hash = hashMs();
    const line = `round ${round} ${volumes ? "volume records" : "files"}: ${((ms * 1000) / count).toFixed(1)} us CPU per body (all threads), of which SHA-256 ${((hash * 1000) / count).toFixed(1)}; storing itself ${(((ms - hash) * 1000) / count).toFixed(1)} us`;
    console.log(line);
    lines.push(line);
  }
}
console.log(kernelFloor("last"));
await engine.shutdown();
