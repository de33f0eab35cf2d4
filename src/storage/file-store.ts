// The file store: sharded, atomic storage in one data directory on a local disk, through an I/O
// engine. Everything file-shaped lives here and below: paths, temporary files and renames,
// descriptors, errno and what each one means to a client (failureOfErrno).
//
// Layout: <dataDir>/<shard>/<key>, where <shard> is the key's FNV-1a hash modulo `shards`, in hex.
// A temporary file lives in the same shard directory as its final name, so committing it is a
// rename inside one directory: readers see the old file or the new one, never a partial one, and
// concurrent commits spread over `shards` directory locks instead of contending on one.
// Temporary names contain a backslash, which no key may contain, so the two can never collide and
// the start-up sweep can tell stale temporaries from stored files by name alone.
//
// Small exists and downloads are first tried inline (the engine's InlineOps: the kernel's caches,
// on the event-loop thread, refused without waiting when not cached); their results then reach
// the target synchronously.
import { closeSync, constants as fsConstants, lstatSync, mkdirSync, openSync, readFileSync, readdirSync, statSync, unlinkSync, writeSync } from "node:fs";
import { constants } from "node:os";
import { resolve } from "node:path";
import { S_IFDIR, S_IFMT, S_IFREG, WOULD_BLOCK, modeOf, type InlineOps, type IoEngine, type IoTarget, type ZeroCopyOps } from "../engine/io-engine";
import { errnoName, ioErrorFromErrno } from "../engine/io-error";
import { causeOfErrno, ErrnoCause, failErrno, reportError } from "./file-errors";
import { Partials, type ClientBudget, type HandedOver, type PartialLimits, type PartialUpload } from "./partials";
import type { Logger } from "../log";
import { lockForProcess } from "../platform";
import { BUCKET_SPACE, type StoreKey } from "./keys";
import type { SharedCounters } from "../server/shared-counters";
import { DIGEST_MISMATCH_CAUSE, EntryType, Failure, StoreError, UPLOAD_TABLE_CAUSE, type BodyReader, type EntryKind, type FailureCause, type FailureKind, type ResumableRequest, type ResumableStats, type ResumableUploads, type StatTarget, type Store, type StoreTarget, type UploadOwner, type UploadSink, type ListPage, type ListRequest, type ListTarget, setDigests } from "./store";
import { UploadStream } from "./upload-stream";
import { stableBytes } from "../util/stable-bytes";
import { FreeSpace } from "./free-space";
import { INDEX_REPLACED_FILE, recordFacts, VOLUME_HEADER_BYTES, type NativeIndex } from "../ffi/pool-binding";
import { VOLUME_DIR, holdVolumesDir, VolumeCompactor, VolumeFiles, VolumeWriter, type AppendTarget, type VolumeCounters, type VolumeOptions } from "./volumes";

const LAYOUT_FILE = "fsgw-layout.json";
/** How often a loop closes descriptors of volumes another loop compacted away. */
const VOLUME_SWEEP_MS = 60_000;

/** A file's text, read without following a link at its last component (ELOOP, ENOENT thrown). */
function readNoFollow(path: string): string {
  const fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  try {
    return readFileSync(fd, "utf8");
  } finally {
    closeSync(fd);
  }
}

/** Creates a file that must not exist yet (never through a link) with `text`. */
function writeNew(path: string, text: string, mode: number): void {
  const fd = openSync(path, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, mode);
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}
const LOCK_FILE = "fsgw.lock";
const TEMP_MARK = "\\";
/**
 * A '/' of a key is stored as U+001F (the unit separator) in its file name: keys may not contain
 * control characters, so the mapping is one to one, and no key names a path, only a file of its
 * shard directory. (`ls` shows it as '?'; `getfattr`/`find -name` see the byte.)
 */
const SLASH_IN_FILE_NAME = "\x1f";
export function fileNameOf(key: string): string {
  return key.includes("/") ? key.replaceAll("/", SLASH_IN_FILE_NAME) : key;
}
const EISDIR = constants.errno.EISDIR;

function entryTypeOf(mode: number): EntryKind {
  const format = mode & S_IFMT;
  return format === S_IFREG ? EntryType.FILE : format === S_IFDIR ? EntryType.DIR : EntryType.OTHER;
}

// Adapters from an engine's callback form (result or -errno, st_mode) to a store target's. One
// small object per operation, where the engine already made one (its pending operation).

/**
 * An upload refused before it started (an unknown or busy upload id): a sink
 * with nothing in it, whose owner hears the failure on the next turn (as from an open).
 */
function refusedUpload(owner: UploadOwner, kind: FailureKind, cause: FailureCause = UPLOAD_TABLE_CAUSE): UploadSink {
  queueMicrotask(() => owner.onStoreFailed(kind, cause));
  return { backlogBytes: 0, push() {}, end() {}, abort: () => Promise.resolve() };
}

/** The budget of a store that takes no resumable uploads: nothing is ever charged to it. */
const NO_BUDGET: ClientBudget = {
  takeUpload: () => "no resumable uploads",
  releaseUpload() {},
  takeBytes: () => "no resumable uploads",
  releaseBytes() {},
};

/** Copies an inline call's facts (digests, mtime) into a caller's DIGEST_BYTES buffer. */
function copyDigest(from: Uint8Array, out: Uint8Array | undefined): void {
  if (out !== undefined) out.set(from);
}

function sameDigest(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

class StatDone implements IoTarget {
  constructor(private readonly target: StatTarget) {}
  onIoDone(result: number, mode: number): void {
    if (result >= 0) this.target.onStat(result, entryTypeOf(mode));
    else failErrno(this.target, -result);
  }
  onIoBug(error: unknown): void {
    this.target.onStoreBug(error);
  }
}

class ValueDone implements IoTarget {
  constructor(
    private readonly target: StoreTarget,
    /**
     * Run on success, before the target hears of it: the listing index follows the files (and
     * what the file replaced in a volume is deleted first when it returns a promise).
     */
    private readonly then: (() => void | Promise<void>) | null = null,
  ) {}
  onIoDone(result: number): void {
    if (result < 0) return failErrno(this.target, -result);
    const after = this.then?.();
    if (after === undefined) return this.target.onStoreDone(result);
    after.then(
      () => this.target.onStoreDone(result),
      (e: unknown) => this.target.onStoreBug(e),
    );
  }
  onIoBug(error: unknown): void {
    this.target.onStoreBug(error);
  }
}

export interface FileStoreOptions {
  dataDir: string;
  shards: number;
  /**
   * Bounds of resumable uploads (Partials). Null: this store takes none (one loop of several: a
   * RESUME may reach another loop, which cannot see this one's table); an upload that asks for one
   * is an ordinary upload, and RESUME is answered as by a store without them.
   */
  resumable: (PartialLimits & { budget: ClientBudget }) | null;
  /**
   * One event loop of several: its index (upload ids start "<index>.") and how to take over an
   * upload another loop parked, for a RESUME that reached this loop (through the loop group).
   */
  loop?: {
    index: number;
    takeFromLoop(id: string, keyName: string): Promise<HandedOver | null | "busy">;
    /** Every loop's resumable uploads and their kept bytes (the bounds are the server's). */
    counters: SharedCounters;
  };
  /** fsync each committed file and its directory before the upload is acknowledged. */
  fsyncOnCommit: boolean;
  /** Modes of the files and directories the store creates (less the umask). */
  fileMode: number;
  dirMode: number;
  /** The largest single write of a streamed upload, and the read size of a streamed download. */
  ioChunkBytes: number;
  /** Writes of one streamed upload in flight at once. */
  uploadWritesInFlightMax: number;
  /**
   * The ordered index of this data directory's keys (shared by every loop), which the store keeps
   * in step with the files: null for a store that is not listed (a read cache), or when the C
   * library is not there (then LIST is answered "listing unavailable").
   */
  index?: NativeIndex | null;
  /**
   * Small bodies in append-only volumes (volumes.ts): with an index only (it is where their keys
   * are). Null or absent: every body is a file.
   */
  volumes?: (VolumeOptions & { counters: VolumeCounters }) | null;
  /** New bodies are refused ("disk full") below this much free space (free-space.ts); 0 or absent: none. */
  diskFreeBytesMin?: number;
}

/** Why a body was refused above the kernel's own ENOSPC. */
const FREE_SPACE_CAUSE: FailureCause = { text: "below diskFreeBytesMin free: the rest is kept for deletes and compaction" };

/** A whole body appended to a volume: the index learns where, then the client hears. */
class VolumePut implements AppendTarget, IoTarget {
  constructor(
    private readonly store: FileStore,
    private readonly key: StoreKey,
    private readonly size: number,
    private readonly mtimeMs: number,
    /** The digests the record's header holds (32: a SHA-256; 48: and an MD5); the index keeps only which. */
    private readonly digestBytes: 32 | 48,
    private readonly target: StoreTarget,
  ) {}
  onAppended(result: number, volume: number, offset: number, seq: number): void {
    if (result < 0) {
      // The write failed, but its record may be in the volume whole: dead there, as an overwrite's.
      if (volume > 0) this.store.index!.noteDead(this.key.name, volume);
      return failErrno(this.target, -result);
    }
    // A file of the key (a larger body before) is replaced: removed before the answer, so that
    // no later lookup finds it (a crash before that: the next start keeps the later, the record).
    const added = this.store.index!.addRecord(this.key.name, this.size, this.mtimeMs, this.digestBytes, volume, offset, seq);
    if (added !== INDEX_REPLACED_FILE) return this.target.onStoreDone(this.size);
    this.store.unlinkReplaced(this.key, this);
  }
  /** The replaced file's unlink: done either way (ENOENT: it had gone). */
  onIoDone(): void {
    this.target.onStoreDone(this.size);
  }
  onIoBug(error: unknown): void {
    this.target.onStoreBug(error);
  }
}

/** A tombstone appended for a removed key's record: the index lets it go, then the client hears. */
class VolumeRemove implements AppendTarget {
  constructor(
    private readonly index: NativeIndex,
    private readonly name: string,
    private readonly seq: number,
    private readonly target: StoreTarget,
  ) {}
  onAppended(result: number): void {
    if (result < 0) return failErrno(this.target, -result);
    this.index.removeRecord(this.name, this.seq);
    this.target.onStoreDone(0);
  }
}

export class FileStore implements Store {
  readonly dataDir: string;
  readonly shards: number;
  private readonly fsyncOnCommit: boolean;
  /** The floor of free space new bodies must leave (FileStoreOptions.diskFreeBytesMin). */
  private readonly freeSpace: FreeSpace;
  private readonly fileMode: number;
  private readonly dirMode: number;
  private readonly chunkBytes: number;
  private readonly writesInFlightMax: number;
  /** Paths of the shard directories, built once: every request needs one. */
  private readonly shardDirs: string[];
  /** `.fsgw-tmp\<pid>.` (one loop: `.fsgw-tmp\<pid>-<loop>.`, so that loops never pick one name). */
  private tempPrefix = `.fsgw-tmp${TEMP_MARK}${process.pid}.`;
  private readonly takesResumable: boolean;
  readonly resumable: ResumableUploads | undefined;
  private readonly loop: NonNullable<FileStoreOptions["loop"]> | null;
  private tempSeq = 0;
  /**
   * The engine's inline operations, once init() has found the data directory on a file system
   * whose caches can be trusted; null otherwise: then every operation goes through the engine.
   */
  private inline: InlineOps | null = null;
  /** Splice for uploads, once init() has found that this file system takes splice writes. */
  private spliceUploads = false;
  /** Resumable uploads in progress or parked, and the timer that expires parked ones. */
  readonly partials: Partials;
  private partialSweeper: ReturnType<typeof setInterval> | null = null;
  /** The data directory's lock, when this instance took it (init). */
  private lock: { release(): void } | null = null;
  private readonly partialTtlMs: number;
  /** See FileStoreOptions.index. */
  readonly index: NativeIndex | null;
  /** LIST, when this store has an index (see FileStoreOptions.index). */
  readonly list: Store["list"];
  /** See FileStoreOptions.volumes; the writer and descriptors once init() or attach() ran. */
  private readonly volumeOptions: (VolumeOptions & { counters: VolumeCounters }) | null;
  private volumeWriter: VolumeWriter | null = null;
  private volumeFiles: VolumeFiles | null = null;
  /** Records' headers a listing found not cached and read on the pool (their digests are listed). */
  private listHeaderReads = 0;
  /** A record's header read inline (recordFactsNow). */
  private readonly headerRoom = new Uint8Array(VOLUME_HEADER_BYTES);
  private readonly headerView = new DataView(this.headerRoom.buffer);
  private compactor: VolumeCompactor | null = null;
  private volumeSweeper: ReturnType<typeof setInterval> | null = null;

  constructor(
    private readonly engine: IoEngine,
    options: FileStoreOptions,
  ) {
    this.dataDir = resolve(options.dataDir);
    this.shards = options.shards;
    this.index = options.index ?? null;
    this.list = this.index === null ? undefined : (request, target) => this.listPage(this.index!, request, target);
    this.volumeOptions = this.index === null ? null : (options.volumes ?? null);
    const limits = options.resumable ?? { uploadsMax: 0, bytesMax: 0, ttlMs: 60_000, budget: NO_BUDGET };
    this.takesResumable = options.resumable !== null;
    // The capability is there or not from construction: a store that takes no resumable uploads
    // (a read cache; the bun and sync engines over several loops) answers RESUME as one without.
    this.resumable = this.takesResumable
      ? {
          resume: (id, key, owner, expected, digest) => this.resumeUpload(id, key, owner, expected, digest),
          handOver: (id, keyName) => this.partials.handOver(id, keyName, Date.now()),
          discardAll: () => this.discardUploads(),
          stats: () => this.resumableStats(),
        }
      : undefined;
    this.loop = options.loop ?? null;
    this.partials = new Partials(limits, limits.budget, this.loop === null ? "" : `${this.loop.index}.`, this.loop === null ? null : { counters: this.loop.counters, loop: this.loop.index });
    this.partialTtlMs = limits.ttlMs;
    this.fsyncOnCommit = options.fsyncOnCommit;
    this.freeSpace = new FreeSpace(this.dataDir, options.diskFreeBytesMin ?? 0);
    this.fileMode = options.fileMode;
    this.dirMode = options.dirMode;
    this.chunkBytes = options.ioChunkBytes;
    this.writesInFlightMax = options.uploadWritesInFlightMax;
    const width = Math.max(2, (this.shards - 1).toString(16).length);
    this.shardDirs = Array.from({ length: this.shards }, (_, i) => `${this.dataDir}/${i.toString(16).padStart(width, "0")}`);
  }

  get description(): string {
    return `files in ${this.dataDir}`;
  }

  /**
   * Creates the data directory and its shard directories, checks that it was laid out with the
   * same shard count, and removes temporary files a crash left behind. Start-up only, so it uses
   * synchronous fs directly.
   */
  init(log: Logger, forLoops = false): void {
    mkdirSync(this.dataDir, { recursive: true, mode: this.dirMode });
    this.checkDataDirMode(log);
    // One server per data directory: a second one would sweep the first one's temporary files.
    const lock = lockForProcess(`${this.dataDir}/${LOCK_FILE}`, this.fileMode);
    if (!lock.ok) {
      if (lock.inUse) throw new StoreError(`${this.dataDir} is in use by another fsgw server (${LOCK_FILE}: ${lock.error}); stop it or choose another dataDir`);
      throw new StoreError(`cannot lock ${this.dataDir}/${LOCK_FILE}: ${lock.error}`);
    }
    this.lock = lock;
    this.checkLayout();
    this.partials.log = log;
    const swept = this.sweepTemporaries(log);
    this.confine();
    // For a group of loops, each loop finds what its engine may do here (attach).
    const engine = forLoops ? {} : this.attachEngine(log);
    if (!forLoops) this.startVolumes(log);
    log.info("store_ready", { dataDir: this.dataDir, shards: this.shards, lock: lock.how, staleTempFilesRemoved: swept, ...engine });
  }

  /** One loop of several: the group's own instance did init() (lock, layout, sweep). */
  attach(log: Logger, loop: number): void {
    this.tempPrefix = `.fsgw-tmp${TEMP_MARK}${process.pid}-${loop}.`;
    this.partials.log = log;
    this.confine();
    this.startVolumes(log);
    log.debug("store_attached", { dataDir: this.dataDir, ...this.attachEngine(log) });
  }

  /** Counters of the volumes (this loop's appends), when the store has them. */
  get stats(): (() => Record<string, number>) | undefined {
    if (this.volumeOptions === null) return undefined;
    return () => {
      const w = this.volumeWriter;
      const c = this.compactor;
      return {
        volumeRecords: w?.records ?? 0,
        volumeWrites: w?.writes ?? 0,
        volumesBegun: w?.volumesBegun ?? 0,
        volumeFilesOpen: this.volumeFiles?.open ?? 0,
        volumeFilesEvicted: this.volumeFiles?.evicted ?? 0,
        volumeListHeaderReads: this.listHeaderReads,
        ...(c === null ? {} : { volumeCompactions: c.compactions, volumeBytesReclaimed: c.bytesReclaimed, volumeRecordsCopied: c.recordsCopied, volumeCopyBytesHigh: c.copyBytesHigh, volumeTombstonesKept: c.tombstonesKept, volumeTombstonesDropped: c.tombstonesDropped, ...this.deadStats() }),
      };
    };
  }

  /** The index's dead records (one index for every loop: reported by the compacting loop only). */
  private deadStats(): Record<string, number> {
    const d = this.index!.deadStats();
    return { volumeDeadRecords: d.bodies, volumeDeadRecordsBytes: d.bytes, volumeDeadRecordsFull: d.full ? 1 : 0 };
  }

  /** This instance's volume writer and read descriptors (each loop has its own). */
  private startVolumes(log: Logger): void {
    const v = this.volumeOptions;
    if (v === null) return;
    const dir = `${this.dataDir}/${VOLUME_DIR}`;
    holdVolumesDir(dir);
    // A listing reads records' digests from their headers there (the index keeps only locations).
    const set = this.index!.setVolumes(dir);
    if (set < 0) throw new Error(`cannot open ${dir} for listings: ${errnoName(-set)}`);
    this.volumeWriter = new VolumeWriter(this.engine, dir, v.counters, v, log);
    const files = new VolumeFiles(dir, (fd) => void this.engine.close(fd).catch(() => {}), v.filesOpenMax);
    this.volumeFiles = files;
    // Descriptors of volumes another loop compacted away are closed here within a minute.
    this.volumeSweeper = setInterval(() => files.sweep(), VOLUME_SWEEP_MS);
    this.volumeSweeper.unref?.();
    if (v.compact !== null) {
      this.compactor = new VolumeCompactor(this.engine, dir, this.index!, this.volumeWriter, files, v.counters, v.compact, log);
      this.compactor.start();
    }
  }

  /** Compacts the emptiest volume under volumeCompactLiveRatio now (tests; the timer does it otherwise): its number, or -1. */
  compactNow(): Promise<number> {
    return this.compactor?.check() ?? Promise.resolve(-1);
  }

  /** True when `key` is a record of a volume: then the index's last* accessors describe it. */
  private inVolume(key: StoreKey): boolean {
    return this.volumeWriter !== null && this.index!.get(key.name) && this.index!.lastInVolume;
  }

  /**
   * The digests and time of the record the index's last get() found, from its header, into
   * `facts` (the index keeps only where the record is: ffi/fsgw_index.h): inline, one read from the
   * page cache. 0 when done; WOULD_BLOCK when the header is not cached (then recordFactsLater);
   * -errno when it cannot be read or is not that record's (a damaged volume: EIO).
   */
  private recordFactsNow(facts: Uint8Array): number {
    if (this.inline === null) return WOULD_BLOCK;
    const index = this.index!;
    const files = this.volumeFiles!;
    const volume = index.lastVolume;
    const fd = files.acquire(volume);
    if (fd < 0) return fd;
    const n = this.inline.readNow(fd, this.headerRoom, index.lastOffset);
    files.release(volume);
    if (n === WOULD_BLOCK || n < 0) return n;
    return n === VOLUME_HEADER_BYTES && recordFacts(this.headerRoom, index.lastSeq, index.gotKeyBytes, facts, this.headerView) ? 0 : -constants.errno.EIO;
  }

  /** recordFactsNow on the pool (the header was not cached): then() once `facts` holds them; a failure goes to target. */
  private recordFactsLater(facts: Uint8Array, target: StoreTarget, then: () => void): void {
    this.recordFactsRead(facts)((failure) => (failure === null ? then() : failWith(target, failure)));
  }

  /**
   * The pool's read of the header of the record the index's last get() found, made when called:
   * `done` hears null once `facts` holds its digests, else the failure (-errno's errno, or an error).
   */
  private recordFactsRead(facts: Uint8Array): (done: (failure: unknown) => void) => void {
    const index = this.index!;
    const files = this.volumeFiles!;
    const volume = index.lastVolume;
    const offset = index.lastOffset;
    const seq = index.lastSeq;
    const keyBytes = index.gotKeyBytes;
    return (done) => {
      const fd = files.acquire(volume);
      if (fd < 0) return done(-fd);
      const header = new Uint8Array(VOLUME_HEADER_BYTES);
      this.engine.read(fd, header, offset).then(
        (n) => {
          files.release(volume);
          done(n === VOLUME_HEADER_BYTES && recordFacts(header, seq, keyBytes, facts) ? null : constants.errno.EIO);
        },
        (e: unknown) => {
          files.release(volume);
          done(e);
        },
      );
    };
  }

  /** Removes the file a volume's record replaced (VolumePut): the target hears either way. */
  unlinkReplaced(key: StoreKey, target: IoTarget): void {
    this.engine.callbacks.unlinkTo(this.pathOf(key), target);
  }

  /**
   * After a file of `key` was committed: the index follows, and a record of the key in a volume
   * (a smaller body before) is deleted by a tombstone before the upload is answered.
   */
  private fileCommitted(key: StoreKey, size: number, sum: Uint8Array | null): Promise<void> | undefined {
    const index = this.index!;
    const replaced = this.inVolume(key) ? index.lastSeq : -1;
    index.add(key.name, size, Date.now(), sum);
    if (replaced < 0) return undefined;
    return new Promise<void>((resolve) => this.volumeWriter!.appendTombstone(key.name, replaced, { onAppended: () => resolve() }));
  }

  /**
   * From here on every operation of the engine beneath the data directory resolves beneath it and
   * never through a symbolic link (a planted link, or a shard directory replaced by one, is refused:
   * ELOOP, "refused: a symbolic link stands in the data directory"). An engine that cannot promise
   * that stops the start.
   */
  private confine(): void {
    const rc = this.engine.confine(this.dataDir, this.fileMode);
    if (rc < 0) {
      const why = rc === -constants.errno.ENOSYS ? "this kernel has no openat2 (Linux 5.6 or later is needed)" : rc === -constants.errno.ENOENT && this.engine.name !== "cpool" ? "/proc is not mounted" : errnoName(rc);
      throw new StoreError(`cannot confine the ${this.engine.name} engine to ${this.dataDir} (${why}): fsgw would not be able to refuse symbolic links in it`);
    }
  }

  /**
   * Files of the data directory are readable by whoever can enter it: tokens mean nothing to a local
   * user who can read the files. A directory more open than dirMode is said once, with the fix.
   */
  private checkDataDirMode(log: Logger): void {
    const mode = statSync(this.dataDir).mode & 0o777;
    if ((mode & ~this.dirMode & 0o077) !== 0) {
      log.warn("data_dir_mode", {
        dataDir: this.dataDir,
        mode: "0" + mode.toString(8),
        dirMode: "0" + this.dirMode.toString(8),
        effect: "other local users can reach the stored files, whatever the access tokens say",
        advice: `chmod ${this.dirMode.toString(8)} ${this.dataDir}`,
      });
    }
  }

  /** Finds what this engine may do in the data directory: inline calls, splice. */
  private attachEngine(log: Logger): { inlineIo: boolean; spliceUploads: boolean } {
    const inline = this.engine.inline;
    if (inline !== null) {
      const trusted = inline.trustedFor(this.dataDir);
      this.inline = trusted === 1 ? inline : null;
      if (trusted !== 1) log.info("inline_io_off", { dataDir: this.dataDir, reason: trusted === 0 ? "not a local file system: cached attributes may be stale" : `statfs failed: errno ${-trusted}` });
    }
    const zc = this.engine.zeroCopy;
    if (zc !== null) {
      const probe = zc.spliceWorksIn(this.shardDirs[0]!);
      this.spliceUploads = probe === 0;
      if (probe !== 0) log.info("splice_uploads_off", { dataDir: this.dataDir, reason: `splice into a file here fails (errno ${-probe})`, effect: "uploads are received into memory and written" });
    }
    return { inlineIo: this.inline !== null, spliceUploads: this.spliceUploads };
  }

  /** The layout file, read or written without following a link (O_NOFOLLOW): nothing outside is read or written. */
  private checkLayout(): void {
    const layoutPath = `${this.dataDir}/${LAYOUT_FILE}`;
    let text: string;
    try {
      text = readNoFollow(layoutPath);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ELOOP") throw new StoreError(`${layoutPath} is a symbolic link: fsgw never follows links in its data directory; remove it`);
      if (code !== "ENOENT") throw new StoreError(`${layoutPath} is unreadable (${(e as Error).message}); fix or remove it`);
      writeNew(layoutPath, JSON.stringify({ shards: this.shards, hash: "fnv1a32" }) + "\n", this.fileMode);
      return;
    }
    let layout: { shards?: unknown; hash?: unknown };
    try {
      layout = JSON.parse(text);
    } catch (e) {
      throw new StoreError(`${layoutPath} is unreadable (${(e as Error).message}); fix or remove it`);
    }
    if (layout.shards !== this.shards || layout.hash !== "fnv1a32") {
      throw new StoreError(
        `${this.dataDir} was laid out with shards=${String(layout.shards)}; start with --shards ${String(layout.shards)} or use another dataDir (moving files between layouts is not supported)`,
      );
    }
  }

  private sweepTemporaries(log: Logger): number {
    let swept = 0;
    for (const dir of this.shardDirs) {
      try {
        mkdirSync(dir, { mode: this.dirMode });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      }
      // A link (or a file) where a shard directory belongs is not followed, swept or used.
      if (!lstatSync(dir).isDirectory()) {
        throw new StoreError(`${dir} is not a directory (a symbolic link?): fsgw never follows links in its data directory; remove it, and fsgw makes the directory`);
      }
      for (const name of readdirSync(dir)) {
        if (!name.includes(TEMP_MARK)) continue;
        try {
          unlinkSync(`${dir}/${name}`);
          swept++;
        } catch (e) {
          log.warn("sweep_failed", { path: `${dir}/${name}`, error: (e as Error).message });
        }
      }
    }
    return swept;
  }

  /** The final path of a key. */
  pathOf(key: StoreKey): string {
    return `${this.shardDirs[key.hash % this.shards]}/${fileNameOf(key.name)}`;
  }

  /** A fresh temporary path in the key's shard directory. */
  private tempPathOf(key: StoreKey): string {
    return `${this.shardDirs[key.hash % this.shards]}/${this.tempPrefix}${++this.tempSeq}`;
  }

  stat(key: StoreKey, target: StatTarget, digest?: Uint8Array): void {
    if (digest !== undefined) digest[0] = 0;
    if (this.inVolume(key)) {
      const size = this.index!.lastSize;
      if (digest === undefined) return target.onStat(size, EntryType.FILE);
      const now = this.recordFactsNow(digest);
      if (now === 0) return target.onStat(size, EntryType.FILE);
      if (now !== WOULD_BLOCK) return failErrno(target, -now);
      return this.recordFactsLater(digest, target, () => target.onStat(size, EntryType.FILE));
    }
    const path = this.pathOf(key);
    if (this.inline !== null) {
      const size = this.inline.statCached(path);
      if (size >= 0) copyDigest(this.inline.lastDigest, digest);
      if (size !== WOULD_BLOCK) return new StatDone(target).onIoDone(size, this.inline.lastMode);
      // A name the kernel has not looked up: the index holds every key of the shard directories
      // (loaded at start, added to before each commit is answered, removed from at each unlink),
      // so its "absent" answers a miss without a worker's lookup in the directory (BENCHMARKS.md,
      // "Against the Go original": an exist of keys never stored cost a pool trip each). Only
      // here, where the lookup would otherwise go to a worker: without inline calls the engine's
      // own lookup also finds what no store put there (a planted link, refused and counted).
      if (this.index !== null && this.index.has(key.name) === 0) return new StatDone(target).onIoDone(-constants.errno.ENOENT, 0);
    }
    this.engine.callbacks.statTo(path, new StatDone(target), digest);
  }

  remove(key: StoreKey, target: StoreTarget): void {
    if (this.inVolume(key)) return this.volumeWriter!.appendTombstone(key.name, this.index!.lastSeq, new VolumeRemove(this.index!, key.name, this.index!.lastSeq, target));
    this.engine.callbacks.unlinkTo(this.pathOf(key), new ValueDone(target, this.index === null ? null : () => void this.index!.remove(key.name)));
  }

  putWhole(key: StoreKey, body: Uint8Array, target: StoreTarget, expected: Uint8Array | null = null, digest?: Uint8Array, md5 = false): void {
    // A body this small is hashed here, before anything is written: a mismatch touches nothing.
    // The MD5 of a body this small is Bun's (BoringSSL's assembly, a little cheaper per byte than
    // the C library's; measured A B A B with 5 KiB PUTs): the C one is for bodies that splice.
    const sum = this.sumScratch;
    this.engine.digestOf(body, sum);
    if (expected !== null && !sameDigest(sum, expected)) return target.onStoreFailed(Failure.DIGEST_MISMATCH, DIGEST_MISMATCH_CAUSE);
    if (!md5) {
      if (digest !== undefined) setDigests(digest.fill(0, 0, 1), sum);
      return this.putHashed(key, body, sum, target);
    }
    const recorded = new Uint8Array(48);
    recorded.set(sum);
    recorded.set(new Bun.CryptoHasher("md5").update(body).digest(), 32);
    if (digest !== undefined) setDigests(digest.fill(0, 0, 1), sum, recorded.subarray(32));
    this.putHashed(key, body, recorded, target);
  }

  /**
   * putWhole's digest of the body, reused upload after upload: storeHashed reads it before it
   * returns, or copies it (a volume's record that waits for room, a file's commit).
   */
  private readonly sumScratch = stableBytes(32);

  /**
   * putWhole of a body whose SHA-256 the caller computed already (a read cache's copy); `sum` may
   * carry the body's MD5 after it (48 bytes), recorded with it.
   */
  putHashed(key: StoreKey, body: Uint8Array, sum: Uint8Array, target: StoreTarget): void {
    if (!this.freeSpace.take(body.length)) return target.onStoreFailed(Failure.NO_SPACE, FREE_SPACE_CAUSE);
    this.storeHashed(key, body, sum, target);
  }

  /** putHashed past the floor of free space (taken already: by it, or by beginUpload for a streamed body). */
  private storeHashed(key: StoreKey, body: Uint8Array, sum: Uint8Array, target: StoreTarget): void {
    const v = this.volumeOptions;
    if (v !== null && this.volumeWriter !== null && body.length <= v.bodyBytesMax) {
      const now = Date.now();
      return this.volumeWriter.appendBody(key.name, body, sum, now, new VolumePut(this, key, body.length, now, sum.length === 48 ? 48 : 32, target));
    }
    // The commit records the digest after this returns: putWhole's is reused by the next upload.
    if (sum === this.sumScratch) {
      const kept = stableBytes(32);
      kept.set(sum);
      sum = kept;
    }
    const tmp = this.tempPathOf(key);
    // The digest as the engine records it with the file (the listing shows the body's SHA-256).
    const recorded = this.engine.setDigest !== undefined;
    const indexed = this.index === null ? null : () => this.fileCommitted(key, body.length, recorded ? sum : null);
    this.engine.callbacks.commitFileTo(tmp, this.pathOf(key), body, this.fsyncOnCommit, new ValueDone(target, indexed), recorded ? sum : undefined);
  }

  /** A streamed body small enough for a volume, appended as its record (storeHashed) as a promise. */
  private putRecord(key: StoreKey, body: Uint8Array, sum: Uint8Array): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.storeHashed(key, body, sum, {
        onStoreDone: () => resolve(),
        onStoreFailed: (_failure, cause) => reject(cause instanceof ErrnoCause ? ioErrorFromErrno(cause.errno, "volume append") : new Error(cause.text)),
        onStoreBug: reject,
      });
    });
  }

  readWhole(key: StoreKey, into: Uint8Array, target: StoreTarget, digest?: Uint8Array): void {
    if (digest !== undefined) digest[0] = 0;
    if (this.inVolume(key)) return this.readRecord(into, target, digest);
    const path = this.pathOf(key);
    if (this.inline !== null) {
      const size = this.inline.readCached(path, into);
      if (size >= 0) copyDigest(this.inline.lastDigest, digest);
      if (size !== WOULD_BLOCK) return new ValueDone(target).onIoDone(size);
    }
    this.engine.callbacks.readWholeTo(path, into, new ValueDone(target), digest);
  }

  /** readWhole of the record the index's last get() found: its digests from its header first, when asked for. */
  private readRecord(into: Uint8Array, target: StoreTarget, digest: Uint8Array | undefined): void {
    const index = this.index!;
    const size = index.lastSize;
    if (size > into.length) return target.onStoreDone(size);
    const volume = index.lastVolume;
    const at = index.lastOffset + VOLUME_HEADER_BYTES + index.gotKeyBytes;
    if (digest !== undefined) {
      const now = this.recordFactsNow(digest);
      if (now === WOULD_BLOCK) return this.recordFactsLater(digest, target, () => this.readRecordBody(volume, at, size, into, target));
      if (now !== 0) return failErrno(target, -now);
    }
    this.readRecordBody(volume, at, size, into, target);
  }

  private readRecordBody(volume: number, at: number, size: number, into: Uint8Array, target: StoreTarget): void {
    const files = this.volumeFiles!;
    const fd = files.acquire(volume);
    if (fd < 0) return failErrno(target, -fd);
    this.engine.read(fd, into.subarray(0, size), at).then(
      (n) => {
        files.release(volume);
        if (n === size) target.onStoreDone(size);
        else failErrno(target, constants.errno.EIO);
      },
      (e: unknown) => {
        files.release(volume);
        reportError(target, e);
      },
    );
  }

  beginUpload(key: StoreKey, size: number, owner: UploadOwner, expected: Uint8Array | null = null, digest?: Uint8Array, resumable?: ResumableRequest, md5 = false, expectedMd5: Uint8Array | null = null): UploadSink {
    if (!this.freeSpace.take(size)) return refusedUpload(owner, Failure.NO_SPACE, FREE_SPACE_CAUSE);
    const tmpPath = this.tempPathOf(key);
    let partial: PartialUpload | undefined;
    // A resumable upload's MD5 state would have to be parked with it: an upload asks for one or the other.
    if (resumable !== undefined && this.takesResumable && !md5) {
      const entry = this.partials.register(key.name, tmpPath, size, expected, resumable.clients, Date.now());
      // Past a bound (Partials logs which) the upload is still taken, as an ordinary one: its START
      // has no id, and the client knows there is nothing to resume (refusing it would fail uploads
      // that can succeed).
      if (typeof entry !== "string") {
        partial = entry;
        this.sweepPartialsSoon();
      }
    }
    return this.startStream(key, tmpPath, size, owner, expected, digest, partial, false, md5, expectedMd5);
  }

  /** RESUME (the `resumable` capability's resume). */
  private resumeUpload(id: string, key: StoreKey, owner: UploadOwner, expected: Uint8Array | null, digest?: Uint8Array): UploadSink {
    const entry = this.partials.take(id, key.name, Date.now());
    // Not here: with several loops, the one holding it (the group knows) may hand it over.
    if (entry === null && this.loop !== null) return this.resumeFromLoop(id, key, owner, expected, digest);
    if (entry === null) return refusedUpload(owner, Failure.NO_UPLOAD);
    if (entry === "busy") return refusedUpload(owner, Failure.UPLOAD_BUSY);
    // A digest given with RESUME replaces the one of the first request, if any.
    if (expected !== null) entry.expected = expected;
    return this.startStream(key, entry.tmpPath, entry.size, owner, entry.expected, digest, entry, true);
  }

  /**
   * RESUME of an upload another loop parked (its id names the loop): the group asks that loop to
   * hand it over (file, offset, hash state), and it continues here. A connection gone meanwhile
   * leaves it parked here for the next RESUME.
   */
  private resumeFromLoop(id: string, key: StoreKey, owner: UploadOwner, expected: Uint8Array | null, digest?: Uint8Array): UploadSink {
    const sink = new HandedOverSink(id);
    this.loop!.takeFromLoop(id, key.name).then(
      (h) => {
        if (h === null || h === "busy") {
          sink.settle();
          if (!sink.aborted) owner.onStoreFailed(h === null ? Failure.NO_UPLOAD : Failure.UPLOAD_BUSY, UPLOAD_TABLE_CAUSE);
          return;
        }
        const hasher = this.engine.newHasher();
        if (hasher.state === undefined) {
          sink.settle();
          return sink.aborted || owner.onStoreFailed(Failure.NO_UPLOAD, UPLOAD_TABLE_CAUSE);
        }
        hasher.state.set(h.hashState);
        const entry = this.partials.adopt(h, hasher);
        this.sweepPartialsSoon();
        if (sink.aborted) {
          this.partials.park(entry, h.onDisk, hasher, h.parkedMs);
          return sink.settle();
        }
        if (expected !== null) entry.expected = expected;
        sink.attach(this.startStream(key, entry.tmpPath, entry.size, owner, entry.expected, digest, entry, true));
      },
      (e) => {
        sink.settle();
        if (!sink.aborted) owner.onStoreBug(e);
      },
    );
    return sink;
  }

  private resumableStats(): ResumableStats {
    const p = this.partials;
    return { held: p.size, parked: p.parked, resumed: p.resumed, refused: p.refused, notKept: p.notKept, keptBytes: p.keptBytes };
  }

  /**
   * One page from the index, its lines made by the C library from the facts the index keeps, and
   * for records the digests in their headers, read from the page cache after the index is let go.
   * A header not cached is read on the pool first (never on this thread) and the page asked for
   * again; after LIST_HEADER_ROUNDS such rounds (a cache too small to keep a page's headers) the
   * page waits for the rest on this thread.
   */
  private listPage(index: NativeIndex, request: ListRequest, target: ListTarget, round = 0): void {
    let { after, afterPrefix } = request;
    // The whole key space listed is the default bucket's: the other buckets' names sort before
    // every client key (keys.ts, BUCKET_SPACE), and such a listing starts past them.
    if (request.prefix === "" && after < "\x02") {
      after = BUCKET_SPACE;
      afterPrefix = true;
    }
    let page: ListPage | { misses: number[] };
    try {
      page = index.list(request.prefix, request.delimiter, after, afterPrefix, request.maxKeys, request.bytesMax, round === LIST_HEADER_ROUNDS);
    } catch (e) {
      return target.onStoreBug(e);
    }
    if ("misses" in page) return this.readHeaders(page.misses, target, () => this.listPage(index, request, target, round + 1));
    target.onListed(page);
  }

  /** Reads the headers at `misses` (volume and offset pairs) on the pool, so that the page cache holds them; then(). */
  private readHeaders(misses: number[], target: ListTarget, then: () => void): void {
    const files = this.volumeFiles;
    if (files === null) return then();
    const reads: Promise<unknown>[] = [];
    for (let i = 0; i < misses.length; i += 2) {
      const volume = misses[i]!;
      const fd = files.acquire(volume);
      if (fd < 0) continue; // removed since: the next round lists where the record is now
      this.listHeaderReads++;
      // (A failed read is the next round's to meet: a header that cannot be read is listed without digests.)
      reads.push(this.engine.read(fd, new Uint8Array(VOLUME_HEADER_BYTES), misses[i + 1]!).catch(() => 0).finally(() => files.release(volume)));
    }
    Promise.all(reads).then(then, (e: unknown) => target.onStoreBug(e));
  }

  /**
   * A failing loop: every resumable upload is forgotten, its charges given back and its partial
   * file removed (a RESUME then answers "no such upload", and the client starts again); how many
   * there were.
   */
  private async discardUploads(): Promise<number> {
    const all = this.partials.takeAll(Date.now());
    await Promise.all(all.map((p) => this.engine.unlink(p.tmpPath).catch(() => {})));
    return all.length;
  }

  /** Stops the sweeper and gives the data directory's lock back (a loop that takes its place can take it). */
  close(): void {
    this.compactor?.stop();
    if (this.volumeSweeper !== null) clearInterval(this.volumeSweeper);
    this.volumeSweeper = null;
    this.volumeWriter?.closeNow();
    this.volumeFiles?.closeAll();
    if (this.partialSweeper !== null) clearInterval(this.partialSweeper);
    this.partialSweeper = null;
    this.lock?.release();
    this.lock = null;
  }

  private startStream(key: StoreKey, tmpPath: string, size: number, owner: UploadOwner, expected: Uint8Array | null, digest: Uint8Array | undefined, partial: PartialUpload | undefined, resume: boolean, md5 = false, expectedMd5: Uint8Array | null = null): UploadStream {
    const upload = new UploadStream(this.engine, tmpPath, this.pathOf(key), size, {
      fsync: this.fsyncOnCommit,
      chunkBytesMax: this.chunkBytes,
      writesInFlightMax: this.writesInFlightMax,
      owner,
      zeroCopy: this.spliceUploads ? this.engine.zeroCopy : null,
      expected,
      digest,
      md5,
      expectedMd5,
      partial: partial === undefined ? undefined : { entry: partial, table: this.partials, resume },
      onCommitted: this.index === null ? undefined : (size, sum) => this.fileCommitted(key, size, sum),
      intoRecord: this.volumeWriter === null ? undefined : { bytesMax: this.volumeOptions!.bodyBytesMax, put: (body, sum) => this.putRecord(key, body, sum) },
    });
    upload.open();
    return upload;
  }

  /**
   * Removes parked resumable uploads past resumableTtlMs, with their partial files. Runs on a timer
   * while any resumable upload exists (unref'd: it never keeps the process alive).
   */
  sweepPartials(nowMs = Date.now()): number {
    const expired = this.partials.takeExpired(nowMs);
    for (const p of expired) void this.engine.unlink(p.tmpPath).catch(() => {});
    if (this.partials.size === 0 && this.partialSweeper !== null) {
      clearInterval(this.partialSweeper);
      this.partialSweeper = null;
    }
    return expired.length;
  }

  private sweepPartialsSoon(): void {
    if (this.partialSweeper !== null) return;
    const period = Math.max(100, Math.min(60_000, Math.floor(this.partialTtlMs / 4)));
    this.partialSweeper = setInterval(() => this.sweepPartials(), period);
    this.partialSweeper.unref?.();
  }

  /** Framed sends are answered inline from the kernel's caches: only with sendfile and inline calls. */
  get sendsFramed(): boolean {
    return this.engine.zeroCopy !== null && this.inline !== null;
  }

  openReader(key: StoreKey, digest?: Uint8Array): BodyReader {
    if (digest !== undefined) digest[0] = 0;
    const zeroCopy = this.engine.zeroCopy;
    if (this.inVolume(key)) {
      const index = this.index!;
      const files = this.volumeFiles!;
      const volume = index.lastVolume;
      const fd = files.acquire(volume);
      // The record's body is [at, at + size) of the volume, whose descriptor the store keeps; its
      // digests are read from its header before open() answers (facts), when asked for.
      let facts: Borrowed["facts"] = null;
      if (digest !== undefined && fd >= 0) {
        const now = this.recordFactsNow(digest);
        if (now === WOULD_BLOCK) facts = this.recordFactsRead(digest);
        else if (now !== 0) facts = (done) => done(-now);
      }
      const record: Borrowed = { fd, at: index.lastOffset + VOLUME_HEADER_BYTES + index.gotKeyBytes, size: index.lastSize, release: () => files.release(volume), facts };
      return zeroCopy === null ? new FileReader(this.engine, "", undefined, record) : new SendfileReader(this.engine, zeroCopy, "", this.inline !== null, undefined, record);
    }
    return zeroCopy === null ? new FileReader(this.engine, this.pathOf(key), digest) : new SendfileReader(this.engine, zeroCopy, this.pathOf(key), this.inline !== null, digest);
  }
}

/** Rounds of pool reads a listing page makes for headers not cached, before it waits for them on the loop. */
const LIST_HEADER_ROUNDS = 2;

/** A failure as a target hears it: an errno (a number), or what an engine call threw. */
function failWith(target: StoreTarget, failure: unknown): void {
  if (typeof failure === "number") failErrno(target, failure);
  else reportError(target, failure);
}

/**
 * A part of a file the store keeps open (a volume's record): its body is file[at, at + size), and
 * the reader gives the descriptor back (release) instead of closing it. fd < 0: -errno, for open().
 */
interface Borrowed {
  fd: number;
  at: number;
  size: number;
  release(): void;
  /** What open() does first when the body's digests are still to be read: done(null) once they are in, else done(the failure). */
  facts: ((done: (failure: unknown) => void) => void) | null;
}

/**
 * A streamed download of one file: open, fstat, then reads at an advancing position. One
 * operation at a time; close() mid-operation waits for it and then closes the descriptor. Or of a
 * part of a file the store keeps open (`borrowed`): positions count from its start.
 */
class FileReader implements BodyReader {
  size = 0;
  protected fd = -1;
  protected position = 0;
  /** Where position 0 is in the file: a borrowed part's start, else 0. */
  protected readonly base: number;
  /** Where the body ends: the file's size, or the end of the range asked for. */
  protected end = -1;
  protected inFlight = false;
  protected closing: Promise<void> | null = null;
  private closed!: () => void;

  constructor(
    protected readonly engine: IoEngine,
    protected readonly path: string,
    /** Receives the file's recorded digest on open (DIGEST_BYTES), when given. */
    protected readonly digest: Uint8Array | undefined,
    protected readonly borrowed: Borrowed | null = null,
  ) {
    this.base = borrowed?.at ?? 0;
  }

  open(target: StoreTarget): void {
    const b = this.borrowed;
    if (b !== null) {
      if (b.fd < 0) return failErrno(target, -b.fd);
      this.fd = b.fd;
      this.size = b.size;
      if (b.facts === null) return target.onStoreDone(b.size);
      this.inFlight = true;
      return b.facts((failure) => {
        this.inFlight = false;
        if (this.closing !== null) return this.settleClose();
        if (failure !== null) return failWith(target, failure);
        target.onStoreDone(b.size);
      });
    }
    this.inFlight = true;
    this.engine.open(this.path, "read").then(
      (fd) => {
        this.fd = fd;
        if (this.closing !== null) return this.settleClose();
        this.engine.fstat(fd, this.digest).then(
          (st) => {
            this.inFlight = false;
            if (this.closing !== null) return this.settleClose();
            if (!st.isFile) return target.onStoreFailed(Failure.NOT_A_FILE, causeOfErrno(EISDIR));
            this.size = st.size;
            target.onStoreDone(st.size);
          },
          (e) => this.failed(target, e),
        );
      },
      (e) => this.failed(target, e),
    );
  }

  range(offset: number, length: number): void {
    if (this.inFlight || this.fd < 0 || this.position !== 0) throw new Error("FileReader.range after reading started, or before open");
    this.position = offset;
    this.end = offset + length;
  }

  /** Bytes of the body (or its range) not yet read or sent. */
  protected get left(): number {
    return (this.end >= 0 ? this.end : this.size) - this.position;
  }

  read(into: Uint8Array, target: StoreTarget): void {
    if (this.inFlight || this.fd < 0 || this.closing !== null) throw new Error(`FileReader.read while ${this.inFlight ? "busy" : "closed"}`);
    this.inFlight = true;
    // Never past the body's end (or its range's): a borrowed part has other bytes after it.
    this.engine.read(this.fd, into.length > this.left ? into.subarray(0, Math.max(0, this.left)) : into, this.base + this.position).then(
      (n) => {
        this.inFlight = false;
        if (this.closing !== null) return this.settleClose();
        this.position += n;
        target.onStoreDone(n);
      },
      (e) => this.failed(target, e),
    );
  }

  close(): Promise<void> {
    if (this.closing === null) {
      this.closing = new Promise<void>((resolve) => (this.closed = resolve));
      if (!this.inFlight) this.settleClose();
    }
    return this.closing;
  }

  protected failed(target: StoreTarget, e: unknown): void {
    this.inFlight = false;
    if (this.closing !== null) return this.settleClose();
    reportError(target, e);
  }

  /** Closes the descriptor, if one was opened (gives a borrowed one back); resolves close()'s promise either way. */
  protected settleClose(): void {
    this.inFlight = false;
    const fd = this.fd;
    this.fd = -1;
    if (this.borrowed !== null) {
      if (this.borrowed.fd >= 0) this.borrowed.release();
      return this.closed();
    }
    if (fd < 0) return this.closed();
    this.engine.close(fd).then(this.closed, this.closed);
  }
}

/**
 * A FileReader that can also send its body straight to a socket (sendfile). It opens inline when
 * the path is in the dentry cache (a small download then costs no pool trip at all), sends inline
 * what the socket takes while the pages are cached, and hands the rest to a pool worker through a
 * dup of the socket's descriptor: the runtime may close its own descriptor at any moment (a peer
 * reset), and a worker must never write into a number the kernel has given to another connection.
 */
class SendfileReader extends FileReader {
  private dupSocket = -1;

  constructor(
    engine: IoEngine,
    private readonly zc: ZeroCopyOps,
    path: string,
    /** Inline calls allowed (a local file system, ioInline on): else every step is the pool's. */
    private readonly inlineAllowed: boolean,
    digest: Uint8Array | undefined,
    borrowed: Borrowed | null = null,
  ) {
    super(engine, path, digest, borrowed);
  }

  override open(target: StoreTarget): void {
    if (!this.inlineAllowed || this.borrowed !== null) return super.open(target);
    const fd = this.zc.openCached(this.path);
    if (fd === WOULD_BLOCK) return super.open(target);
    if (fd < 0) return failErrno(target, -fd);
    this.fd = fd;
    this.size = this.zc.lastSize;
    copyDigest(this.zc.lastDigest, this.digest);
    target.onStoreDone(this.size);
  }

  sendTo(socket: number, target: StoreTarget): void {
    if (this.inFlight || this.fd < 0 || this.closing !== null) throw new Error(`SendfileReader.sendTo while ${this.inFlight ? "busy" : "closed"}`);
    const left = this.left;
    const now = this.inlineAllowed ? this.zc.sendfileNow(socket, this.fd, this.base + this.position, left, null, null) : WOULD_BLOCK;
    if (now > 0) {
      this.position += now;
      return target.onStoreDone(now);
    }
    if (now < 0 && now !== WOULD_BLOCK) return failErrno(target, -now);
    if (this.dupSocket < 0) {
      const dup = this.zc.dupNow(socket);
      if (dup < 0) return failErrno(target, -dup);
      this.dupSocket = dup;
    }
    this.inFlight = true;
    this.zc.sendfileTo(this.dupSocket, this.fd, this.base + this.position, left, new SendDone(this, target));
  }

  sendFramedNow(socket: number, head: Uint8Array, tail: Uint8Array): number {
    if (this.inFlight || this.fd < 0 || this.closing !== null) throw new Error(`SendfileReader.sendFramedNow while ${this.inFlight ? "busy" : "closed"}`);
    if (!this.inlineAllowed) return -1;
    const left = this.left;
    const sent = this.zc.sendfileNow(socket, this.fd, this.base + this.position, left, head, tail);
    if (sent < 0) return -1; // not cached, or the socket failed: sendTo meets the failure and reports it
    this.position += Math.min(Math.max(sent - head.length, 0), left);
    return sent;
  }

  /** A pool send completed: count it and pass it on, unless the reader was closed meanwhile. */
  sent(result: number, target: StoreTarget): void {
    this.inFlight = false;
    if (this.closing !== null) return this.settleClose();
    if (result > 0) this.position += result;
    if (result >= 0) target.onStoreDone(result);
    else failErrno(target, -result);
  }

  protected override settleClose(): void {
    if (this.dupSocket >= 0) this.zc.closeNow(this.dupSocket);
    this.dupSocket = -1;
    if (!this.inlineAllowed || this.fd < 0 || this.borrowed !== null) return super.settleClose();
    // Closing a file opened only for reading on a local file system does not wait on the disk:
    // no trip to the pool for it.
    this.zc.closeNow(this.fd);
    this.fd = -1;
    super.settleClose();
  }
}

class SendDone implements IoTarget {
  constructor(
    private readonly reader: SendfileReader,
    private readonly target: StoreTarget,
  ) {}
  onIoDone(result: number): void {
    this.reader.sent(result, this.target);
  }
  onIoBug(error: unknown): void {
    this.target.onStoreBug(error);
  }
}

/**
 * The sink of a RESUME whose upload another loop is handing over: nothing to push until the owner
 * hears onStoreDone(0) from the real stream, which then does everything.
 */
class HandedOverSink implements UploadSink {
  private inner: UploadSink | null = null;
  aborted = false;
  private settled!: () => void;
  private readonly done = new Promise<void>((resolve) => (this.settled = resolve));
  receiveFrom?: (socket: number, target: StoreTarget) => void;

  constructor(readonly uploadId: string) {}

  attach(inner: UploadSink): void {
    this.inner = inner;
    this.receiveFrom = inner.receiveFrom?.bind(inner);
    this.settled();
  }
  /** The hand-over ended without a stream (refused, or left parked here after an abort). */
  settle(): void {
    this.settled();
  }
  get offset(): number | undefined {
    return this.inner?.offset;
  }
  get totalBytes(): number | undefined {
    return this.inner?.totalBytes;
  }
  get backlogBytes(): number {
    return this.inner?.backlogBytes ?? 0;
  }
  push(chunk: Uint8Array): void {
    this.inner!.push(chunk);
  }
  end(): void {
    this.inner!.end();
  }
  async abort(spliceInterrupted?: boolean): Promise<void> {
    this.aborted = true;
    await this.done;
    await this.inner?.abort(spliceInterrupted);
  }
}
