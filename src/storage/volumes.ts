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
import { closeSync, existsSync, constants as fsConstants, fstatSync, fsyncSync, lstatSync, mkdirSync, openSync, readSync, readdirSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { constants } from "node:os";
import { ConfinedPaths } from "../engine/confined-paths";
import type { IoEngine } from "../engine/io-engine";
import { IoError } from "../engine/io-error";
import type { Logger } from "../log";
import { VOLUME_HEADER_BYTES, VolumeCodec, VolumeKind, VolumeRecords, type NativeIndex } from "../ffi/pool-binding";
import { stableBytes } from "../util/stable-bytes";
import { StoreError } from "./store";

export const VOLUME_DIR = "volumes";
/** The index's records as a clean stop left them (saveCheckpoint), read at start instead of every record. */
export const CHECKPOINT = "checkpoint.fsc";
const VOLUME_NAME = /^([0-9a-f]{8})\.fsv$/;

/** The numbers of the volumes in `dir` (<dataDir>/volumes), ascending; none when there is no such directory. */
export function volumeIdsIn(dir: string): number[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((name) => VOLUME_NAME.exec(name))
    .filter((m) => m !== null)
    .map((m) => Number.parseInt(m![1]!, 16))
    .sort((a, b) => a - b);
}

export function volumeFileName(id: number): string {
  return `${id.toString(16).padStart(8, "0")}.fsv`;
}

/**
 * Volumes directories opened without following links, component by component from the data
 * directory, and held (ConfinedPaths): a `volumes` directory replaced by a link while the server
 * runs is not followed, the directory opened first is used. One table per thread.
 */
const confined = new ConfinedPaths();

/** The path node:fs opens for `name` in the volumes directory `dir` (<dataDir>/volumes): never through a link. */
function beneath(dir: string, name: string): string {
  const dataDir = dir.slice(0, dir.lastIndexOf("/"));
  confined.confine(dataDir, 0o600);
  return confined.map(`${dir}/${name}`);
}

/** Opens and holds the volumes directory now (a loop's start), so that what it uses later is this one. */
export function holdVolumesDir(dir: string): void {
  beneath(dir, "-");
}

/** Loops whose volume being appended to is known to all (the loop group's bound is 64). */
const LOOPS_MAX = 64;

/**
 * The sequence numbers and volume numbers every loop takes from, and the volume each loop appends
 * to now (0: none), which compaction leaves alone (shared memory).
 */
export class VolumeCounters {
  private readonly seq: BigInt64Array;
  private readonly ids: Int32Array;
  private readonly active: Int32Array;

  constructor(readonly memory: SharedArrayBuffer) {
    this.seq = new BigInt64Array(memory, 0, 1);
    this.ids = new Int32Array(memory, 8, 1);
    this.active = new Int32Array(memory, 16, LOOPS_MAX);
  }

  static create(nextSeq: number, nextVolume: number): VolumeCounters {
    const c = new VolumeCounters(new SharedArrayBuffer(16 + 4 * LOOPS_MAX));
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

  /** The next numbers that would be taken (a checkpoint keeps them). */
  nextSeq(): number {
    return Number(Atomics.load(this.seq, 0));
  }
  nextVolume(): number {
    return Atomics.load(this.ids, 0);
  }

  setActive(loop: number, volume: number): void {
    Atomics.store(this.active, loop % LOOPS_MAX, volume);
  }

  /** The volumes some loop appends to now. */
  activeVolumes(): Set<number> {
    const set = new Set<number>();
    for (let i = 0; i < LOOPS_MAX; i++) {
      const v = Atomics.load(this.active, i);
      if (v !== 0) set.add(v);
    }
    return set;
  }
}

export interface VolumeOptions {
  /** Bodies of at most this many bytes go to volumes (-1: none: the store only reads and deletes records). */
  bodyBytesMax: number;
  /** A volume is sealed, and the next one begun, before it would pass this size. */
  fileBytesMax: number;
  /** Bytes of records gathered for one write at most (while the previous write is in flight). */
  batchBytesMax: number;
  fsync: boolean;
  fileMode: number;
  /** This loop's number (which cell of VolumeCounters' active volumes is its own). */
  loop: number;
  /** Descriptors of volumes kept open for reading, at most (VolumeFiles). */
  filesOpenMax: number;
  /** Compaction, by this loop (one loop compacts for all), or null. */
  compact: CompactOptions | null;
}

export interface CompactOptions {
  /** A volume no loop appends to whose live records take less than this share of it is compacted. */
  liveRatio: number;
  /** Bytes of a volume read per second at most while compacting. */
  bytesPerSecond: number;
  /** How often the volumes' live shares are looked at. */
  checkMs: number;
}

/** The records' end: what start-up found, for the loops (see recoverVolumes). */
export interface RecoveredVolumes {
  nextSeq: number;
  nextVolume: number;
}

/** What a checkpoint said: where each volume ended, the numbers to go on from, its records. */
interface Checkpoint {
  ends: Map<number, number>;
  nextSeq: number;
  nextVolume: number;
  records: number;
}

const CHECKPOINT_MAGIC = 0x31435346; // "FSC1"
/**
 * The checkpoint's records are index entries as the index keeps them: 2 since a record's digests
 * stay in its header (version 1's entries held them); 3 since it also holds the index's dead
 * records (fsgw_index_save_records), without which a compaction could drop a tombstone too soon. A
 * checkpoint of another version is not used: the volumes are read whole, once, and the next clean
 * stop writes this version.
 */
const CHECKPOINT_VERSION = 3;

/**
 * Adds a checkpoint's records to the index and says where it leaves the volumes; null when there is
 * none, or it cannot be used (said, and the volumes are then read whole).
 */
function readCheckpoint(path: string, index: NativeIndex, log: Logger): Checkpoint | null {
  let fd: number;
  try {
    fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") log.warn("volume_checkpoint_unread", { path, reason: (e as Error).message, effect: "every volume is read whole" });
    return null;
  }
  try {
    const fixed = new Uint8Array(32);
    if (readSync(fd, fixed, 0, 32, 0) !== 32) throw new Error("shorter than its head");
    const v = new DataView(fixed.buffer);
    if (v.getUint32(0, true) !== CHECKPOINT_MAGIC || v.getUint32(4, true) !== CHECKPOINT_VERSION) throw new Error(`not a checkpoint of this version (${v.getUint32(4, true)}, not ${CHECKPOINT_VERSION})`);
    const n = v.getUint32(8, true);
    const list = new Uint8Array(16 * n);
    if (readSync(fd, list, 0, list.length, 32) !== list.length) throw new Error("shorter than its head");
    const lv = new DataView(list.buffer);
    const ends = new Map<number, number>();
    for (let i = 0; i < n; i++) ends.set(lv.getUint32(16 * i, true), lv.getFloat64(16 * i + 8, true));
    // A volume shorter than it was (cut by hand, or a disk that lost writes) holds less than the
    // records say: the checkpoint is not used. (A volume gone was compacted: its copies are found.)
    const dir = path.slice(0, path.lastIndexOf("/"));
    for (const [id, end] of ends) {
      let size: number;
      try {
        size = statSync(`${dir}/${volumeFileName(id)}`).size;
      } catch {
        continue;
      }
      if (size < end) throw new Error(`${volumeFileName(id)} is ${size} bytes, shorter than the ${end} it had`);
    }
    const records = index.loadRecords(path, 32 + 16 * n);
    if (records < 0) throw new Error(records === -74 ? "its checksum does not hold (damaged)" : `errno ${-records}`);
    return { ends, nextSeq: v.getFloat64(16, true), nextVolume: v.getFloat64(24, true), records };
  } catch (e) {
    log.warn("volume_checkpoint_unread", { path, reason: (e as Error).message, effect: "every volume is read whole" });
    return null;
  } finally {
    closeSync(fd);
  }
}

/**
 * At a clean stop, once no loop serves: the index's records and where each volume ends now, so that
 * the next start reads them in one piece instead of every record (docs/VOLUMES.md, "Checkpoint").
 * Written to a temporary name, synced, renamed. A failure is said, and the next start reads the
 * volumes whole.
 */
export function saveCheckpoint(dataDir: string, index: NativeIndex, counters: VolumeCounters, log: Logger): void {
  const t0 = performance.now();
  const dir = `${dataDir}/${VOLUME_DIR}`;
  const ids = volumeIdsIn(dir);
  const head = new Uint8Array(32 + 16 * ids.length);
  const v = new DataView(head.buffer);
  v.setUint32(0, CHECKPOINT_MAGIC, true);
  v.setUint32(4, CHECKPOINT_VERSION, true);
  v.setUint32(8, ids.length, true);
  v.setFloat64(16, counters.nextSeq(), true);
  v.setFloat64(24, counters.nextVolume(), true);
  for (const [i, id] of ids.entries()) {
    v.setUint32(32 + 16 * i, id, true);
    v.setFloat64(32 + 16 * i + 8, statSync(`${dir}/${volumeFileName(id)}`).size, true);
  }
  const tmp = `${dir}/${CHECKPOINT}.tmp`;
  const records = index.saveRecords(tmp, head);
  if (records < 0) {
    log.warn("volume_checkpoint_failed", { errno: -records, effect: "the next start reads every volume whole" });
    try {
      unlinkSync(tmp);
    } catch {}
    return;
  }
  renameSync(tmp, `${dir}/${CHECKPOINT}`);
  const dfd = openSync(dir, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
  log.info("volume_checkpoint_saved", { records, volumes: ids.length, ms: Math.round(performance.now() - t0) });
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
  const ids = volumeIdsIn(dir);
  // A checkpoint's records first (one read, no record of the volumes read up to where it says they
  // ended), then what the volumes hold past those ends and in volumes begun since.
  const checkpoint = readCheckpoint(`${dir}/${CHECKPOINT}`, index, log);
  const records = new VolumeRecords();
  let seqMax = 0;
  let bodies = 0;
  let tombstones = 0;
  let scannedBytes = 0;
  try {
    for (const id of ids) {
      const path = `${dir}/${volumeFileName(id)}`;
      const from = checkpoint?.ends.get(id) ?? 0;
      const size = statSync(path).size;
      const scan = records.scan(path, id, from);
      if (scan.end < 0) throw new StoreError(`cannot read the volume ${path}: errno ${-scan.end}`);
      scannedBytes += size - from;
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
    const lost = records.mergeInto(index, ids);
    // A checkpoint's records of a volume removed since (compacted by a run that did not stop cleanly,
    // or by `fsgw volumes compact`) and not found copied: gone with it.
    const dropped = checkpoint === null ? 0 : index.dropMissing(ids);
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
    let nextVolume = Math.max((ids.at(-1) ?? 0) + 1, checkpoint?.nextVolume ?? 0);
    let nextSeq = Math.max(seqMax + 1, checkpoint?.nextSeq ?? 0);
    if (tombstoned.length > 0) {
      // Written and flushed now, to a volume of their own: the next start must not find the pair again.
      writeTombstones(`${dir}/${volumeFileName(nextVolume++)}`, tombstoned, nextSeq, options.fileMode);
      nextSeq += tombstoned.length;
    }
    if (lost.length > 0) log.info("volumes_settled", { filesRemoved: lost.length - tombstoned.length, recordsDeleted: tombstoned.length, why: "a crash came between a commit and the removal of what it replaced" });
    log.info("volumes_ready", {
      volumes: ids.length,
      checkpointRecords: checkpoint?.records ?? 0,
      bodyRecords: bodies,
      tombstones,
      scannedBytes,
      droppedRecords: dropped,
      keys: index.count,
      indexBytes: index.bytes,
      deadRecords: index.deadStats().bodies,
      ms: Math.round(performance.now() - t0),
    });
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
  /** A record already encoded (a compaction's copy): appended as it is. */
  raw?: Uint8Array;
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
  /** Seals in flight (their fsync makes the records before them durable). */
  private readonly sealing = new Set<Promise<void>>();
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

  /** The largest record this writer's batches hold (and a compaction reads). */
  get recordBytesMax(): number {
    return this.options.batchBytesMax;
  }

  /** Appends a body's record (digest: 32 or 48 bytes, or null). `done` hears where it is once written. */
  appendBody(key: string, body: Uint8Array, digest: Uint8Array | null, timeMs: number, done: AppendTarget): void {
    this.append({ kind: VolumeKind.BODY, key, body, digest, deletes: 0, timeMs, done });
  }

  /** Appends a record already encoded (a compaction's copy of one), whole and unchanged. */
  appendRaw(record: Uint8Array, seq: number, done: AppendTarget): void {
    this.append({ raw: record, kind: 0, key: "", body: null, digest: null, deletes: seq, timeMs: 0, done });
  }

  /** Appends a tombstone of `key`'s record `deletes`. */
  appendTombstone(key: string, deletes: number, done: AppendTarget): void {
    this.append({ kind: VolumeKind.TOMBSTONE, key, body: null, digest: null, deletes, timeMs: Date.now(), done });
  }

  private append(w: Waiting): void {
    if (this.waiting.length > 0 || !this.encode(w)) {
      // It waits: its digest may be its caller's memory, used again once this returns (FileStore's).
      if (w.digest !== null) w.digest = w.digest.slice();
      this.waiting.push(w);
    }
    if (!this.writing) this.write();
  }

  /** Encodes w at the filling batch's end: false when it does not fit. */
  private encode(w: Waiting): boolean {
    const b = this.fill;
    if (w.raw !== undefined) {
      if (b.used + w.raw.length > b.buffer.length) return false;
      b.buffer.set(w.raw, b.used);
      b.entries.push({ at: b.used, seq: w.deletes, done: w.done });
      b.used += w.raw.length;
      return true;
    }
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
    if (this.closing) {
      // Closed at shutdown: what gathered meanwhile is not written (its requests are being cut).
      this.closing = false;
      for (const p of this.fill.entries) p.done.onAppended(-constants.errno.ECANCELED, -1, 0, p.seq);
      this.fill.entries = [];
      this.fill.used = 0;
      return this.closeNow();
    }
    if (!this.writing && this.fill.used > 0) this.write();
    if (!this.writing && this.idle.length > 0) for (const resolve of this.idle.splice(0)) resolve();
  }

  /** Begins a new volume (sealing the current one): 0, or -errno. */
  private begin(): number {
    if (this.fd >= 0) this.seal();
    for (let tries = 0; tries < 16; tries++) {
      const id = this.counters.takeVolume();
      try {
        this.fd = openSync(beneath(this.dir, volumeFileName(id)), fsConstants.O_RDWR | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, this.options.fileMode);
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        if (err.code === "EEXIST") continue;
        this.log.error("volume_create_failed", { dir: this.dir, error: err.message });
        return -(err.errno !== undefined ? Math.abs(err.errno) : 5);
      }
      this.volume = id;
      this.end = 0;
      this.volumesBegun++;
      this.counters.setActive(this.options.loop, id);
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
    const sealed = this.engine
      .write(fd, buffer.subarray(0, n), at)
      .then(() => this.engine.fsync(fd))
      .catch((e: unknown) => this.log.warn("volume_seal_failed", { volume: this.volume, error: (e as Error).message }))
      .finally(() => this.engine.close(fd).catch(() => {}));
    this.sealing.add(sealed);
    void sealed.finally(() => this.sealing.delete(sealed));
  }

  /** Stops appending to the current volume (no seal: its last write failed). */
  private retire(why: string): void {
    this.log.warn("volume_retired", { volume: this.volume, why, effect: "new records go to a new volume" });
    const fd = this.fd;
    this.fd = -1;
    void this.engine.close(fd).catch(() => {});
  }

  /**
   * Makes every record answered so far durable, whatever fsyncOnCommit says: the volume being
   * appended to is fsynced, and seals in flight are waited for (a compaction, before it removes
   * the volume it copied from).
   */
  async sync(): Promise<void> {
    await Promise.all(this.sealing);
    if (this.fd < 0) return;
    const fd = this.fd;
    await this.engine.fsync(fd);
  }

  /** At shutdown, once nothing is in flight (every upload was answered): closes the volume. */
  closeNow(): void {
    // A write still in flight (a delete's tombstone at shutdown) keeps the descriptor until it
    // ends: a number closed under a pool write could be given to another file and written into.
    if (this.writing) {
      this.closing = true;
      return;
    }
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }

  /** closeNow() came while a write was in flight: the descriptor closes when it ends. */
  private closing = false;

  /** Waits for the records in flight or gathered; the current volume stays unsealed (the next start reads it whole). */
  async close(): Promise<void> {
    if (this.writing || this.fill.used > 0 || this.waiting.length > 0) await new Promise<void>((resolve) => this.idle.push(resolve));
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

/**
 * Descriptors of volumes for reading, opened on first use and kept (one per volume and loop), each
 * counted while a read uses it: a volume a compaction removed is closed once no read holds it (the
 * compacting loop's at once; the others' at their next sweep, which finds the file gone).
 */
export class VolumeFiles {
  private readonly fds = new Map<number, { fd: number; users: number; retired: boolean }>();

  constructor(
    private readonly dir: string,
    /**
     * Closes a descriptor of a removed volume off the event loop: the last close of a removed file
     * frees its blocks and pages, which for a volume of a GiB blocked the loop 0.4 s (a download's
     * maximum latency under compaction, BENCHMARKS.md).
     */
    private readonly closeLater: (fd: number) => void,
    /** Descriptors kept at most (volumeFilesOpenMax): past it the longest-open idle one closes. */
    private readonly openMax: number,
  ) {}

  /** The volume's descriptor for a read, or -errno; release() it after. */
  acquire(volume: number): number {
    let f = this.fds.get(volume);
    if (f === undefined) {
      if (this.fds.size >= this.openMax) this.closeIdle();
      try {
        f = { fd: openSync(beneath(this.dir, volumeFileName(volume)), fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW), users: 0, retired: false };
      } catch (e) {
        const errno = (e as NodeJS.ErrnoException).errno;
        return typeof errno === "number" ? -Math.abs(errno) : -5;
      }
      this.fds.set(volume, f);
    }
    f.users++;
    return f.fd;
  }

  release(volume: number): void {
    const f = this.fds.get(volume);
    if (f === undefined) return;
    f.users--;
    if (f.users === 0 && f.retired) this.drop(volume, f.fd);
  }

  /** The volume was removed: its descriptor closes once no read holds it. */
  retire(volume: number): void {
    const f = this.fds.get(volume);
    if (f === undefined) return;
    f.retired = true;
    if (f.users === 0) this.drop(volume, f.fd);
  }

  /**
   * Closes the longest-open descriptor no read holds (the map keeps opening order), to stay within
   * openMax; when every one is in use (reads in flight: bounded by the connections) none is.
   */
  private closeIdle(): void {
    for (const [volume, f] of this.fds) {
      if (f.users > 0) continue;
      this.evicted++;
      return this.drop(volume, f.fd);
    }
  }

  /** Descriptors closed to stay within openMax (for stats: many means the bound is too small). */
  evicted = 0;

  /** Retires descriptors of volumes whose file is gone (another loop compacted them). */
  sweep(): void {
    for (const [volume, f] of this.fds) {
      if (f.retired) continue;
      try {
        if (fstatSync(f.fd).nlink === 0) this.retire(volume);
      } catch {
        // a descriptor fstat refuses: left for close
      }
    }
  }

  private drop(volume: number, fd: number): void {
    this.fds.delete(volume);
    this.closeLater(fd);
  }

  get open(): number {
    return this.fds.size;
  }

  /** At shutdown: idle descriptors close now, those a read still holds when it releases them. */
  closeAll(): void {
    for (const [volume, f] of this.fds) {
      if (f.users === 0) this.drop(volume, f.fd);
      else f.retired = true;
    }
  }
}

/**
 * Bytes of the tombstones compactions kept, by the volume they were copied to and by the volume
 * that held a dead record they delete (their blocker; -1: unknown, the index's set of dead records
 * was full). They count as live in the volume they went to, so that a volume of kept tombstones is
 * not compacted again and again for nothing; once their blocker is compacted away they count no
 * more, and the next compaction of their volume drops them.
 */
class KeptTombstones {
  private readonly byVolume = new Map<number, Map<number, number>>();

  add(volume: number, blocker: number, bytes: number): void {
    let m = this.byVolume.get(volume);
    if (m === undefined) this.byVolume.set(volume, (m = new Map()));
    m.set(blocker, (m.get(blocker) ?? 0) + bytes);
  }

  /** The bytes of kept tombstones in `volume` that are still needed as far as is known. */
  bytesIn(volume: number): number {
    let n = 0;
    for (const bytes of this.byVolume.get(volume)?.values() ?? []) n += bytes;
    return n;
  }

  /** `volume` was removed: the tombstones in it went with it, and those it kept elsewhere may go. */
  gone(volume: number): void {
    this.byVolume.delete(volume);
    for (const m of this.byVolume.values()) m.delete(volume);
  }
}

/** One compaction's copy of a live record: the index learns its new place once it is written. */
class CopyTarget implements AppendTarget {
  constructor(
    private readonly compaction: Compaction,
    /** A body's key; null for a tombstone. */
    private readonly key: string | null,
    /** The copy's bytes. */
    private readonly bytes: number,
    /** A tombstone's blocker (KeptTombstones). */
    private readonly blocker: number,
  ) {}
  onAppended(result: number, volume: number, offset: number, seq: number): void {
    this.compaction.copied(result, this.key, volume, offset, seq, this.bytes, this.blocker);
  }
}

/** The copies of one volume's records in flight, and how they ended. */
class Compaction {
  /** Bytes of the copies handed to the writer and not yet written (each a copy of its record). */
  inFlightBytes = 0;
  failed = 0;
  moved = 0;
  /** Who waits in below(), and for how few bytes in flight. */
  private waiter: { bytes: number; resolve: () => void } | null = null;

  constructor(
    private readonly index: NativeIndex,
    /** Tombstones kept (they count as live where they went). */
    private readonly kept: KeptTombstones,
  ) {}

  /** A copy of `bytes` is handed to the writer. */
  sent(bytes: number): void {
    this.inFlightBytes += bytes;
  }

  copied(result: number, key: string | null, volume: number, offset: number, seq: number, bytes: number, blocker: number): void {
    this.inFlightBytes -= bytes;
    if (result < 0) this.failed++;
    else if (key === null) this.kept.add(volume, blocker, bytes);
    // A key written or deleted since its record was read keeps its newer state: the copy is dead.
    else this.moved += this.index.moveRecord(key, seq, volume, offset);
    const waiter = this.waiter;
    if (waiter !== null && this.inFlightBytes <= waiter.bytes) {
      this.waiter = null;
      waiter.resolve();
    }
  }

  /** Resolves once at most `bytes` of copies are in flight (0: every copy is written, or failed). */
  below(bytes: number): Promise<void> {
    if (this.inFlightBytes <= bytes) return Promise.resolve();
    return new Promise((resolve) => (this.waiter = { bytes, resolve }));
  }
}

/**
 * Compaction (one loop does it for all): every checkMs, the live share of each volume no loop
 * appends to is read from the index; the one with the smallest share under liveRatio is read
 * record by record (at most bytesPerSecond), each live record and every tombstone appended again,
 * unchanged (same sequence number, so a write that raced the copy still wins), to this loop's
 * volume; once all are written and synced, the index points at the copies and the volume is
 * removed. Readers of the old place keep their descriptor until they finish. A crash at any point
 * leaves the old volume or the copies or both, which the start-up scan reads as the same records.
 *
 * A tombstone is copied only while it may still delete something: while its key holds no later
 * record and another volume holds a dead record of the key (the index notes them:
 * NativeIndex.deadElsewhere). Else it is dropped, and a key that stays deleted stops costing a
 * tombstone once the volumes that held its records are compacted away.
 */
export class VolumeCompactor {
  private timer: ReturnType<typeof setInterval> | null = null;
  private running = false;
  private readonly codec = new VolumeCodec();
  /** The tombstones compactions kept: live where they went (the index counts only bodies). */
  private readonly kept = new KeptTombstones();
  compactions = 0;
  tombstonesDropped = 0;
  tombstonesKept = 0;
  bytesReclaimed = 0;
  recordsCopied = 0;
  /** The most bytes of copies a compaction had in flight (at most copyBytesMax). */
  copyBytesHigh = 0;

  constructor(
    private readonly engine: IoEngine,
    private readonly dir: string,
    private readonly index: NativeIndex,
    private readonly writer: VolumeWriter,
    private readonly files: VolumeFiles,
    private readonly counters: VolumeCounters,
    private readonly options: CompactOptions,
    private readonly log: Logger,
  ) {}

  start(): void {
    if (this.options.liveRatio <= 0) return;
    this.timer = setInterval(() => void this.check(), this.options.checkMs);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Compacts the emptiest volume under liveRatio, if any: its number, or -1. */
  async check(): Promise<number> {
    if (this.running) return -1;
    this.running = true;
    try {
      const active = this.counters.activeVolumes();
      const ids = volumeIdsIn(this.dir).filter((id) => !active.has(id));
      if (ids.length === 0) return -1;
      const live = this.index.volumeUsage(ids);
      let best = -1;
      let bestShare = this.options.liveRatio;
      for (let i = 0; i < ids.length; i++) {
        let size: number;
        try {
          size = statSync(`${this.dir}/${volumeFileName(ids[i]!)}`).size;
        } catch {
          continue; // removed meanwhile
        }
        const share = size === 0 ? 0 : (live[i]! + this.kept.bytesIn(ids[i]!)) / size;
        if (share < bestShare) {
          bestShare = share;
          best = ids[i]!;
        }
      }
      if (best < 0) return -1;
      await this.compact(best);
      return best;
    } catch (e) {
      this.log.error("volume_compaction_failed", { error: (e as Error).message });
      return -1;
    } finally {
      this.running = false;
    }
  }

  /** Bytes of copies in flight at most: two of the writer's batches. */
  private get copyBytesMax(): number {
    return 2 * this.writer.recordBytesMax;
  }

  /** Copies the live records and tombstones of `volume` to this loop's volume, then removes it. */
  private async compact(volume: number): Promise<void> {
    const t0 = performance.now();
    const path = `${this.dir}/${volumeFileName(volume)}`;
    const fd = this.files.acquire(volume);
    if (fd < 0) throw new Error(`cannot open ${path}: errno ${-fd}`);
    const job = new Compaction(this.index, this.kept);
    const chunk = stableBytes(Math.max(1 << 20, this.writer.recordBytesMax));
    let size = 0;
    let copiedBytes = 0;
    let records = 0;
    let tombstonesKept = 0;
    let tombstonesDropped = 0;
    try {
      size = fstatSync(fd).size;
      let base = 0; // the file offset of chunk[0]
      let have = 0;
      let pos = 0;
      const decoder = new TextDecoder();
      for (;;) {
        // Whole record in the chunk? Else read on from pos.
        let at = pos - base;
        if (have - at < VOLUME_HEADER || have - at < this.recordLength(chunk, at)) {
          if (pos >= size) break;
          base = pos;
          at = 0;
          have = await this.readAt(fd, chunk, pos, Math.min(chunk.length, size - pos));
          if (have < VOLUME_HEADER || have < this.recordLength(chunk, 0)) break; // a torn tail: nothing more to copy
          await this.pace(t0, pos);
        }
        const r = chunk.subarray(at, at + this.recordLength(chunk, at));
        const view = new DataView(r.buffer, r.byteOffset, r.byteLength);
        if (!this.intact(r, view)) break; // as the start-up scan: nothing after the first damaged record is served
        const kind = r[4]!;
        if (kind === VolumeKind.SEAL) break;
        const keyLen = r[5]!;
        const seq = Number(view.getBigInt64(8, true));
        const key = decoder.decode(r.subarray(VOLUME_HEADER, VOLUME_HEADER + keyLen));
        // A body is live while the index points at this very record; a tombstone while it may
        // still delete something (blockerOf).
        let live = false;
        let blocker = 0;
        if (kind === VolumeKind.BODY) live = this.index.get(key) && this.index.lastInVolume && this.index.lastVolume === volume && this.index.lastOffset === pos;
        else if (kind === VolumeKind.TOMBSTONE) {
          blocker = this.blockerOf(key, volume, Number(view.getBigInt64(24, true)));
          live = blocker !== 0;
          if (live) tombstonesKept++;
          else tombstonesDropped++;
        }
        if (live) {
          // The copies wait in the writer as copies of their records: at most two of its batches
          // (volumeBatchBytesMax each) are in flight, whatever the read rate allows, so that a
          // disk slower than the reads holds memory to that bound.
          if (job.inFlightBytes + r.length > this.copyBytesMax) await job.below(this.copyBytesMax - r.length);
          job.sent(r.length);
          if (job.inFlightBytes > this.copyBytesHigh) this.copyBytesHigh = job.inFlightBytes;
          records++;
          copiedBytes += r.length;
          this.writer.appendRaw(r.slice(), seq, new CopyTarget(job, kind === VolumeKind.BODY ? key : null, r.length, blocker));
        }
        pos += r.length;
      }
      await job.below(0);
      if (job.failed > 0) throw new Error(`${job.failed} copies failed to be written; ${path} is kept`);
      // The copies must outlive the volume: durable before it goes, whatever fsyncOnCommit says.
      await this.writer.sync();
      await this.engine.unlink(path);
    } finally {
      this.files.release(volume);
    }
    this.files.retire(volume);
    this.kept.gone(volume);
    // Its dead records are gone with it: tombstones kept for them may go at their next compaction.
    const deadForgotten = this.index.forgetDead(volume);
    this.compactions++;
    this.recordsCopied += records;
    this.bytesReclaimed += size - copiedBytes;
    this.tombstonesKept += tombstonesKept;
    this.tombstonesDropped += tombstonesDropped;
    this.log.info("volume_compacted", { volume, bytes: size, recordsCopied: records, bytesCopied: copiedBytes, keysMoved: job.moved, tombstonesKept, tombstonesDropped, deadForgotten, ms: Math.round(performance.now() - t0) });
  }

  /**
   * Why a tombstone of `key` in `volume`, deleting the record `deletes`, must be kept: the volume
   * that holds a dead record it deletes (-1: unknown), or 0 when it can go. It can go once the key
   * holds a later record (a later delete's tombstone names a larger number and deletes the old
   * records too), or once no other volume holds a dead record of the key (those in this volume go
   * with it): nothing is left that a scan without it would bring back.
   */
  private blockerOf(key: string, volume: number, deletes: number): number {
    if (this.index.get(key) && this.index.lastInVolume && this.index.lastSeq > deletes) return 0;
    const dead = this.index.deadElsewhere(key, volume);
    if (dead.state === "unknown" && !this.saidFull) {
      this.saidFull = true;
      this.log.warn("volume_dead_records_full", {
        volumeDeadRecordsMax: "reached",
        effect: "the index no longer knows every dead record: compactions keep every tombstone of a deleted key (~100 bytes each on disk)",
        remedy: "raise volumeDeadRecordsMax; the next start without a checkpoint (after `fsgw volumes compact`, or with volumes/checkpoint.fsc removed) knows them again",
      });
    }
    return dead.state === "none" ? 0 : dead.state === "blocked" ? dead.volume : -1;
  }

  /** volume_dead_records_full was logged (once a process). */
  private saidFull = false;

  /** A record's length from its header at `at` (the header's own length when it is not whole). */
  private recordLength(chunk: Uint8Array, at: number): number {
    if (at + VOLUME_HEADER > chunk.length) return VOLUME_HEADER;
    const view = new DataView(chunk.buffer, chunk.byteOffset + at, VOLUME_HEADER);
    const body = chunk[at + 4] === VolumeKind.BODY ? Number(view.getBigInt64(24, true)) : 0;
    if (!(body >= 0 && body <= this.writer.recordBytesMax)) return VOLUME_HEADER; // not a record: intact() says so
    return VolumeCodec.recordBytes(chunk[at + 5]!, body);
  }

  /** Magic and checksum, as ffi/fsgw_volume.c's scan checks them. */
  private intact(r: Uint8Array, view: DataView): boolean {
    if (r.length < VOLUME_HEADER || r[0] !== 0x46 || r[1] !== 0x53 || r[2] !== 0x56 || r[3] !== 0x31) return false;
    const body = r[4] === VolumeKind.BODY ? Number(view.getBigInt64(24, true)) : 0;
    const crc = this.codec.crc32c(r.subarray(VOLUME_HEADER, VOLUME_HEADER + r[5]! + body), this.codec.crc32c(r.subarray(0, 80)));
    return crc === view.getUint32(80, true);
  }

  private async readAt(fd: number, into: Uint8Array, at: number, length: number): Promise<number> {
    let done = 0;
    while (done < length) {
      const n = await this.engine.read(fd, into.subarray(done, length), at + done);
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  /** Sleeps as long as reading `bytes` since t0 at bytesPerSecond takes beyond the time gone. */
  private async pace(t0: number, bytes: number): Promise<void> {
    const due = (bytes / this.options.bytesPerSecond) * 1000 - (performance.now() - t0);
    if (due > 1) await new Promise((r) => setTimeout(r, due));
  }
}

const VOLUME_HEADER = VOLUME_HEADER_BYTES;

/** A record as readRecords finds it; `problem` says why reading stopped there (null: intact). */
export interface ReadRecord {
  offset: number;
  kind: number;
  key: string;
  seq: number;
  body: Uint8Array;
  /** The SHA-256 the record holds for its body, or null. */
  sha256: Uint8Array | null;
  problem: string | null;
}

/**
 * Every record of the volume at `path`, in order, read on this thread (tools: fsgw volumes verify):
 * stops at the seal, at the end, or after the first record that is not whole and intact (yielded
 * with its problem).
 */
export function* readRecords(path: string): Generator<ReadRecord> {
  const codec = new VolumeCodec();
  const decoder = new TextDecoder();
  const fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  try {
    const size = fstatSync(fd).size;
    let chunk = new Uint8Array(1 << 20);
    let base = 0;
    let have = 0;
    const fill = (pos: number, need: number): boolean => {
      if (pos >= base && pos + need <= base + have) return true;
      if (need > chunk.length) chunk = new Uint8Array(need);
      base = pos;
      have = readSync(fd, chunk, 0, Math.min(chunk.length, size - pos), pos);
      return need <= have;
    };
    for (let pos = 0; pos < size; ) {
      const bad = (problem: string): ReadRecord => ({ offset: pos, kind: 0, key: "", seq: 0, body: new Uint8Array(0), sha256: null, problem: `${problem}; the ${size - pos} bytes from here are not read` });
      if (!fill(pos, VOLUME_HEADER)) return yield bad("a record cut short (a torn tail)");
      const h = chunk.subarray(pos - base, pos - base + VOLUME_HEADER);
      let view = new DataView(h.buffer, h.byteOffset, VOLUME_HEADER);
      if (h[0] !== 0x46 || h[1] !== 0x53 || h[2] !== 0x56 || h[3] !== 0x31 || h[4]! < 1 || h[4]! > 3) return yield bad("no record starts here");
      const kind = h[4]!;
      const keyLen = h[5]!;
      const bodyLen = kind === VolumeKind.BODY ? Number(view.getBigInt64(24, true)) : 0;
      if (!(bodyLen >= 0 && bodyLen <= 16 * 1024 * 1024)) return yield bad("a record's size is out of range");
      const length = VolumeCodec.recordBytes(keyLen, bodyLen);
      if (!fill(pos, length)) return yield bad("a record cut short (a torn tail)");
      const r = chunk.subarray(pos - base, pos - base + length);
      view = new DataView(r.buffer, r.byteOffset, length);
      const crc = codec.crc32c(r.subarray(VOLUME_HEADER, VOLUME_HEADER + keyLen + bodyLen), codec.crc32c(r.subarray(0, 80)));
      if (crc !== view.getUint32(80, true)) return yield bad("a record fails its CRC-32C");
      if (kind === VolumeKind.SEAL) return;
      yield {
        offset: pos,
        kind,
        key: decoder.decode(r.subarray(VOLUME_HEADER, VOLUME_HEADER + keyLen)),
        seq: Number(view.getBigInt64(8, true)),
        body: r.subarray(VOLUME_HEADER + keyLen, VOLUME_HEADER + keyLen + bodyLen),
        sha256: (r[6]! & 1) !== 0 ? r.subarray(32, 64) : null,
        problem: null,
      };
      pos += length;
    }
  } finally {
    closeSync(fd);
  }
}
