import { constants } from "node:os";
import { IoError, ioErrorFromErrno } from "./io-error";
import { stableBytes } from "../util/stable-bytes";

// The seam between the protocol and the disk. Every file operation of the server goes through an
// IoEngine, so the Bun-native engine, the C thread pool and the synchronous baseline are
// interchangeable and measured against each other under the same workload.
//
// Operations resolve with their result or reject with an IoError (see io-error.ts). A buffer handed
// to an engine belongs to it until the operation settles: callers neither reuse nor drop it before.

export type OpenMode =
  /** O_RDONLY */
  | "read"
  /** O_CREAT | O_EXCL, mode 0644, written (and read back, by the C pool: a spliced body is hashed so): a temporary file nobody else may share */
  | "create"
  /** O_RDWR of an existing file: a resumed upload's temporary file */
  | "write"
  /** O_RDONLY | O_DIRECTORY: a directory, to fsync it */
  | "directory";

export interface FileStat {
  size: number;
  isFile: boolean;
  isDir: boolean;
}

/** st_mode's file-type bits: how the C pool and the callback forms report a file's type. */
export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;

/** A FileStat from a size and st_mode, and back (the type bits only). */
export function fileStatOf(size: number, mode: number): FileStat {
  const type = mode & S_IFMT;
  return { size, isFile: type === S_IFREG, isDir: type === S_IFDIR };
}
export function modeOf(st: FileStat): number {
  return st.isFile ? S_IFREG : st.isDir ? S_IFDIR : 0;
}

/** What an inline operation returns when answering would wait on a disk: use the async method. */
export const WOULD_BLOCK = -constants.errno.EAGAIN;

/**
 * Optional capability: operations answered on the calling (event-loop) thread from the kernel's
 * caches, or refused with WOULD_BLOCK without having waited. Results are numbers (a size, or
 * -errno), not exceptions or objects: a missing key is an everyday answer and allocates nothing.
 */
export interface InlineOps {
  /** The size of `path`, or -errno; on success `lastMode` holds its st_mode. */
  statCached(path: string): number;
  readonly lastMode: number;
  /** Reads `path` whole into `into` when it fits; returns its size, or -errno (-EISDIR: not a file). */
  readCached(path: string, into: Uint8Array): number;
  /** The facts (DIGEST_OUT_BYTES) of the last successful call's file: valid until the next call. */
  readonly lastDigest: Uint8Array;
  /** Reads `into.length` bytes of `fd` at `position` from the page cache only: the bytes read, or -errno (WOULD_BLOCK: not cached). */
  readNow(fd: number, into: Uint8Array, position: number): number;
  /**
   * 1 when `dir` is on a local file system whose cached lookups and attributes can be trusted, 0
   * when not (a network file system: its cached attributes may be stale), -errno when unknown.
   */
  trustedFor(dir: string): number;
}

/**
 * The receiver of a callback-form operation: called once, on the event-loop thread, with the result
 * (>= 0: a size, a count or 0; < 0: -errno) and, for stat, the file's st_mode in `aux`. It must not
 * throw: the engine delivers other completions in the same breath.
 */
export interface IoTarget {
  onIoDone(result: number, aux: number): void;
  /**
   * The engine's own code failed (an exception that is no errno: a bug of a JavaScript engine; the
   * C pool has none of these): the operation is over.
   */
  onIoBug(error: unknown): void;
}

/**
 * Optional capability: the operations an exchange makes in one call, in callback form. No promise,
 * no closure and no error object per operation: a missing key is the number -ENOENT.
 */
export interface CallbackOps {
  /** `digestOut` (DIGEST_OUT_BYTES, or absent): receives the file's recorded digest (see Hasher). */
  statTo(path: string, target: IoTarget, digestOut?: Uint8Array): void;
  unlinkTo(path: string, target: IoTarget): void;
  /** `digest` (32 bytes, or 48 with the MD5 after the SHA-256; or absent): recorded with the file before the rename (aux ENOTSUP: the file system cannot). */
  commitFileTo(tmpPath: string, finalPath: string, data: Uint8Array, fsync: boolean, target: IoTarget, digest?: Uint8Array): void;
  /** readWhole's callback form: the file's size (bytes in `into` when it fits), or -errno. */
  readWholeTo(path: string, into: Uint8Array, target: IoTarget, digestOut?: Uint8Array): void;
}

/**
 * Digests. A stored file's SHA-256 travels with it (the C library records it as an extended
 * attribute: ffi/fsgw_pool.h, "Digests"). Where an operation takes `digestOut`, it is
 * DIGEST_OUT_BYTES long, laid out as the store's facts (src/storage/store.ts, DIGEST_BYTES); the
 * caller sets byte 0 to 0 first, so an engine that records no digests leaves "none".
 */
export const DIGEST_OUT_BYTES = 57;

/** SHA-256 of a body as it streams. A `state` is the C library's: pool operations can update it. */
export interface Hasher {
  update(bytes: Uint8Array): void;
  /** The digest of everything so far (more may be added afterwards). */
  digest(): Uint8Array;
  /** An independent hasher in the same state (a resumable upload keeps one while it is parked). */
  copy(): Hasher;
  readonly state?: Uint8Array;
  /** Present when it computes the body's MD5 beside its SHA-256 (newHasher(true) of an engine that can). */
  md5?(): Uint8Array | null;
}

/** digestOf with Bun's own SHA-256 (BoringSSL), for engines without the C library. */
export function bunDigestOf(bytes: Uint8Array, out: Uint8Array): void {
  Bun.CryptoHasher.hash("sha256", bytes, out);
}

/** Bun's own SHA-256 (BoringSSL), for engines without the C library. */
export class BunHasher implements Hasher {
  constructor(private readonly h = new Bun.CryptoHasher("sha256")) {}
  copy(): Hasher {
    return new BunHasher(this.h.copy());
  }
  update(bytes: Uint8Array): void {
    this.h.update(bytes);
  }
  digest(): Uint8Array {
    const out = stableBytes(32);
    out.set(this.h.copy().digest());
    return out;
  }
}

/** What an engine reports about itself (/debug/stats, /metrics); fields an engine lacks are absent. */
export interface EngineStats {
  name: string;
  threads?: number;
  submitMode?: string;
  operationsInFlight?: number;
  queueDepth?: number;
  queueDepthHigh?: number;
  submitted?: number;
  completed?: number;
  refusedFull?: number;
  blockedInJs?: number;
  blockedInJsHigh?: number;
  doorbells?: number;
  drains?: number;
  drainedRecords?: number;
  recordsPerDrain?: number;
  batches?: number;
  operationsPerBatch?: number;
  /** Operations answered on the event loop from the kernel's caches (ioInline), and refused to the pool. */
  inlineAnswered?: number;
  inlineRefused?: number;
  /** fsync calls that succeeded (files and directories): durable commits make two each. */
  fsyncs: number;
}

/**
 * Optional capability: a file's bytes sent straight to a socket (sendfile), never through
 * JavaScript. Descriptors in, numbers out; the caller owns every descriptor.
 */
export interface ZeroCopyOps {
  /** Inline: opens `path` for reading from the dentry cache: a descriptor (size in lastSize, digest in lastDigest), or -errno (WOULD_BLOCK: ask the pool). */
  openCached(path: string): number;
  readonly lastSize: number;
  readonly lastDigest: Uint8Array;
  /**
   * Inline: sends head, then the file's range, then tail (frames around a body; null for none), as
   * far as the socket takes them now, if the range is in the page cache: the bytes of the three
   * sent, or -errno when none went (WOULD_BLOCK: not cached).
   */
  sendfileNow(socket: number, file: number, offset: number, len: number, head: Uint8Array | null, tail: Uint8Array | null): number;
  /** On the pool: sends, waiting for the socket up to a bound at a time; the target gets the bytes sent (maybe fewer than len) or -errno. */
  sendfileTo(socket: number, file: number, offset: number, len: number, target: IoTarget): void;
  /**
   * On the pool: moves up to len bytes from the socket into the file at offset (splice, through a
   * pipe); the target gets the bytes taken from the socket (maybe fewer, 0 after a bounded wait) or
   * -errno, and as aux the errno of a file that refused them (they were taken, not stored).
   */
  spliceTo(socket: number, file: number, offset: number, len: number, target: IoTarget, hash?: Hasher): void;
  /** 0 when spliceTo can write files in `dir` (start-up probe), else -errno. */
  spliceWorksIn(dir: string): number;
  /** dup(2): a number that stays this socket's while the pool uses it, whatever the runtime closes. */
  dupNow(fd: number): number;
  /** close(2), at once: 0 or -errno. */
  closeNow(fd: number): number;
}

export interface IoEngine {
  readonly name: string;
  /**
   * Confines `dir` (absolute): every later operation on a path beneath it resolves beneath it and
   * never through a symbolic link: a link anywhere below `dir` (a planted file, a directory replaced
   * by a link) fails with ELOOP, and nothing outside `dir` is touched. Files created beneath it get
   * `fileMode` (less the umask). Returns 0, or -errno when the engine cannot promise that here.
   */
  confine(dir: string, fileMode: number): number;
  /** sendfile and friends, when the engine has them. */
  readonly zeroCopy: ZeroCopyOps | null;
  /**
   * The one-call operations in callback form: native (the C pool: a number per operation, no
   * promise), or adapted from the promise forms (callbacksFromPromises): every engine has them, so
   * a store calls them one way.
   */
  readonly callbacks: CallbackOps;
  /** Inline operations, when this engine has them and they are enabled (ioInline). */
  readonly inline: InlineOps | null;
  open(path: string, mode: OpenMode): Promise<number>;
  /** Writes all of `data` at `position` (short writes are continued by the engine). */
  write(fd: number, data: Uint8Array, position: number): Promise<void>;
  /** Reads up to `into.length` bytes at `position`; resolves with the count, 0 at end of file. */
  read(fd: number, into: Uint8Array, position: number): Promise<number>;
  /** `digestOut`: the file's recorded digest, when the engine records digests (see DIGEST_OUT_BYTES). */
  fstat(fd: number, digestOut?: Uint8Array): Promise<FileStat>;
  stat(path: string): Promise<FileStat>;
  close(fd: number): Promise<void>;
  fsync(fd: number): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /**
   * Creates `tmpPath`, writes all of `data`, fsyncs when asked, closes and renames it onto
   * `finalPath`, and when asked fsyncs its directory too (so the rename is durable): a whole small
   * upload in one call. On failure the temporary file is removed.
   */
  commitFile(tmpPath: string, finalPath: string, data: Uint8Array, fsync: boolean): Promise<void>;
  /**
   * Opens `path`, and if it is a regular file of at most `into.length` bytes reads it whole into
   * `into`, and closes it: a whole small download in one call. Resolves with the file's size; the
   * bytes are in `into` only when that size fits. A directory is EISDIR.
   */
  readWhole(path: string, into: Uint8Array): Promise<number>;
  /**
   * A SHA-256 hasher; with `md5`, one that computes the MD5 beside it if this engine can (its
   * md5()). The C pool's can be updated by its operations (a spliced upload).
   */
  newHasher(md5?: boolean): Hasher;
  /**
   * The SHA-256 of a whole body into `out` (32 bytes of stable memory: stableBytes), one call, no
   * hasher: the caller's memory, so that a small upload allocates none for it.
   */
  digestOf(bytes: Uint8Array, out: Uint8Array): void;
  /**
   * Records a file's digest with it (before its rename), when the engine can: absent when it
   * cannot (then stored files have none, and answers carry none). Rejects with ENOTSUP when the
   * file system keeps no user attributes.
   */
  setDigest?(fd: number, digest: Uint8Array): Promise<void>;
  /** The engine's own numbers, for /debug/stats and /metrics. */
  stats(): EngineStats;
  /** Stops the engine; operations still queued fail with ECANCELED. Idempotent. */
  shutdown(): Promise<void>;
}

/** st_mode's type bits of a FileStat, for a callback's `aux`. */
function modeBitsOf(st: FileStat): number {
  return st.isFile ? S_IFREG : st.isDir ? S_IFDIR : 0;
}

/**
 * The callback forms of an engine without native ones, from its promise forms: one promise per
 * operation (these engines make one anyway), the result a number as the C pool gives it.
 */
export function callbacksFromPromises(engine: IoEngine): CallbackOps {
  const settle = (p: Promise<number>, target: IoTarget, aux = () => 0) =>
    p.then(
      (value) => target.onIoDone(value, aux()),
      (e: unknown) => {
        const errno = (e as { errno?: unknown }).errno;
        if (e instanceof IoError && typeof errno === "number") target.onIoDone(-errno, 0);
        else target.onIoBug(e);
      },
    );
  return {
    statTo(path, target) {
      let mode = 0;
      void settle(
        engine.stat(path).then((st) => ((mode = modeBitsOf(st)), st.size)),
        target,
        () => mode,
      );
    },
    unlinkTo(path, target) {
      void settle(engine.unlink(path).then(() => 0), target);
    },
    commitFileTo(tmpPath, finalPath, data, fsync, target) {
      void settle(engine.commitFile(tmpPath, finalPath, data, fsync).then(() => data.length), target);
    },
    readWholeTo(path, into, target) {
      void settle(engine.readWhole(path, into), target);
    },
  };
}

/**
 * The commit sequence, the one TS copy of it (ffi/fsgw_pool.c's do_commit is the C one): create,
 * write, then `finishCommit`. For engines without a native compound operation.
 */
export async function commitFileFromPrimitives(
  engine: IoEngine,
  tmpPath: string,
  finalPath: string,
  data: Uint8Array,
  fsync: boolean,
): Promise<void> {
  const fd = await engine.open(tmpPath, "create");
  try {
    await engine.write(fd, data, 0);
  } catch (e) {
    await engine.close(fd).catch(() => {});
    await engine.unlink(tmpPath).catch(() => {});
    throw e;
  }
  await finishCommit(engine, fd, tmpPath, finalPath, fsync);
}

/**
 * The second half of a commit, for a temporary file whose bytes are all written: fsync it (when
 * asked), close it, rename it onto `finalPath`, and fsync its directory (when asked) so the rename
 * is durable too. On failure the descriptor is closed and the temporary file removed, then the
 * error is thrown; either way `fd` is closed when this settles.
 */
export async function finishCommit(engine: IoEngine, fd: number, tmpPath: string, finalPath: string, fsync: boolean): Promise<void> {
  let open = true;
  try {
    if (fsync) await engine.fsync(fd);
    open = false;
    await engine.close(fd);
    await engine.rename(tmpPath, finalPath);
  } catch (e) {
    if (open) await engine.close(fd).catch(() => {});
    await engine.unlink(tmpPath).catch(() => {});
    throw e;
  }
  if (fsync) await fsyncParentDir(engine, finalPath);
}

/** fsyncs the directory holding `path`, so that a rename into it survives a crash. */
async function fsyncParentDir(engine: IoEngine, path: string): Promise<void> {
  const fd = await engine.open(path.slice(0, Math.max(1, path.lastIndexOf("/"))), "directory");
  try {
    await engine.fsync(fd);
  } finally {
    await engine.close(fd).catch(() => {});
  }
}

/** readWhole from the primitives, for engines without a native compound operation. */
export async function readWholeFromPrimitives(engine: IoEngine, path: string, into: Uint8Array): Promise<number> {
  const fd = await engine.open(path, "read");
  try {
    const st = await engine.fstat(fd);
    if (!st.isFile) throw ioErrorFromErrno(-constants.errno.EISDIR, "read");
    if (st.size > into.length) return st.size;
    let done = 0;
    while (done < st.size) {
      const n = await engine.read(fd, into.subarray(done, st.size), done);
      if (n === 0) throw ioErrorFromErrno(-constants.errno.EIO, "read"); // shrank under us
      done += n;
    }
    return st.size;
  } finally {
    await engine.close(fd).catch(() => {});
  }
}
