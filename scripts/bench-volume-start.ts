// Start-up with many keys in volumes (issue 27: 10 million 1 KiB keys, start-up <= 10 s, index
// memory <= 48 bytes per key plus the key). Writes the volumes directly (the record format of
// docs/VOLUMES.md, through the C library's encoder, keys in a scrambled order as uploads would
// leave them), syncs, then starts a server with volumes on that data directory and one on an empty
// one, alternated `--rounds` times: the time from process start to listening and to the scan's end
// (event=volumes_ready), the index's own bytes per key, and the server's resident memory beyond the
// empty server's, per key. The first start reads every volume; each clean stop saves a checkpoint,
// which the next start reads instead (docs/VOLUMES.md).
//
//   bun scripts/bench-volume-start.ts [--keys 10000000] [--size 1024] [--rounds 2] [--data DIR]
//   (--data: the data directory of an earlier run, with the same --keys: not written again)
//
// The data stays under .bench/ (move it aside or remove it by hand: deleting gigabytes right before
// another benchmark slows file creation on ext4 without a journal).
import { closeSync, mkdirSync, openSync, readFileSync, readdirSync, writeSync } from "node:fs";
import { join, resolve } from "node:path";
import { VolumeCodec, VolumeKind } from "../src/ffi/pool-binding";
import { setStartTimeout, startServer, type TestServer } from "./lib/server-process";
import { option } from "./lib/options";

const root = resolve(import.meta.dir, "..");
const keys = Number(option("--keys", "10000000"));
const size = Number(option("--size", "1024"));
const rounds = Number(option("--rounds", "2"));
const VOLUME_BYTES = 1 << 30;

const given = option("--data", "");
const runDir = given !== "" ? resolve(given, "..") : join(root, ".bench", "volume-start-" + new Date().toISOString().replace(/[:.]/g, "-"));
const dataDir = join(runDir, "data");
const emptyDir = join(runDir, "empty");
mkdirSync(join(dataDir, "volumes"), { recursive: true, mode: 0o700 });
mkdirSync(emptyDir, { recursive: true, mode: 0o700 });
setStartTimeout(300_000);

/** Key n, in an order scrambled by a multiplicative hash (a bijection of [0, keys)). */
const keyOf = (n: number) => `obj/${((n * 2654435761) % keys).toString(36).padStart(5, "0")}/${n}`;

const t0 = performance.now();
if (given === "") writeVolumes();
else console.log(`using ${dataDir}`);
const volume = readdirSync(join(dataDir, "volumes")).length;

function writeVolumes(): number {
const codec = new VolumeCodec();
const body = new Uint8Array(size).fill(0x5a);
const digest = new Uint8Array(32).fill(1);
const buffer = new Uint8Array(8 << 20);
let volume = 0;
let fd = -1;
let volumeBytes = 0;
let used = 0;
const flush = () => {
  writeSync(fd, buffer, 0, used);
  volumeBytes += used;
  used = 0;
};
const now = Date.now();
for (let n = 0; n < keys; n++) {
  if (fd < 0 || volumeBytes + used > VOLUME_BYTES) {
    if (fd >= 0) {
      flush();
      closeSync(fd);
    }
    fd = openSync(join(dataDir, "volumes", `${(++volume).toString(16).padStart(8, "0")}.fsv`), "wx", 0o600);
    volumeBytes = 0;
  }
  if (used + VolumeCodec.recordBytes(255, size) > buffer.length) flush();
  used += codec.encode(buffer.subarray(used), VolumeKind.BODY, keyOf(n), body, digest, n + 1, now);
}
flush();
closeSync(fd);
Bun.spawnSync(["sync"]);
console.log(`wrote ${keys} records of ${size} bytes in ${volume} volumes in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
return volume;
}

function rssKiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]);
}

async function start(dir: string): Promise<{ server: TestServer; ms: number }> {
  const t = performance.now();
  const server = await startServer({ dataDir: dir, volumes: true, adminPort: 0 });
  return { server, ms: performance.now() - t };
}

const results: string[] = [];
for (let round = 1; round <= rounds; round++) {
  const empty = await start(emptyDir);
  await Bun.sleep(500);
  const emptyRss = rssKiB(empty.server.pid);
  await empty.server.stop();
  const full = await start(dataDir);
  const ready = await full.server.line("event=volumes_ready");
  await Bun.sleep(500);
  const rss = rssKiB(full.server.pid);
  const t1 = performance.now();
  await full.server.stop();
  const stopMs = performance.now() - t1;
  const saved = full.server.lines.find((l) => l.includes("event=volume_checkpoint_saved")) ?? "";
  const fromCheckpoint = Number(/ checkpointRecords=(\d+)/.exec(ready)?.[1] ?? 0);
  const scanMs = Number(/ ms=(\d+)/.exec(ready)![1]);
  const indexBytes = Number(/ indexBytes=(\d+)/.exec(ready)![1]);
  const keyBytes = keyOf(keys - 1).length;
  const line =
    `round ${round}: start ${(full.ms / 1000).toFixed(2)} s (empty ${(empty.ms / 1000).toFixed(2)} s), ${fromCheckpoint > 0 ? `from a checkpoint of ${fromCheckpoint} records` : "every volume read"} ${(scanMs / 1000).toFixed(2)} s; ` +
    `stop ${(stopMs / 1000).toFixed(2)} s (checkpoint saved in ${(Number(/ ms=(\d+)/.exec(saved)?.[1] ?? 0) / 1000).toFixed(2)} s); ` +
    `index ${(indexBytes / keys).toFixed(1)} bytes/key (keys of ~${keyBytes} bytes), RSS beyond an empty server ${(((rss - emptyRss) * 1024) / keys).toFixed(1)} bytes/key`;
  console.log(line);
  results.push(line);
}
console.log(`\n${keys} keys of ${size} bytes in ${volume} volumes (${dataDir}):\n${results.join("\n")}`);
