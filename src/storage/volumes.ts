// Append-only volumes of small bodies (issue 27; the record's bytes: ffi/fsgw_volume.h). A body of at
// most volumeBytesMax is stored as a record appended to a volume file instead of a file of its own:
// one write for many uploads (the records that arrive while a write is in flight go together in the
// next one, and with fsyncOnCommit share its fsync), no inode, no directory entry. The listing index
// (ffi/fsgw_index.h) holds each such key's volume, offset and sequence number beside its facts, so
// exist and download ask it, not the file system.
//
// Layout: <dataDir>/volumes/<8 hex digits>.fsv. Each event loop appends to a volume of its own (no
// lock between loops); any loop reads any volume. A volume is never appended to after the process
// that wrote it ends: each start opens new ones, so a tail a crash cut is only ever read, never
// written after (the scan stops at it; its bytes stay for `fsgw volumes verify` to show).
//
// Order: every record has a sequence number from one counter shared by the loops (and continued
// from the largest a start-up scan found): a key's later write has a larger one, wherever it went.
// A tombstone deletes the record whose number it names, not the key: a write that raced it stays.
//
// Acknowledgement order: records of one volume are written in order, one write at a time, so when a
// write completes every record before it is written too: a record acknowledged is never behind a
// hole a crash could leave (which the scan would stop at).
import { closeSync, constants as fsConstants, fsyncSync, lstatSync, mkdirSync, openSync, readdirSync, unlinkSync, writeSync } from "node:fs";
import type { IoEngine } from "../engine/io-engine";
import { IoError } from "../engine/io-error";
import type { Logger } from "../log";
import { VolumeCodec, VolumeKind, VolumeRecords, type NativeIndex } from "../ffi/pool-binding";
import { stableBytes } from "../util/stable-bytes";
import { StoreError } from "./store";

export const VOLUME_DIR = "volumes";
const VOLUME_NAME = /^([0-9a-f]{8})\.fsv$/;

export function volumeFileName(id: number): string {
  return `${id.toString(16).padStart(8, "0")}.fsv`;
}

/** The sequence numbers and volume numbers every loop takes from (shared memory). */
export class VolumeCounters {
  private readonly seq: BigInt64Array;
  private readonly ids: Int32Array;

  constructor(readonly memory: SharedArrayBuffer) {
    this.seq = new BigInt64Array(memory, 0, 1);
    this.ids = new Int32Array(memory, 8, 1);
  }

  static create(nextSeq: number, nextVolume: number): VolumeCounters {
    const c = new VolumeCounters(new SharedArrayBuffer(16));
    Atomics.store(c.seq, 0, BigInt(nextSeq));
    Atomics.store(c.ids, 0, nextVolume);
    return c;
  }

  takeSeq(): number {
    return Number(Atomics.add(this.seq, 0, 1n));
  }

  takeVolume(): number {
    return Atomics.add(this.ids, 0, 1);
  }
}

export interface VolumeOptions {
  /** Bodies of at most this many bytes go to volumes. */
  bodyBytesMax: number;
  /** A volume is sealed, and the next one begun, before it would pass this size. */
  fileBytesMax: number;
  /** Bytes of records gathered for one write at most (while the previous write is in flight). */
  batchBytesMax: number;
  fsync: boolean;
  fileMode: number;
}

/** The records' end: what start-up found, for the loops (see recoverVolumes). */
export interface RecoveredVolumes {
  nextSeq: number;
  nextVolume: number;
}

/**
 * Start-up, before any loop serves: scans every volume in order into the index (a key's record with
 * the largest sequence number, unless a tombstone deleted it), reports tails that failed their
 * checksum, and settles keys that a crash left both as a file and as a record (the later stays:
 * the other file is removed, the other record deleted by a tombstone written now).
 */
export function recoverVolumes(dataDir: string, index: NativeIndex, log: Logger, options: { dirMode: number; fileMode: number; pathOf: (key: string) => string }): RecoveredVolumes {
  const t0 = performance.now();
  const dir = `${dataDir}/${VOLUME_DIR}`;
  try {
    mkdirSync(dir, { mode: options.dirMode });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
  }
  if (!lstatSync(dir).isDirectory()) throw new StoreError(`${dir} is not a directory (a symbolic link?): fsgw never follows links in its data directory; remove it`);
  const ids = readdirSync(dir)
    .map((name) => VOLUME_NAME.exec(name))
    .filter((m) => m !== null)
    .map((m) => Number.parseInt(m![1]!, 16))
    .sort((a, b) => a - b);
  const records = new VolumeRecords();
  let seqMax = 0;
  let bodies = 0;
  let tombstones = 0;
  try {
    for (const id of ids) {
      const path = `${dir}/${volumeFileName(id)}`;
      const scan = records.scan(path, id);
      if (scan.end < 0) throw new StoreError(`cannot read the volume ${path}: errno ${-scan.end}`);
      seqMax = Math.max(seqMax, scan.seqMax);
      bodies += scan.bodies;
      tombstones += scan.tombstones;
      if (scan.badAt >= 0) {
        log.warn("volume_tail_unread", {
          volume: path,
          offset: scan.badAt,
          bytes: scan.fileBytes - scan.badAt,
          effect: "the records from there on failed their checksum (a write a crash cut short, or damage): they are not served; records before it are",
        });
      }
    }
    const lost = records.mergeInto(index);
    const tombstoned: { key: string; seq: number }[] = [];
    for (const { key, lost: what, seq } of lost) {
      if (what === "record") {
        tombstoned.push({ key, seq });
        continue;
      }
      try {
        unlinkSync(options.pathOf(key));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
      }
    }
    let nextVolume = (ids.at(-1) ?? 0) + 1;
    let nextSeq = seqMax + 1;
    if (tombstoned.length > 0) {
      // Written and flushed now, to a volume of their own: the next start must not find the pair again.
      writeTombstones(`${dir}/${volumeFileName(nextVolume++)}`, tombstoned, nextSeq, options.fileMode);
      nextSeq += tombstoned.length;
    }
    if (lost.length > 0) log.info("volumes_settled", { filesRemoved: lost.length - tombstoned.length, recordsDeleted: tombstoned.length, why: "a crash came between a commit and the removal of what it replaced" });
    log.info("volumes_ready", { volumes: ids.length, bodyRecords: bodies, tombstones, keys: index.count, indexBytes: index.bytes, ms: Math.round(performance.now() - t0) });
    return { nextSeq, nextVolume };
  } finally {
    records.close();
  }
}

function writeTombstones(path: string, list: { key: string; seq: number }[], firstSeq: number, fileMode: number): void {
  const codec = new VolumeCodec();
  const out = new Uint8Array(list.length * VolumeCodec.recordBytes(255, 0));
  let used = 0;
  let seq = firstSeq;
  const now = Date.now();
  for (const t of list) used += codec.encode(out.subarray(used), VolumeKind.TOMBSTONE, t.key, null, null, seq++, now, t.seq);
  const fd = openSync(path, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, fileMode);
  try {
    writeSync(fd, out, 0, used, 0);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Hears where an appended record landed (result 0), or why it did not (result -errno). */
export interface AppendTarget {
  onAppended(result: number, volume: number, offset: number, seq: number): void;
}

interface Pending {
  /** The record's offset in its batch. */
  at: number;
  seq: number;
  done: AppendTarget;
}

interface Batch {
  buffer: Uint8Array;
  used: number;
  entries: Pending[];
}

/** A record that waits for room in a batch (the filling one is full while a write is in flight). */
interface Waiting {
  kind: number;
  key: string;
  body: Uint8Array | null;
  digest: Uint8Array | null;
  deletes: number;
  timeMs: number;
  done: AppendTarget;
}

/**
 * One loop's appends: records gathered into a batch while the previous batch's write (and fsync)
 * is in flight, then written in one call at the volume's end. One write in flight at a time.
 */
export class VolumeWriter {
  private readonly codec = new VolumeCodec();
  private fill: Batch;
  private spare: Batch;
  /**
   * Records that found the filling batch full: at most one per connection committing an upload
   * (connectionsMax bounds it), each holding only its own body.
   */
  private readonly waiting: Waiting[] = [];
  /** close() callers waiting for the last write. */
  private readonly idle: (() => void)[] = [];
  private writing = false;
  private fd = -1;
  private volume = -1;
  private end = 0;
  /** Counters for stats. */
  writes = 0;
  records = 0;
  volumesBegun = 0;

  constructor(
    private readonly engine: IoEngine,
    private readonly dir: string,
    private readonly counters: VolumeCounters,
    private readonly options: VolumeOptions,
    private readonly log: Logger,
  ) {
    this.fill = { buffer: stableBytes(options.batchBytesMax), used: 0, entries: [] };
    this.spare = { buffer: stableBytes(options.batchBytesMax), used: 0, entries: [] };
  }

  /** Appends a body's record (digest: 32 or 48 bytes, or null). `done` hears where it is once written. */
  appendBody(key: string, body: Uint8Array, digest: Uint8Array | null, timeMs: number, done: AppendTarget): void {
    this.append({ kind: VolumeKind.BODY, key, body, digest, deletes: 0, timeMs, done });
  }

  /** Appends a tombstone of `key`'s record `deletes`. */
  appendTombstone(key: string, deletes: number, done: AppendTarget): void {
    this.append({ kind: VolumeKind.TOMBSTONE, key, body: null, digest: null, deletes, timeMs: Date.now(), done });
  }

  private append(w: Waiting): void {
    if (this.waiting.length > 0 || !this.encode(w)) this.waiting.push(w);
    if (!this.writing) this.write();
  }

  /** Encodes w at the filling batch's end: false when it does not fit. */
  private encode(w: Waiting): boolean {
    const b = this.fill;
    const need = VolumeCodec.recordBytes(255, w.body === null ? 0 : w.body.length);
    if (b.used + need > b.buffer.length) return false;
    const seq = this.counters.takeSeq();
    const n = this.codec.encode(b.buffer.subarray(b.used), w.kind, w.key, w.body, w.digest, seq, w.timeMs, w.deletes);
    b.entries.push({ at: b.used, seq, done: w.done });
    b.used += n;
    return true;
  }

  private write(): void {
    const batch = this.fill;
    if (batch.used === 0) return;
    this.fill = this.spare;
    this.spare = batch;
    const rolled = this.fd < 0 || this.end + batch.used > this.options.fileBytesMax ? this.begin() : 0;
    if (rolled < 0) return this.finish(batch, rolled);
    const fd = this.fd;
    const base = this.end;
    this.end += batch.used;
    this.writing = true;
    this.writes++;
    const wrote = this.engine.write(fd, batch.buffer.subarray(0, batch.used), base);
    // Durable: the records, and the first time in a volume, the directory entry of its new file.
    const newName = this.options.fsync && base === 0;
    const synced = this.options.fsync ? wrote.then(() => this.engine.fsync(fd)).then(() => (newName ? this.syncDir() : undefined)) : wrote;
    synced.then(
      () => this.finish(batch, 0, base),
      (e: unknown) => {
        const errno = e instanceof IoError && typeof e.errno === "number" ? e.errno : 5;
        // What follows a failed write in this volume may be a hole: no record goes after it.
        if (this.fd === fd) this.retire(`write failed: errno ${errno}`);
        this.finish(batch, -errno);
      },
    );
  }

  /** fsyncs the volumes' directory, so that a new volume's name survives a crash as its records do. */
  private async syncDir(): Promise<void> {
    const fd = await this.engine.open(this.dir, "directory");
    try {
      await this.engine.fsync(fd);
    } finally {
      await this.engine.close(fd).catch(() => {});
    }
  }

  /** Tells each record of a written (or failed) batch, then writes the next one. */
  private finish(batch: Batch, result: number, base = 0): void {
    this.writing = false;
    const volume = this.volume;
    const entries = batch.entries;
    batch.entries = [];
    batch.used = 0;
    this.records += result === 0 ? entries.length : 0;
    for (const p of entries) p.done.onAppended(result, volume, base + p.at, p.seq);
    while (this.waiting.length > 0 && this.encode(this.waiting[0]!)) this.waiting.shift();
    if (!this.writing && this.fill.used > 0) this.write();
    if (!this.writing && this.idle.length > 0) for (const resolve of this.idle.splice(0)) resolve();
  }

  /** Begins a new volume (sealing the current one): 0, or -errno. */
  private begin(): number {
    if (this.fd >= 0) this.seal();
    for (let tries = 0; tries < 16; tries++) {
      const id = this.counters.takeVolume();
      try {
        this.fd = openSync(`${this.dir}/${volumeFileName(id)}`, fsConstants.O_RDWR | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, this.options.fileMode);
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        if (err.code === "EEXIST") continue;
        this.log.error("volume_create_failed", { dir: this.dir, error: err.message });
        return -(err.errno !== undefined ? Math.abs(err.errno) : 5);
      }
      this.volume = id;
      this.end = 0;
      this.volumesBegun++;
      return 0;
    }
    return -17; // EEXIST: another writer took every number tried
  }

  /** The current volume takes no more records: its seal goes after them, flushed, and its descriptor closes. */
  private seal(): void {
    const fd = this.fd;
    const at = this.end;
    this.fd = -1;
    const buffer = stableBytes(VolumeCodec.recordBytes(0, 0));
    const n = this.codec.encode(buffer, VolumeKind.SEAL, "", null, null, this.counters.takeSeq(), Date.now());
    void this.engine
      .write(fd, buffer.subarray(0, n), at)
      .then(() => this.engine.fsync(fd))
      .catch((e: unknown) => this.log.warn("volume_seal_failed", { volume: this.volume, error: (e as Error).message }))
      .finally(() => this.engine.close(fd).catch(() => {}));
  }

  /** Stops appending to the current volume (no seal: its last write failed). */
  private retire(why: string): void {
    this.log.warn("volume_retired", { volume: this.volume, why, effect: "new records go to a new volume" });
    const fd = this.fd;
    this.fd = -1;
    void this.engine.close(fd).catch(() => {});
  }

  /** At shutdown, once nothing is in flight (every upload was answered): closes the volume. */
  closeNow(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }

  /** Waits for the records in flight or gathered; the current volume stays unsealed (the next start reads it whole). */
  async close(): Promise<void> {
    if (this.writing || this.fill.used > 0 || this.waiting.length > 0) await new Promise<void>((resolve) => this.idle.push(resolve));
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

/** Descriptors of volumes for reading, opened on first use and kept (one per volume and loop). */
export class VolumeFiles {
  private readonly fds = new Map<number, number>();

  constructor(private readonly dir: string) {}

  /** The volume's descriptor, or -errno. */
  fdOf(volume: number): number {
    const fd = this.fds.get(volume);
    if (fd !== undefined) return fd;
    try {
      const opened = openSync(`${this.dir}/${volumeFileName(volume)}`, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
      this.fds.set(volume, opened);
      return opened;
    } catch (e) {
      const errno = (e as NodeJS.ErrnoException).errno;
      return typeof errno === "number" ? -Math.abs(errno) : -5;
    }
  }

  get open(): number {
    return this.fds.size;
  }

  closeAll(): void {
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
  }
}
