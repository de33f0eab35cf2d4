// The one door to bun:ffi: the symbol table of ffi/fsgw_pool.h, the ABI check, and the doorbell.
// Nothing else in fsgw imports bun:ffi; the C pool engine sees only the NativePool class below.
//
// The doorbell is a threadsafe JSCallback: a worker thread calls it, Bun runs it on the JS thread.
// It carries no data (Bun documents threadsafe callbacks as experimental, so they stay a bell, not
// a data path); the records come out through fsgw_drain into memory JS owns.
import { dlopen, JSCallback, ptr, type Pointer } from "bun:ffi";
import { constants } from "node:os";
import { BUILD_COMMAND, libraryPath, libraryState } from "./build";
import { stableBytes } from "../util/stable-bytes";

const ABI_VERSION = 11;
const SUB_BYTES = 64;
const COMP_BYTES = 16;
/**
 * The layout this binding writes and reads (fsgw_struct_layout's order): sizes and field offsets of
 * fsgw_sub and fsgw_comp in bytes. `stage` and `deliver` index typed arrays by these offsets.
 */
const SUB_OP = 0;
const SUB_FLAGS = 4;
const SUB_FD = 8;
const SUB_SLOT = 12;
const SUB_OFFSET = 16;
const SUB_LEN = 24;
const SUB_BUF = 32;
const SUB_PATH = 40;
const SUB_PATH2 = 48;
const SUB_EXT = 56;
const COMP_SLOT = 0;
const COMP_AUX = 4;
const COMP_RESULT = 8;
const LAYOUT = [SUB_BYTES, SUB_OP, SUB_FLAGS, SUB_FD, SUB_SLOT, SUB_OFFSET, SUB_LEN, SUB_BUF, SUB_PATH, SUB_PATH2, COMP_BYTES, COMP_SLOT, COMP_AUX, COMP_RESULT, SUB_EXT];
const LAYOUT_NAMES = ["sub size", "sub.op", "sub.flags", "sub.fd", "sub.slot", "sub.offset", "sub.len", "sub.buf", "sub.path", "sub.path2", "comp size", "comp.slot", "comp.aux", "comp.result", "sub.ext"];
/** PATH_MAX less its NUL: the longest path the kernel resolves. */
const PATH_BYTES_MAX = 4095;
const ENAMETOOLONG = constants.errno.ENAMETOOLONG;
const EAGAIN = constants.errno.EAGAIN;

export const PoolOp = {
  NOP: 0,
  OPEN: 1,
  PWRITE: 2,
  PREAD: 3,
  FSTAT: 4,
  STAT: 5,
  CLOSE: 6,
  FSYNC: 7,
  RENAME: 8,
  UNLINK: 9,
  COMMIT: 10,
  READ_FILE: 11,
  SENDFILE: 12,
  SPLICE_IN: 13,
  FSETDIGEST: 14,
} as const;
export const OPEN_READ = 0;
export const OPEN_CREATE = 1;
export const OPEN_WRITE = 2;
export const COMMIT_FSYNC = 1;
/** FSGW_COMMIT_MD5: the digest to record is 48 bytes, the SHA-256 and then the body's MD5. */
export const COMMIT_MD5 = 2;

/** Indices of fsgw_pool_stats, in the header's order. */
export const PoolStat = {
  SUBMITTED: 0,
  COMPLETED: 1,
  REFUSED: 2,
  QUEUED: 3,
  QUEUED_HIGH: 4,
  IN_FLIGHT: 5,
  DOORBELLS: 6,
  DRAINS: 7,
  DRAINED: 8,
  THREADS: 9,
  PRIO_FAILED: 10,
  AFFINITY_FAILED: 11,
  NICE_FAILED: 12,
} as const;
const STAT_COUNT = 13;

/** Why the library cannot be loaded as it stands, or null: it is never built here (see build.ts). */
function libraryProblem(): string | null {
  const state = libraryState();
  if (state === "missing") return `the C library is not built (${libraryPath}): run \`${BUILD_COMMAND}\` (needs gcc), or start with --io-engine bun`;
  if (state === "stale") return `the C library ${libraryPath} was built from other sources than ffi/ holds now: run \`${BUILD_COMMAND}\``;
  return null;
}

function load() {
  const problem = libraryProblem();
  if (problem !== null) throw new Error(problem);
  return dlopen(libraryPath, {
    fsgw_abi_version: { args: [], returns: "i32" },
    fsgw_struct_layout: { args: ["ptr", "i32"], returns: "i32" },
    fsgw_fsync_count: { args: [], returns: "f64" },
    fsgw_pool_create: { args: ["i32", "i32", "i32", "i32", "i32", "ptr", "ptr"], returns: "i32" },
    fsgw_pool_join: { args: ["ptr", "i32", "ptr", "ptr"], returns: "i32" },
    fsgw_submit: { args: ["ptr", "u32", "u32", "i32", "ptr", "f64", "f64", "ptr", "ptr", "ptr"], returns: "i32" },
    fsgw_submit_batch: { args: ["ptr", "ptr", "i32"], returns: "i32" },
    fsgw_doorbell_answer: { args: ["ptr"], returns: "void" },
    fsgw_drain: { args: ["ptr", "ptr", "i32"], returns: "i32" },
    fsgw_loop_busy: { args: ["ptr"], returns: "void" },
    fsgw_poll: { args: ["ptr", "ptr", "i32"], returns: "i32" },
    fsgw_pool_set_jobs_per_wake: { args: ["ptr", "i32"], returns: "void" },
    fsgw_pool_set_spin_us: { args: ["ptr", "i32"], returns: "void" },
    fsgw_doorbells_outstanding: { args: ["ptr"], returns: "i32" },
    fsgw_pool_stats: { args: ["ptr", "ptr", "i32"], returns: "i32" },
    fsgw_pool_stop: { args: ["ptr"], returns: "i32" },
    fsgw_pool_free: { args: ["ptr"], returns: "void" },
    fsgw_raise_nofile: { args: ["f64"], returns: "f64" },
    fsgw_lock_file: { args: ["ptr"], returns: "i32" },
    fsgw_stat_cached: { args: ["ptr", "ptr", "ptr"], returns: "f64" },
    fsgw_read_cached: { args: ["ptr", "ptr", "f64", "ptr"], returns: "f64" },
    fsgw_pread_now: { args: ["i32", "ptr", "f64", "f64"], returns: "f64" },
    fsgw_fs_is_local: { args: ["ptr"], returns: "i32" },
    fsgw_confine: { args: ["ptr", "i32"], returns: "i32" },
    fsgw_digest_cache_entries: { args: ["i32"], returns: "void" },
    fsgw_open_cached: { args: ["ptr", "ptr", "ptr"], returns: "i32" },
    fsgw_sha256_init: { args: ["ptr"], returns: "void" },
    fsgw_sha256_update: { args: ["ptr", "ptr", "u64"], returns: "void" },
    fsgw_sha256_digest: { args: ["ptr", "ptr"], returns: "void" },
    fsgw_sha256_of: { args: ["ptr", "u64", "ptr"], returns: "void" },
    fsgw_digests_init: { args: ["ptr"], returns: "void" },
    fsgw_hash_update: { args: ["ptr", "ptr", "u64"], returns: "void" },
    fsgw_digests_md5: { args: ["ptr", "ptr"], returns: "void" },
    fsgw_sha256_accelerated: { args: [], returns: "i32" },
    fsgw_sendfile_now: { args: ["i32", "i32", "f64", "f64", "ptr", "i32", "ptr", "i32"], returns: "f64" },
    fsgw_socket_check: { args: ["i32", "i32", "i32"], returns: "i32" },
    fsgw_dup: { args: ["i32"], returns: "i32" },
    fsgw_splice_probe: { args: ["ptr"], returns: "i32" },
    fsgw_close: { args: ["i32"], returns: "i32" },
    fsgw_index_open: { args: ["ptr", "i32", "i32"], returns: "ptr" },
    fsgw_index_close: { args: ["ptr"], returns: "void" },
    fsgw_index_load: { args: ["ptr", "i32"], returns: "f64" },
    fsgw_index_add: { args: ["ptr", "ptr", "i32", "ptr"], returns: "i32" },
    fsgw_index_remove: { args: ["ptr", "ptr", "i32"], returns: "i32" },
    fsgw_index_has: { args: ["ptr", "ptr", "i32"], returns: "i32" },
    fsgw_index_count: { args: ["ptr"], returns: "f64" },
    fsgw_index_bytes: { args: ["ptr"], returns: "f64" },
    fsgw_index_list: { args: ["ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr"], returns: "i32" },
    fsgw_index_set_volumes: { args: ["ptr", "ptr"], returns: "i32" },
    fsgw_index_get: { args: ["ptr", "ptr", "i32", "ptr"], returns: "i32" },
    fsgw_index_remove_record: { args: ["ptr", "ptr", "i32", "f64"], returns: "i32" },
    fsgw_index_new: { args: [], returns: "ptr" },
    fsgw_index_move_record: { args: ["ptr", "ptr", "i32", "f64", "u32", "f64"], returns: "i32" },
    fsgw_index_volume_usage: { args: ["ptr", "ptr", "i32", "ptr"], returns: "i32" },
    fsgw_volscan_new: { args: [], returns: "ptr" },
    fsgw_volscan_free: { args: ["ptr"], returns: "void" },
    fsgw_volscan_merge: { args: ["ptr", "ptr", "ptr", "i32", "ptr", "i32", "ptr"], returns: "i32" },
    fsgw_index_drop_missing: { args: ["ptr", "ptr", "i32"], returns: "i32" },
    fsgw_index_dead_elsewhere: { args: ["ptr", "ptr", "i32", "u32"], returns: "i32" },
    fsgw_index_dead_add: { args: ["ptr", "ptr", "i32", "u32"], returns: "void" },
    fsgw_index_dead_forget: { args: ["ptr", "u32"], returns: "f64" },
    fsgw_index_dead_limit: { args: ["ptr", "f64"], returns: "void" },
    fsgw_index_dead_stats: { args: ["ptr", "ptr"], returns: "void" },
    fsgw_index_save_records: { args: ["ptr", "ptr", "ptr", "i32"], returns: "f64" },
    fsgw_index_load_records: { args: ["ptr", "ptr", "i32"], returns: "f64" },
    fsgw_volume_encode: { args: ["ptr", "ptr", "ptr", "ptr", "ptr"], returns: "i32" },
    fsgw_volume_scan: { args: ["ptr", "ptr", "u32", "f64", "ptr"], returns: "f64" },
    fsgw_crc32c: { args: ["u32", "ptr", "u64"], returns: "u32" },
  });
}

type Library = ReturnType<typeof load>;
let library: Library | null = null;

/** Loads (building if needed) the library once and checks that its structs match this binding. */
/** Why loading failed, once it has: not retried (each attempt would run gcc again). */
let loadFailure: Error | null = null;

function lib(): Library["symbols"] {
  if (loadFailure !== null) throw loadFailure;
  if (library === null) {
    let l: Library;
    try {
      l = load();
    } catch (e) {
      loadFailure = e as Error;
      throw e;
    }
    const abi = l.symbols.fsgw_abi_version();
    const layout = new Int32Array(LAYOUT.length);
    const n = l.symbols.fsgw_struct_layout(layout, layout.length);
    const wrong = LAYOUT.flatMap((want, i) => (i >= n || layout[i] !== want ? [`${LAYOUT_NAMES[i]} ${i < n ? layout[i] : "missing"} (want ${want})`] : []));
    if (abi !== ABI_VERSION || wrong.length > 0) {
      l.close();
      loadFailure = new Error(`libfsgw_pool ABI mismatch: abi ${abi} (want ${ABI_VERSION})${wrong.length > 0 ? "; " + wrong.join(", ") : ""}`);
      throw loadFailure;
    }
    library = l;
  }
  return library.symbols;
}

/**
 * Why the C library cannot be used here (gcc missing, a build error, an ABI mismatch), or null when
 * it loads. Lets callers with a non-C way to do the same thing choose it.
 */
export function nativeLibraryProblem(): string | null {
  try {
    lib();
    return null;
  } catch (e) {
    return String((e as Error)?.message ?? e).split("\n")[0]!;
  }
}

/**
 * Locks `path` (flock, exclusive, non-blocking; never through a link) for the rest of the process's
 * life. Returns its descriptor (kept open: the lock lives with it), or -errno (-EWOULDBLOCK:
 * another process holds it; -ELOOP: a link).
 */
export function lockFileForProcess(path: string): number {
  return lib().fsgw_lock_file(new TextEncoder().encode(path + "\0"));
}

/**
 * 0 when `fd` is a TCP socket with these local and peer ports (an independent check of a
 * descriptor a runtime reports), -ESTALE for another socket, -errno.
 */
export function socketCheck(fd: number, localPort: number, peerPort: number): number {
  return lib().fsgw_socket_check(fd, localPort, peerPort);
}

/** dup(2), close-on-exec: a descriptor number that stays this socket's while the pool uses it. */
export function dupFd(fd: number): number {
  return lib().fsgw_dup(fd);
}

/** 0 when splice can write files in `dir`, else -errno (fsgw_splice_probe). */
export function spliceProbe(dir: string): number {
  return lib().fsgw_splice_probe(new TextEncoder().encode(dir + "\0"));
}

export function closeFd(fd: number): number {
  return lib().fsgw_close(fd);
}

/** fsync calls the C library made, process-wide (fsgw_fsync_count). */
export function nativeFsyncCount(): number {
  return lib().fsgw_fsync_count();
}

/** Raises the soft RLIMIT_NOFILE toward `want` (capped by the hard limit); returns the limit now in effect. */
export function raiseOpenFileLimit(want: number): number {
  return lib().fsgw_raise_nofile(want);
}

/**
 * Confines `dir` (absolute, no trailing '/'), process-wide: every later operation of the library,
 * pooled or inline, on a path beneath it resolves beneath it and never through a symbolic link
 * (-ELOOP); files created there get `fileMode`. The directory's index (>= 0), or -errno (-ENOSYS:
 * the kernel has no openat2).
 */
export function confineDir(dir: string, fileMode: number): number {
  return lib().fsgw_confine(new TextEncoder().encode(dir + "\0"), fileMode);
}

/**
 * 1 when `path` is on a local file system whose cached lookups and attributes can be trusted
 * (ext4, xfs, btrfs, tmpfs, f2fs, overlayfs), 0 otherwise, -errno when it cannot be examined.
 */
export function fsIsLocal(path: string): number {
  return lib().fsgw_fs_is_local(new TextEncoder().encode(path + "\0"));
}

/**
 * The inline operations of ffi/fsgw_pool.h: called on the event loop's thread, they answer from
 * the kernel's caches or refuse with -EAGAIN, never waiting on a disk. Paths are encoded into one
 * reused buffer and results come back as numbers, so a call allocates nothing.
 */
export class InlineFs {
  private readonly sym = lib();
  private readonly path = new Uint8Array(PATH_BYTES_MAX + 1);
  /** The path without the room for its NUL: what encodeInto may fill. */
  private readonly pathRoom = this.path.subarray(0, PATH_BYTES_MAX);
  private readonly pathPtr = ptr(this.path);
  // Over their own ArrayBuffers: C is handed their addresses once (src/util/stable-bytes.ts).
  private readonly mode = new Int32Array(new ArrayBuffer(4));
  private readonly modePtr = ptr(this.mode);
  private readonly sizeOut = new Float64Array(new ArrayBuffer(8));
  private readonly sizeOutPtr = ptr(this.sizeOut);
  /** FSGW_DIGEST_OUT_BYTES: the facts (flags, digests, mtime) of the last successful call's file. */
  private readonly digestOut = stableBytes(DIGEST_OUT_BYTES);
  private readonly digestOutPtr = ptr(this.digestOut);
  private readonly encoder = new TextEncoder();
  /** Inline calls answered (including with an error such as ENOENT), and refused (sent to the pool). */
  answered = 0;
  refused = 0;

  /** st_mode of the last successful statCached. */
  get lastMode(): number {
    return this.mode[0]!;
  }

  /**
   * The facts (DIGEST_OUT_BYTES: flags, recorded digests, mtime) of the file of the last
   * successful statCached, readCached or openCached: the binding's own buffer, valid until the
   * next call.
   */
  get lastDigest(): Uint8Array {
    return this.digestOut;
  }

  /** The size of `path`, or -errno (-EAGAIN: not cached; ask the pool). */
  statCached(path: string): number {
    if (!this.encodePath(path)) return -ENAMETOOLONG;
    return this.count(this.sym.fsgw_stat_cached(this.pathPtr, this.modePtr, this.digestOutPtr));
  }

  /** Reads `path` whole into `into` if it fits; returns its size, or -errno (-EAGAIN: not cached). */
  readCached(path: string, into: Uint8Array): number {
    if (!this.encodePath(path)) return -ENAMETOOLONG;
    return this.count(this.sym.fsgw_read_cached(this.pathPtr, into, into.length, this.digestOutPtr));
  }

  /** Reads `into.length` bytes of `fd` at `position` from the page cache only: bytes read, or -errno (-EAGAIN: not cached). */
  readNow(fd: number, into: Uint8Array, position: number): number {
    return this.count(this.sym.fsgw_pread_now(fd, into, into.length, position));
  }

  trustedFor(dir: string): number {
    return fsIsLocal(dir);
  }

  /** Opens `path` for reading from the dentry cache only: a descriptor (size in `lastSize`), or -errno. */
  openCached(path: string): number {
    if (!this.encodePath(path)) return -ENAMETOOLONG;
    return this.count(this.sym.fsgw_open_cached(this.pathPtr, this.sizeOutPtr, this.digestOutPtr));
  }

  /** The size fstat reported to the last successful openCached. */
  get lastSize(): number {
    return this.sizeOut[0]!;
  }

  /**
   * Sends head, file[offset, offset + len) and tail to a non-blocking socket when the range is
   * cached: the bytes of the three sent, or -errno (-EAGAIN: not cached, nothing sent).
   */
  sendfileNow(socket: number, file: number, offset: number, len: number, head: Uint8Array | null, tail: Uint8Array | null): number {
    const h = head !== null && head.length > 0 ? head : null;
    const t = tail !== null && tail.length > 0 ? tail : null;
    return this.count(this.sym.fsgw_sendfile_now(socket, file, offset, len, h, h?.length ?? 0, t, t?.length ?? 0));
  }

  closeFd(fd: number): number {
    return this.sym.fsgw_close(fd);
  }

  /** Recorded digests the inline calls remember by inode (fsgw_digest_cache_entries): before the first call. */
  static setDigestCacheEntries(n: number): void {
    lib().fsgw_digest_cache_entries(n);
  }


  private count(result: number): number {
    if (result === -EAGAIN) this.refused++;
    else this.answered++;
    return result;
  }

  private encodePath(path: string): boolean {
    const { read, written } = this.encoder.encodeInto(path, this.pathRoom);
    if (read !== path.length) return false;
    this.path[written] = 0;
    return true;
  }
}

/** fsgw_index_add's answer when a key's file gave way to a volume's record (the file is the caller's to remove). */
export const INDEX_REPLACED_FILE = 3;

/** FSGW_DIGEST_OUT_BYTES: where an operation reads a file's facts (recorded digests, mtime) into. */
export const DIGEST_OUT_BYTES = 57;
/** sizeof(fsgw_sha256), and of fsgw_digests (a SHA-256 with an MD5 beside it, fsgw_md5.h). */
const SHA256_STATE_BYTES = 112;
const DIGESTS_STATE_BYTES = 208;

/**
 * SHA-256 in the C library (SHA-NI when the CPU has it), with `withMd5` an MD5 beside it (the HTTP
 * door's ETag): its state is plain memory owned here, which pool operations (a spliced upload)
 * update too, both digests, and which can be copied or kept.
 */
export class NativeSha256 {
  /** Stable: a pool operation (a spliced upload) writes it while JavaScript holds it. */
  readonly state: Uint8Array;
  private readonly sym = lib();
  constructor(readonly withMd5 = false) {
    this.state = stableBytes(withMd5 ? DIGESTS_STATE_BYTES : SHA256_STATE_BYTES);
    if (withMd5) this.sym.fsgw_digests_init(this.state);
    else this.sym.fsgw_sha256_init(this.state);
  }
  update(bytes: Uint8Array): void {
    if (bytes.length > 0) this.sym.fsgw_hash_update(this.state, bytes, bytes.length);
  }
  copy(): NativeSha256 {
    const c = new NativeSha256(this.withMd5);
    c.state.set(this.state);
    return c;
  }
  /** The MD5 of everything so far, when it computes one. */
  md5(): Uint8Array | null {
    if (!this.withMd5) return null;
    const out = new Uint8Array(16);
    this.sym.fsgw_digests_md5(this.state, out);
    return out;
  }
  /** The digest of everything so far (more may be added afterwards). */
  digest(): Uint8Array {
    const out = stableBytes(32); // it may be handed to a pool operation (a commit records it)
    this.sym.fsgw_sha256_digest(this.state, out);
    return out;
  }
  /**
   * The SHA-256 of a whole body in one call (no context made, updated and finished through three),
   * into `out` (32 bytes of stable memory: C writes it).
   */
  static of(bytes: Uint8Array, out: Uint8Array): void {
    // (An empty body: a valid address that is not read, where an empty array may have none.)
    lib().fsgw_sha256_of(bytes.length > 0 ? bytes : out, bytes.length, out);
  }
  static accelerated(): boolean {
    return lib().fsgw_sha256_accelerated() === 1;
  }
}

export interface PoolOptions {
  threads: number;
  capacity: number;
  priorThreads: number;
  cpuAffinity: boolean;
  /** Nice value (0..19) of the workers that do not ask for SCHED_RR. */
  workerNice: number;
  /** Largest batch handed over in one fsgw_submit_batch call. */
  batchMax: number;
  /** Completion records one fsgw_drain / fsgw_poll call copies out (the size of the JS-owned
   *  record buffer); a drain calls again until the ring is empty. */
  drainBatchMax: number;
  /** Called on the JS thread with every ready completion: slot, result (>= 0 or -errno), aux. */
  onCompletion: (slot: number, result: number, aux: number) => void;
  /** Called once all completions of a doorbell were delivered (slots are free again). */
  onDrained: () => void;
  /**
   * The address of another pool of this process (NativePool.address) whose workers this one
   * shares: another event loop's (fsgw_pool_join). Its own slots, ring and doorbell; `threads`,
   * `priorThreads`, `cpuAffinity` and `workerNice` are then the other pool's.
   */
  join?: number;
}

/** A running fsgw_pool. Submission methods return the slot (>= 0) or -errno. */
export class NativePool {
  private handle: Pointer | null;
  private readonly sym = lib();
  /** The doorbell, held in a field so it lives as long as the pool; closed exactly once. */
  private doorbell: JSCallback | null;
  private stopped = false;
  private readonly comps: Uint8Array;
  private readonly compSlot: Int32Array;
  private readonly compResult: Float64Array;
  private readonly compCapacity: number;
  // The submission ring for batches: records JS fills and fsgw_submit_batch reads in one call.
  private readonly subs: Uint8Array;
  private readonly subU32: Uint32Array;
  private readonly subI32: Int32Array;
  private readonly subF64: Float64Array;
  private readonly statsOut = new Float64Array(STAT_COUNT);
  readonly batchMax: number;

  constructor(private readonly options: PoolOptions) {
    this.batchMax = options.batchMax;
    this.compCapacity = options.drainBatchMax;
    this.comps = new Uint8Array(this.compCapacity * COMP_BYTES);
    this.compSlot = new Int32Array(this.comps.buffer);
    this.compResult = new Float64Array(this.comps.buffer);
    this.subs = new Uint8Array(options.batchMax * SUB_BYTES);
    this.subU32 = new Uint32Array(this.subs.buffer);
    this.subI32 = new Int32Array(this.subs.buffer);
    this.subF64 = new Float64Array(this.subs.buffer);
    this.doorbell = new JSCallback(() => this.onDoorbell(), { args: [], returns: "void", threadsafe: true });
    const out = new BigUint64Array(1);
    const rc =
      options.join === undefined
        ? this.sym.fsgw_pool_create(options.threads, options.capacity, options.priorThreads, options.cpuAffinity ? 1 : 0, options.workerNice, this.doorbell.ptr, ptr(out))
        : this.sym.fsgw_pool_join(options.join as Pointer, options.capacity, this.doorbell.ptr, ptr(out));
    if (rc < 0) {
      this.doorbell.close();
      this.doorbell = null;
      throw new Error(`${options.join === undefined ? "fsgw_pool_create" : "fsgw_pool_join"} failed: errno ${-rc}`);
    }
    this.handle = Number(out[0]) as Pointer;
  }

  /** This pool's address, for another event loop's pool to join (PoolOptions.join). */
  get address(): number {
    return Number(this.handle);
  }

  /** One FFI call per operation. */
  submit(op: number, flags: number, fd: number, buf: Uint8Array | null, len: number, offset: number, path: Uint8Array | null, path2: Uint8Array | null, ext: Uint8Array | null): number {
    return this.sym.fsgw_submit(this.handle, op, flags, fd, buf, len, offset, path, path2, ext);
  }

  /** Fills record `i` of the submission ring (pointers are written as two 32-bit halves). */
  stage(i: number, op: number, flags: number, fd: number, buf: Uint8Array | null, len: number, offset: number, path: Uint8Array | null, path2: Uint8Array | null, ext: Uint8Array | null): void {
    const w = (i * SUB_BYTES) / 4;
    const d = (i * SUB_BYTES) / 8;
    this.subU32[w + SUB_OP / 4] = op;
    this.subU32[w + SUB_FLAGS / 4] = flags;
    this.subI32[w + SUB_FD / 4] = fd;
    this.subI32[w + SUB_SLOT / 4] = -1;
    this.subF64[d + SUB_OFFSET / 8] = offset;
    this.subF64[d + SUB_LEN / 8] = len;
    setPointer(this.subU32, w + SUB_BUF / 4, buf);
    setPointer(this.subU32, w + SUB_PATH / 4, path);
    setPointer(this.subU32, w + SUB_PATH2 / 4, path2);
    setPointer(this.subU32, w + SUB_EXT / 4, ext);
  }

  /** Hands records [0, n) of the ring over in one FFI call; returns how many were accepted. */
  submitStaged(n: number): number {
    return this.sym.fsgw_submit_batch(this.handle, this.subs, n);
  }

  /** The slot record `i` took, after submitStaged accepted it. */
  stagedSlot(i: number): number {
    return this.subI32[(i * SUB_BYTES + SUB_SLOT) / 4]!;
  }

  private onDoorbell(): void {
    try {
      if (this.handle === null) return;
      this.sym.fsgw_doorbell_answer(this.handle);
      this.drain();
      if (this.stopped) this.closeWhenQuiet();
    } catch (e) {
      // An exception must not unwind into Bun's callback machinery; it is a bug: say so and stop.
      console.error("fsgw: doorbell handler failed:", e);
      process.exit(70);
    }
  }

  /** Delivers every ready completion. */
  drain(): void {
    if (this.handle !== null) this.deliver(this.sym.fsgw_drain(this.handle, this.comps, this.compCapacity));
  }

  /**
   * The loop promises to call poll() before it next sleeps; until then workers append completions
   * without ringing the doorbell (the loop is awake and will look).
   */
  markLoopBusy(): void {
    if (this.handle !== null) this.sym.fsgw_loop_busy(this.handle);
  }

  /** Keeps the promise of markLoopBusy: ends it and delivers every ready completion. */
  poll(): void {
    if (this.handle !== null) this.deliver(this.sym.fsgw_poll(this.handle, this.comps, this.compCapacity));
  }

  /** See fsgw_pool_set_jobs_per_wake. */
  setJobsPerWake(n: number): void {
    if (this.handle !== null) this.sym.fsgw_pool_set_jobs_per_wake(this.handle, n);
  }

  /** See fsgw_pool_set_spin_us. */
  setSpinUs(us: number): void {
    if (this.handle !== null) this.sym.fsgw_pool_set_spin_us(this.handle, us);
  }

  /** Hands the `n` records just copied out to onCompletion, then drains until the ring is empty. */
  private deliver(n: number): void {
    if (n <= 0) return;
    do {
      for (let i = 0; i < n; i++) {
        const at = i * COMP_BYTES;
        this.options.onCompletion(this.compSlot[(at + COMP_SLOT) / 4]!, this.compResult[(at + COMP_RESULT) / 8]!, this.compSlot[(at + COMP_AUX) / 4]!);
      }
    } while (this.handle !== null && (n = this.sym.fsgw_drain(this.handle, this.comps, this.compCapacity)) > 0);
    this.options.onDrained();
  }

  stats(): Float64Array {
    if (this.handle !== null) this.sym.fsgw_pool_stats(this.handle, this.statsOut, STAT_COUNT);
    return this.statsOut;
  }

  /**
   * Stops the workers; queued operations complete with -ECANCELED and are delivered now. The pool
   * and the doorbell are freed once no ring is still on its way to the JS thread. Idempotent.
   */
  stop(): void {
    if (this.stopped || this.handle === null) return;
    this.stopped = true;
    this.sym.fsgw_pool_stop(this.handle);
    this.drain();
    this.closeWhenQuiet();
  }

  private closeWhenQuiet(): void {
    if (this.handle === null || this.sym.fsgw_doorbells_outstanding(this.handle) > 0) return;
    const handle = this.handle;
    this.handle = null;
    // Freed outside any doorbell invocation: the callback is not closed while it is running.
    setImmediate(() => {
      this.sym.fsgw_pool_free(handle);
      this.doorbell?.close();
      this.doorbell = null;
    });
  }
}

function setPointer(view: Uint32Array, index: number, bytes: Uint8Array | null): void {
  const p = bytes === null ? 0 : ptr(bytes);
  view[index] = p >>> 0;
  view[index + 1] = Math.floor(p / 0x100000000);
}

/** A store facts buffer's flag: the time is there (store.ts, FACT_MTIME). */
const FACT_MTIME_BIT = 4;

/** int64 LE as two halves: no BigInt per call (sizes, offsets, times, sequence numbers < 2^53). */
function setU64(view: DataView, at: number, value: number): void {
  view.setUint32(at, value >>> 0, true);
  view.setUint32(at + 4, Math.floor(value / 0x100000000), true);
}
function getU64(view: DataView, at: number): number {
  return view.getUint32(at + 4, true) * 0x100000000 + view.getUint32(at, true);
}

/** The bytes of a volume record's header (ffi/fsgw_volume.h). */
export const VOLUME_HEADER_BYTES = 88;
export const VolumeKind = { BODY: 1, TOMBSTONE: 2, SEAL: 3 } as const;
/** "FSV1", a record's first four bytes read as a little-endian number. */
const VOLUME_MAGIC = 0x31565346;

/**
 * A volume record's digests and time, from its header (the index keeps only where it is), into a
 * store's facts buffer (store.ts, DIGEST_BYTES): false when the header is not that of the record
 * the index holds (its magic, kind, key length and sequence number), which is a damaged volume.
 */
export function recordFacts(header: Uint8Array, seq: number, keyBytes: number, facts: Uint8Array, view = new DataView(header.buffer, header.byteOffset, VOLUME_HEADER_BYTES)): boolean {
  if (view.getUint32(0, true) !== VOLUME_MAGIC || header[4] !== VolumeKind.BODY || header[5] !== keyBytes || getU64(view, 8) !== seq) return false;
  const has = header[6]! & 3; // 1: the SHA-256, 2: the MD5 (fsgw_volume.h), as the facts' flags
  if ((has & 1) !== 0) facts.set(header.subarray(32, 64), 1);
  if ((has & 2) !== 0) facts.set(header.subarray(64, 80), 33);
  facts.set(header.subarray(16, 24), 49);
  facts[0] = FACT_MTIME_BIT | has;
  return true;
}

/**
 * Volume records (ffi/fsgw_volume.h) made and read by the C library: one encoder per store
 * instance (its scratch buffers are its own).
 */
export class VolumeCodec {
  private readonly sym = lib();
  private readonly params = new Float64Array(new ArrayBuffer(6 * 8));
  private readonly facts = stableBytes(49);
  private readonly keyBuf = stableBytes(256);
  private readonly encoder = new TextEncoder();
  private static readonly EMPTY = stableBytes(8);

  /** A record's length: 88 + key + body, to a multiple of 8. */
  static recordBytes(keyBytes: number, bodyBytes: number): number {
    return (VOLUME_HEADER_BYTES + keyBytes + bodyBytes + 7) & ~7;
  }

  /**
   * Writes a record into `out` (from its start; room for recordBytes): a body (`digest`: SHA-256,
   * and MD5 after it when 48 bytes), a tombstone (`deletes`: the sequence number of the record it
   * deletes) or the seal (key ""). Returns the record's length.
   */
  encode(out: Uint8Array, kind: number, key: string, body: Uint8Array | null, digest: Uint8Array | null, seq: number, timeMs: number, deletes = 0): number {
    const keyBytes = key === "" ? 0 : this.encoder.encodeInto(key, this.keyBuf).written;
    // C writes the whole record: never past the end of `out`.
    if (out.length < VolumeCodec.recordBytes(keyBytes, body === null ? 0 : body.length)) throw new RangeError(`VolumeCodec.encode: ${out.length} bytes of room for a record of ${VolumeCodec.recordBytes(keyBytes, body === null ? 0 : body.length)}`);
    const facts = this.facts;
    facts[0] = digest === null ? 0 : digest.length >= 48 ? 3 : 1;
    if (digest !== null) facts.set(digest.subarray(0, 32), 1);
    if (digest !== null && digest.length >= 48) facts.set(digest.subarray(32, 48), 33);
    const p = this.params;
    p[0] = kind;
    p[1] = keyBytes;
    p[2] = body === null ? 0 : body.length;
    p[3] = seq;
    p[4] = timeMs;
    p[5] = deletes;
    const n = this.sym.fsgw_volume_encode(out, this.keyBuf, body === null || body.length === 0 ? VolumeCodec.EMPTY : body, facts, p);
    if (n < 0) throw new Error(`fsgw_volume_encode: errno ${-n}`);
    return n;
  }

  /** CRC-32C of bytes, continuing from `crc` (0 to start). */
  crc32c(bytes: Uint8Array, crc = 0): number {
    return this.sym.fsgw_crc32c(crc, bytes.length === 0 ? VolumeCodec.EMPTY : bytes, bytes.length);
  }
}

/** Volume numbers (ascending) as C takes them. */
function volumeIds(volumes: number[]): Uint32Array {
  const ids = new Uint32Array(new ArrayBuffer(4 * Math.max(1, volumes.length)));
  ids.set(volumes);
  return ids;
}

/** What a scan of one volume found (fsgw_volume_scan). */
export interface VolumeScan {
  /** Where its intact records end (the seal's end when sealed), or -errno. */
  end: number;
  bodies: number;
  tombstones: number;
  seqMax: number;
  sealed: boolean;
  fileBytes: number;
  /** The offset of the first record that failed its check, or -1. */
  badAt: number;
}

/**
 * A start-up scan's records of volumes (ffi/fsgw_index.h, fsgw_volscan): every volume is scanned
 * into it, then its live records are merged into the index at once (one sort, no lookups per record).
 */
export class VolumeRecords {
  private readonly sym = lib();
  private handle: Pointer | null;

  constructor() {
    const handle = this.sym.fsgw_volscan_new();
    if (handle === null) throw new Error("fsgw_volscan_new: out of memory");
    this.handle = Number(handle) as Pointer;
  }

  /** Scans the volume file at `path` (number `volume`) into these records, from `from` (a record's start). */
  scan(path: string, volume: number, from = 0): VolumeScan {
    const stats = new Float64Array(new ArrayBuffer(6 * 8));
    const end = this.sym.fsgw_volume_scan(this.handle!, new TextEncoder().encode(path + "\0"), volume, from, stats);
    return { end, bodies: stats[0]!, tombstones: stats[1]!, seqMax: stats[2]!, sealed: stats[3] === 1, fileBytes: stats[4]!, badAt: stats[5]! };
  }

  /**
   * Adds each key's live record to `index`; where a file of the same key stands beside a record, the
   * later stays and the other is returned: "file" (the file lost: remove it) or "record" (the record
   * lost: delete it with a tombstone naming `seq`).
   */
  mergeInto(index: NativeIndex, volumes: number[] = []): { key: string; lost: "file" | "record"; seq: number }[] {
    const cap = 1 << 20;
    const out = stableBytes(cap);
    const used = new Int32Array(new ArrayBuffer(4));
    const ids = volumeIds(volumes);
    const n = this.sym.fsgw_volscan_merge(this.handle!, index.handle, ids, volumes.length, out, cap, used);
    if (n < 0) throw new Error(`merging the volumes' records into the index: errno ${-n}`);
    const view = new DataView(out.buffer);
    const decoder = new TextDecoder();
    const lost: { key: string; lost: "file" | "record"; seq: number }[] = [];
    for (let at = 0; at < used[0]!; at += 10 + out[at + 1]!) {
      const len = out[at + 1]!;
      lost.push({ key: decoder.decode(out.subarray(at + 2, at + 2 + len)), lost: out[at] === 1 ? "file" : "record", seq: getU64(view, at + 2 + len) });
    }
    return lost;
  }

  close(): void {
    if (this.handle !== null) this.sym.fsgw_volscan_free(this.handle);
    this.handle = null;
  }
}

/** FSGW_INDEX_META_BYTES_MAX: size, mtime, flags, digest, MD5 (a volume record's facts are shorter). */
const INDEX_META_BYTES = 65;
/** FSGW_INDEX_RECORD_AT: where a volume record's location starts in its facts (after size, mtime, flags). */
const RECORD_AT = 17;
/** Flags of an entry's facts (fsgw_index.h): a digest, an MD5, a body in a volume. */
const META_DIGEST = 1;
const META_MD5 = 2;
const META_VOLUME = 4;
/** The smallest page buffer fsgw_index_list takes (FSGW_INDEX_PAGE_BYTES_MIN). */
const INDEX_PAGE_BYTES_MIN = 216 + 2 * 255;

/**
 * The file store's ordered index of keys (ffi/fsgw_index.h), one per data directory and process:
 * every event loop of a server shares it (the handle is a pointer, passed to the loops as a number).
 * Keys go in and out as UTF-8 through one reused buffer.
 */
/** What NativeIndex.deadElsewhere found. */
export type DeadBodies = { state: "none" } | { state: "blocked"; volume: number } | { state: "unknown" };

export class NativeIndex {
  private readonly sym = lib();
  // Memory C reads or writes: over ArrayBuffers of their own (stableBytes), so that a subarray
  // taken of them never moves their bytes under a pointer C was given.
  private readonly keyBuf = stableBytes(256);
  /** An entry's facts for fsgw_index_add (FSGW_INDEX_META_BYTES). */
  private readonly meta = stableBytes(INDEX_META_BYTES);
  private readonly metaView = new DataView(this.meta.buffer);
  private readonly texts = stableBytes(3 * 256);
  private readonly params = new Int32Array(new ArrayBuffer(7 * 4));
  /** A listing's records whose headers were not cached: their number, then volume and offset of each. */
  private misses = new Float64Array(new ArrayBuffer(8));
  private readonly encoder = new TextEncoder();
  private readonly decoder = new TextDecoder();
  private pageBuf = stableBytes(0);
  private readonly nextBuf = stableBytes(256);
  private readonly nextLen = new Int32Array(new ArrayBuffer(4));

  /** What the last get() found (see lastSize and the other accessors). */
  private readonly got = stableBytes(INDEX_META_BYTES);
  private readonly gotView = new DataView(this.got.buffer);

  private constructor(readonly handle: Pointer) {}

  /** An index of no directory (fsgw_index_new): a start-up scan's records of volumes. */
  static scratch(): NativeIndex {
    const handle = lib().fsgw_index_new();
    if (handle === null) throw new Error("fsgw_index_new: out of memory");
    return new NativeIndex(Number(handle) as Pointer);
  }

  /** Opens the index of `dir`'s shard directories (a new one), or throws why not. */
  static open(dir: string, shards: number, width: number): NativeIndex {
    const handle = lib().fsgw_index_open(new TextEncoder().encode(dir + "\0"), shards, width);
    if (handle === null) throw new Error(`cannot open the index of ${dir}: a shard directory cannot be opened`);
    return new NativeIndex(Number(handle) as Pointer);
  }

  /** The index another thread opened (its handle as a number). */
  static attach(handle: number): NativeIndex {
    return new NativeIndex(handle as Pointer);
  }

  /** Reads every shard directory, `threads` at a time; the keys now held, or -errno. */
  load(threads: number): number {
    return this.sym.fsgw_index_load(this.handle, threads);
  }

  /**
   * Adds `key` with its file's facts (or gives an existing key these): what a listing will show
   * for it. `digest`: the SHA-256 the file records (32 bytes), with its MD5 after it (48), or null.
   */
  add(key: string, size: number, mtimeMs: number, digest: Uint8Array | null): number {
    const { written } = this.encoder.encodeInto(key, this.keyBuf);
    const meta = this.meta;
    // int64 LE as two halves: no BigInt made per call (sizes and times are below 2^53).
    const ms = Math.floor(mtimeMs);
    this.metaView.setUint32(0, size >>> 0, true);
    this.metaView.setUint32(4, Math.floor(size / 0x100000000), true);
    this.metaView.setUint32(8, ms >>> 0, true);
    this.metaView.setUint32(12, Math.floor(ms / 0x100000000), true);
    meta[16] = digest === null ? 0 : digest.length >= 48 ? 3 : 1;
    if (digest !== null) meta.set(digest.subarray(0, 32), 17);
    if (digest !== null && digest.length >= 48) meta.set(digest.subarray(32, 48), 49);
    return this.sym.fsgw_index_add(this.handle, this.keyBuf, written, meta);
  }

  /**
   * Adds `key` as the body of a volume's record (or gives an existing key these facts), unless the
   * key holds a later record (a larger `seq`): 1 added, 0 replaced, INDEX_REPLACED_FILE (3) replaced
   * the entry of a file (which the caller removes), 2 not applied (a later write).
   * Of its digests (`digestBytes`: 32, a SHA-256; 48, and an MD5; 0, none) the index keeps only which
   * there are: their bytes are in the record's header (FileStore.recordFactsNow reads them), so that
   * an entry takes ~38 bytes beside its key.
   */
  addRecord(key: string, size: number, mtimeMs: number, digestBytes: 0 | 32 | 48, volume: number, offset: number, seq: number): number {
    const { written } = this.encoder.encodeInto(key, this.keyBuf);
    const meta = this.meta;
    const view = this.metaView;
    const ms = Math.floor(mtimeMs);
    setU64(view, 0, size);
    setU64(view, 8, ms);
    meta[16] = META_VOLUME | (digestBytes === 0 ? 0 : digestBytes === 48 ? META_DIGEST | META_MD5 : META_DIGEST);
    view.setUint32(RECORD_AT, volume, true);
    setU64(view, RECORD_AT + 4, offset);
    setU64(view, RECORD_AT + 12, seq);
    return this.sym.fsgw_index_add(this.handle, this.keyBuf, written, meta);
  }

  /**
   * Looks `key` up: true when held, and then its facts are what lastSize, lastMtimeMs,
   * lastInVolume, lastVolume, lastOffset and lastSeq say, and copyFacts copies; false when not held
   * (or, as has, when the index cannot say).
   */
  get(key: string): boolean {
    const { written } = this.encoder.encodeInto(key, this.keyBuf);
    this.gotKeyBytes = written;
    return this.sym.fsgw_index_get(this.handle, this.keyBuf, written, this.got) > 0;
  }

  /** The UTF-8 length of the key of the last get(). */
  gotKeyBytes = 0;

  get lastSize(): number {
    return getU64(this.gotView, 0);
  }
  get lastMtimeMs(): number {
    return getU64(this.gotView, 8);
  }
  get lastInVolume(): boolean {
    return (this.got[16]! & META_VOLUME) !== 0;
  }
  get lastVolume(): number {
    return this.gotView.getUint32(RECORD_AT, true);
  }
  get lastOffset(): number {
    return getU64(this.gotView, RECORD_AT + 4);
  }
  get lastSeq(): number {
    return getU64(this.gotView, RECORD_AT + 12);
  }

  /** Moves `key`'s record `seq` to (volume, offset) (a compaction's copy): 1 when moved, 0 when the key changed since. */
  moveRecord(key: string, seq: number, volume: number, offset: number): number {
    const { written } = this.encoder.encodeInto(key, this.keyBuf);
    return this.sym.fsgw_index_move_record(this.handle, this.keyBuf, written, seq, volume, offset);
  }

  /** Removes every record of a volume not among `volumes` (ascending): how many. */
  dropMissing(volumes: number[]): number {
    const n = this.sym.fsgw_index_drop_missing(this.handle, volumeIds(volumes), volumes.length);
    if (n < 0) throw new Error(`fsgw_index_drop_missing: errno ${-n}`);
    return n;
  }

  /**
   * Whether a tombstone of `key` in `volume` still has a body to delete elsewhere: "none" (no other
   * volume holds a dead body of the key: the tombstone can go), "blocked" with such a volume (it
   * stays while that volume does), or "unknown" (the set of dead bodies was full: it stays).
   */
  deadElsewhere(key: string, volume: number): DeadBodies {
    const { written } = this.encoder.encodeInto(key, this.keyBuf);
    const v = this.sym.fsgw_index_dead_elsewhere(this.handle, this.keyBuf, written, volume);
    return v === 0 ? { state: "none" } : v < 0 ? { state: "unknown" } : { state: "blocked", volume: v };
  }

  /** `key`'s body in `volume` is dead (a write that failed: its record may be there whole). */
  noteDead(key: string, volume: number): void {
    const { written } = this.encoder.encodeInto(key, this.keyBuf);
    this.sym.fsgw_index_dead_add(this.handle, this.keyBuf, written, volume);
  }

  /** `volume` is gone, and its dead bodies with it: how many were noted. */
  forgetDead(volume: number): number {
    return this.sym.fsgw_index_dead_forget(this.handle, volume);
  }

  /** Dead bodies noted at most (volumeDeadRecordsMax). */
  limitDead(max: number): void {
    this.sym.fsgw_index_dead_limit(this.handle, max);
  }

  deadStats(): { bodies: number; bytes: number; full: boolean } {
    const out = new Float64Array(new ArrayBuffer(24));
    this.sym.fsgw_index_dead_stats(this.handle, out);
    return { bodies: out[0]!, bytes: out[1]!, full: out[2] !== 0 };
  }

  /** Writes a checkpoint of the records to `path`: `head`, then every volume record (fsgw_index_save_records). */
  saveRecords(path: string, head: Uint8Array): number {
    return this.sym.fsgw_index_save_records(this.handle, new TextEncoder().encode(path + "\0"), head, head.length);
  }

  /** Adds a checkpoint's records (its head `headBytes` long): how many, or -errno (-EBADMSG: damaged, nothing added). */
  loadRecords(path: string, headBytes: number): number {
    return this.sym.fsgw_index_load_records(this.handle, new TextEncoder().encode(path + "\0"), headBytes);
  }

  /** The bytes of live records in each of `volumes` (ascending), as the index says now. */
  volumeUsage(volumes: number[]): number[] {
    const live = new Float64Array(new ArrayBuffer(8 * Math.max(1, volumes.length)));
    this.sym.fsgw_index_volume_usage(this.handle, volumeIds(volumes), volumes.length, live);
    return Array.from(live.subarray(0, volumes.length));
  }

  /** Removes `key` only while it holds the record `seq` (a later write stays): 1 when removed. */
  removeRecord(key: string, seq: number): number {
    const { written } = this.encoder.encodeInto(key, this.keyBuf);
    return this.sym.fsgw_index_remove_record(this.handle, this.keyBuf, written, seq);
  }

  remove(key: string): number {
    const { written } = this.encoder.encodeInto(key, this.keyBuf);
    return this.sym.fsgw_index_remove(this.handle, this.keyBuf, written);
  }

  /** Whether `key` is held: 1 or 0, or -1 when the index cannot say a key is absent (fsgw_index_has). */
  has(key: string): number {
    const { written } = this.encoder.encodeInto(key, this.keyBuf);
    return this.sym.fsgw_index_has(this.handle, this.keyBuf, written);
  }

  get count(): number {
    return this.sym.fsgw_index_count(this.handle);
  }

  get bytes(): number {
    return this.sym.fsgw_index_bytes(this.handle);
  }

  /**
   * One page as the lines of a LIST answer (ffi/fsgw_index.h): up to `max` entries and common
   * prefixes in at most `bytesMax` bytes, after `after` (a key, or with `afterPrefix` every key
   * under that common prefix); `next`: where the next page starts ("K" + key or "P" + prefix), ""
   * when the listing is complete. `lines` is a fresh copy.
   *
   * Records' digests are read from their headers (setVolumes): unless `wait`, only from the page
   * cache, and when some are not cached the answer is instead `misses`, each a record's volume and
   * offset (flat pairs) to read on the pool before asking again.
   */
  list(prefix: string, delimiter: string, after: string, afterPrefix: boolean, max: number, bytesMax: number, wait = false): { lines: Uint8Array; next: string } | { misses: number[] } {
    const cap = Math.max(bytesMax, INDEX_PAGE_BYTES_MIN);
    if (this.pageBuf.length < cap) this.pageBuf = stableBytes(cap);
    // prefix, delimiter and after back to back, each at most 255 bytes (LIST refuses longer ones).
    const texts = this.texts;
    const p = this.encoder.encodeInto(prefix, texts.subarray(0, 256)).written;
    const d = this.encoder.encodeInto(delimiter, texts.subarray(p, p + 256)).written;
    const a = this.encoder.encodeInto(after, texts.subarray(p + d, p + d + 256)).written;
    const params = this.params;
    params[0] = p;
    params[1] = d;
    params[2] = a;
    params[3] = afterPrefix ? 1 : 0;
    params[4] = max;
    params[5] = cap;
    params[6] = wait ? 1 : 0;
    if (this.misses.length < 1 + 2 * max) this.misses = new Float64Array(new ArrayBuffer(8 * (1 + 2 * max)));
    const n = this.sym.fsgw_index_list(this.handle, texts, params, this.pageBuf, this.nextBuf, this.nextLen, this.misses);
    if (n === -EAGAIN) return { misses: Array.from(this.misses.subarray(1, 1 + 2 * this.misses[0]!)) };
    if (n < 0) throw new Error(`fsgw_index_list: errno ${-n}`);
    const next = this.nextLen[0]! === 0 ? "" : this.decoder.decode(this.nextBuf.subarray(0, this.nextLen[0]!));
    return { lines: this.pageBuf.slice(0, n), next };
  }

  /** Where a listing reads records' digests: the volumes' directory (never through a link). 0, or -errno. */
  setVolumes(dir: string): number {
    return this.sym.fsgw_index_set_volumes(this.handle, new TextEncoder().encode(dir + "\0"));
  }

  close(): void {
    this.sym.fsgw_index_close(this.handle);
  }
}
