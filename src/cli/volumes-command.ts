// `fsgw volumes stats | verify | compact`: an operator's view of a data directory's volumes
// (docs/VOLUMES.md), without a server. stats and verify only read (a running server may be
// appending meanwhile: their figures are then of a moment); compact takes the data directory's lock,
// so it runs only while no server does.
import { closeSync, existsSync, rmSync } from "node:fs";
import { ConfigError, loadConfig } from "../config";
import { SyncEngine } from "../engine/sync-engine";
import { NativeIndex, VolumeKind, VolumeRecords } from "../ffi/pool-binding";
import { Logger } from "../log";
import { lockForProcess } from "../platform";
import { CHECKPOINT, VOLUME_DIR, VolumeCompactor, VolumeCounters, VolumeFiles, VolumeWriter, readRecords, volumeFileName, volumeIdsIn } from "../storage/volumes";
import { parseArgs, UsageError, type Parsed } from "./args";
import { EXIT_LOCAL, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, subcommandFailure, subcommandHelp, type Io } from "./client-commands";

export const volumesHelp = `usage: fsgw volumes stats   [--data-dir <dir> | --config <file>] [--json]
       fsgw volumes verify  [--data-dir <dir> | --config <file>] [--json]
       fsgw volumes compact [--data-dir <dir> | --config <file>] [--live-percent <n>] [--json]

stats    each volume's size, records, tombstones and the share of it that is live (records the
         keys hold now), and the totals.
verify   reads every record of every volume: its CRC-32C, and the SHA-256 of its body against the
         one it records. Exit 1 when any record fails (each is named), 0 when all are intact.
compact  copies the live records (and the tombstones) of each volume under --live-percent
         (default: the config's volumeCompactLivePercent, 50) to a new volume and removes it, as
         the server does in the background. Takes the data directory's lock: stop the server first.
--json   prints one JSON object instead.

The data directory is --data-dir, else the dataDir of --config, else of $FSGW_DATA_DIR (./data).

examples:
  fsgw volumes stats --data-dir /var/lib/fsgw
  fsgw volumes verify --config /etc/fsgw.json || echo damaged
  systemctl stop fsgw && fsgw volumes compact --data-dir /var/lib/fsgw --live-percent 80`;

const flags = {
  "--data-dir": { takesValue: true },
  "--config": { takesValue: true },
  "--live-percent": { takesValue: true },
  "--json": { takesValue: false },
  "--help": { alias: "-h", takesValue: false },
} as const;

interface VolumeFacts {
  volume: number;
  bytes: number;
  bodies: number;
  tombstones: number;
  liveBytes: number;
  sealed: boolean;
  /** Bytes after the first record that failed its check (0: none). */
  unreadBytes: number;
}

function configOf(parsed: Parsed) {
  const config = parsed.flags.get("--config");
  const loaded = loadConfig({ argv: config === undefined ? [] : ["--config", config], env: process.env });
  const dataDir = parsed.flags.get("--data-dir") ?? loaded.dataDir;
  return { config: loaded, dataDir };
}

/** Scans every volume into an index of their live records (files are not looked at). */
function scanAll(dir: string, ids: number[], deadBodiesMax: number): { index: NativeIndex; facts: VolumeFacts[]; seqMax: number } {
  const records = new VolumeRecords();
  const facts: VolumeFacts[] = [];
  let seqMax = 0;
  try {
    for (const id of ids) {
      const scan = records.scan(`${dir}/${volumeFileName(id)}`, id);
      if (scan.end < 0) throw new Error(`cannot read ${dir}/${volumeFileName(id)}: errno ${-scan.end}`);
      seqMax = Math.max(seqMax, scan.seqMax);
      facts.push({ volume: id, bytes: scan.fileBytes, bodies: scan.bodies, tombstones: scan.tombstones, liveBytes: 0, sealed: scan.sealed, unreadBytes: scan.badAt >= 0 ? scan.fileBytes - scan.badAt : 0 });
    }
    const index = NativeIndex.scratch();
    index.limitDead(deadBodiesMax);
    records.mergeInto(index);
    const live = index.volumeUsage(ids);
    for (let i = 0; i < facts.length; i++) facts[i]!.liveBytes = live[i]!;
    return { index, facts, seqMax };
  } finally {
    records.close();
  }
}

const MiB = 1024 * 1024;
const mib = (n: number) => (n < MiB ? `${(n / 1024).toFixed(1)} KiB` : `${(n / MiB).toFixed(1)} MiB`);
const pct = (live: number, bytes: number) => (bytes === 0 ? 0 : Math.round((1000 * live) / bytes) / 10);

export async function runVolumesCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  const json = argv.includes("--json");
  const fail = subcommandFailure(io, "volumes", sub, json);
  const help = subcommandHelp(io, volumesHelp, sub);
  if (help !== null) return help;
  try {
    const parsed = parseArgs(rest, flags);
    if (parsed.flags.has("--help")) {
      io.stdout(volumesHelp + "\n");
      return EXIT_OK;
    }
    if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument ${parsed.positionals[0]}`);
    const { config, dataDir } = configOf(parsed);
    const dir = `${dataDir}/${VOLUME_DIR}`;
    if (!existsSync(dataDir)) return fail(`no data directory ${dataDir}`, EXIT_LOCAL);
    const ids = volumeIdsIn(dir);
    if (sub === "stats") {
      const { index, facts } = scanAll(dir, ids, config.volumeDeadRecordsMax);
      const keys = index.count;
      index.close();
      const total = facts.reduce((a, f) => ({ bytes: a.bytes + f.bytes, live: a.live + f.liveBytes, bodies: a.bodies + f.bodies, tombstones: a.tombstones + f.tombstones }), { bytes: 0, live: 0, bodies: 0, tombstones: 0 });
      if (json) {
        io.stdout(JSON.stringify({ op: "volumes stats", dataDir, volumes: facts, totals: { volumes: facts.length, bytes: total.bytes, liveBytes: total.live, keys, bodyRecords: total.bodies, tombstones: total.tombstones } }) + "\n");
        return EXIT_OK;
      }
      io.stdout(`${"volume".padEnd(14)}${"size".padStart(12)}${"records".padStart(10)}${"tombstones".padStart(12)}${"live".padStart(12)}${"live %".padStart(8)}  state\n`);
      for (const f of facts) {
        const state = f.unreadBytes > 0 ? `${f.unreadBytes} bytes unread (verify)` : f.sealed ? "sealed" : "open or cut";
        io.stdout(`${volumeFileName(f.volume).padEnd(14)}${mib(f.bytes).padStart(12)}${String(f.bodies).padStart(10)}${String(f.tombstones).padStart(12)}${mib(f.liveBytes).padStart(12)}${String(pct(f.liveBytes, f.bytes)).padStart(8)}  ${state}\n`);
      }
      io.stdout(`${facts.length} volumes, ${mib(total.bytes)}, ${mib(total.live)} live (${pct(total.live, total.bytes)}%), ${keys} keys in records\n`);
      return EXIT_OK;
    }
    if (sub === "verify") {
      const problems: { volume: number; offset: number; problem: string }[] = [];
      let records = 0;
      for (const id of ids) {
        for (const r of readRecords(`${dir}/${volumeFileName(id)}`)) {
          if (r.problem !== null) {
            problems.push({ volume: id, offset: r.offset, problem: r.problem });
            continue;
          }
          records++;
          if (r.kind === VolumeKind.BODY && r.sha256 !== null && Buffer.compare(new Bun.CryptoHasher("sha256").update(r.body).digest(), r.sha256) !== 0) {
            problems.push({ volume: id, offset: r.offset, problem: `the body of ${JSON.stringify(r.key)} does not have the SHA-256 its record holds` });
          }
        }
      }
      if (json) io.stdout(JSON.stringify({ op: "volumes verify", dataDir, volumes: ids.length, records, problems, exitCode: problems.length === 0 ? EXIT_OK : EXIT_REFUSED }) + "\n");
      else {
        for (const p of problems) io.stdout(`${volumeFileName(p.volume)} at ${p.offset}: ${p.problem}\n`);
        io.stdout(`${ids.length} volumes, ${records} records intact, ${problems.length} problems\n`);
      }
      return problems.length === 0 ? EXIT_OK : EXIT_REFUSED;
    }
    if (sub === "compact") {
      const livePercent = parsed.flags.has("--live-percent") ? Number(parsed.flags.get("--live-percent")) : config.volumeCompactLivePercent;
      if (!(livePercent >= 0 && livePercent <= 100)) throw new UsageError(`--live-percent must be 0..100`);
      const lock = lockForProcess(`${dataDir}/fsgw.lock`, Number.parseInt(config.fileMode, 8));
      if (!lock.ok) return fail(lock.inUse ? `${dataDir} is in use (${lock.error}): stop its server first` : `cannot lock ${dataDir}: ${lock.error}`, EXIT_REFUSED);
      try {
        const { index, seqMax } = scanAll(dir, ids, config.volumeDeadRecordsMax);
        const log = new Logger("warn", (line) => io.stderr.write(line + "\n"));
        const counters = VolumeCounters.create(seqMax + 1, (ids.at(-1) ?? 0) + 1);
        const engine = new SyncEngine();
        const writer = new VolumeWriter(engine, dir, counters, { bodyBytesMax: -1, fileBytesMax: config.volumeFileBytesMax, batchBytesMax: config.volumeBatchBytesMax, fsync: true, fileMode: Number.parseInt(config.fileMode, 8), loop: 0, filesOpenMax: config.volumeFilesOpenMax, compact: null }, log);
        const files = new VolumeFiles(dir, (fd) => closeSync(fd), config.volumeFilesOpenMax);
        const compactor = new VolumeCompactor(engine, dir, index, writer, files, counters, { liveRatio: livePercent / 100, bytesPerSecond: Number.MAX_SAFE_INTEGER, checkMs: 0 }, log);
        const compacted: number[] = [];
        for (let v = await compactor.check(); v >= 0; v = await compactor.check()) compacted.push(v);
        // The server's checkpoint describes the volumes as they were: the next start reads them whole.
        if (compacted.length > 0) rmSync(`${dir}/${CHECKPOINT}`, { force: true });
        await writer.close();
        files.closeAll();
        index.close();
        const result = { op: "volumes compact", dataDir, compacted: compacted.map(volumeFileName), bytesReclaimed: compactor.bytesReclaimed, recordsCopied: compactor.recordsCopied, tombstonesDropped: compactor.tombstonesDropped };
        if (json) io.stdout(JSON.stringify(result) + "\n");
        else io.stdout(`compacted ${compacted.length} volumes (${compacted.map(volumeFileName).join(", ") || "none under " + livePercent + "% live"}): ${mib(compactor.bytesReclaimed)} reclaimed, ${compactor.recordsCopied} records copied, ${compactor.tombstonesDropped} tombstones dropped\n`);
        return EXIT_OK;
      } finally {
        lock.release();
      }
    }
    throw new UsageError(`unknown subcommand ${sub}: stats, verify or compact`);
  } catch (e) {
    if (e instanceof UsageError || e instanceof ConfigError) return fail(`${e.message} (fsgw volumes --help)`, EXIT_USAGE);
    return fail((e as Error).message, EXIT_LOCAL);
  }
}
