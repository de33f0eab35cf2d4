// Engine "cpool": file operations run on the C thread pool (ffi/), reached through the one bun:ffi
// door (src/ffi/pool-binding.ts); exist and small reads may first be answered inline (`inline`,
// InlineFs) from the kernel's caches, and come here only when that is refused.
//
//   submit ──▶ C queue (waitingQueueLen slots) ──▶ workers ──▶ completion ring ──▶ doorbell
//      │ full (-EAGAIN): the operation waits in `blocked`, in order, until a drain frees slots
//   drain (doorbell) or poll (end of turn) ──▶ `completions` channel ──▶ one consumer reports
//   each operation: a number to its IoTarget (callback form), or its promise settled
//
// Waiting costs nothing: an idle engine has no timer firing, no thread spinning; workers sleep on a
// condition variable and the JS thread hears only the doorbell. While operations are in flight a
// ref'd keep-alive timer (period ~12 days, so it never actually fires) holds the event loop open,
// because a pending threadsafe callback alone does not.
//
// Submission (SubmitMode, measured by scripts/bench-exchanges.ts):
//   direct:   one FFI call per operation, its completion by doorbell;
//   batch:    operations gathered during one event-loop turn, handed over in one FFI call through
//             the submission ring at the end of the turn (setImmediate, or at once when
//             submitBatchMax are staged), where the completion ring is polled too: while that poll
//             is promised, workers ring no doorbell;
//   adaptive: batch for the callback-form operations, direct for the rest (streamed bodies).
import { constants } from "node:os";
import { closeFd, COMMIT_FSYNC, COMMIT_MD5, confineDir, dupFd, spliceProbe, InlineFs, nativeFsyncCount, NativePool, NativeSha256, OPEN_CREATE, OPEN_READ, OPEN_WRITE, PoolOp, PoolStat } from "../ffi/pool-binding";
import { Channel, ChannelClosedError } from "../util/channel";
import { fileStatOf, type CallbackOps, type EngineStats, type FileStat, type Hasher, type ZeroCopyOps, type IoEngine, type IoTarget, type OpenMode } from "./io-engine";
import { ioErrorFromErrno } from "./io-error";

const EAGAIN = constants.errno.EAGAIN;
const ECANCELED = constants.errno.ECANCELED;
const KEEPALIVE_PERIOD_MS = 1 << 30;

const opNames = ["nop", "open", "write", "read", "fstat", "stat", "close", "fsync", "rename", "unlink", "commit", "read", "sendfile", "splice", "fsetdigest"];

/**
 * direct: each operation handed over at once, completions by doorbell. batch: every operation
 * staged until the end of the event-loop turn and handed over in one call, completions polled
 * then. adaptive: an exchange's one-call operations (stat, unlink, commit of a small upload:
 * many, independent) are batched; the reads and writes of a streamed body (a chain, each waiting on
 * the last) go at once.
 */
export type SubmitMode = "direct" | "batch" | "adaptive";

export interface CPoolOptions {
  threads: number;
  capacity: number;
  priorThreads: number;
  cpuAffinity: boolean;
  workerNice: number;
  submitMode: SubmitMode;
  batchMax: number;
  /** Completion records copied out per FFI call. */
  drainBatchMax: number;
  /** cached: inline operations on; off: every operation goes to the pool. */
  inline: InlineMode;
  /** See fsgw_pool_set_jobs_per_wake. */
  jobsPerWake: number;
  /** See fsgw_pool_set_spin_us. */
  spinUs: number;
  /** Recorded digests the inline calls remember by inode (digestCacheEntries; default 65536). */
  digestCacheEntries?: number;
  /** Share the workers of another engine's pool in this process (its `poolAddress`): one loop of several. */
  joinPool?: number;
}

export type InlineMode = "cached" | "off";

/** One operation from submission to settlement. It keeps its buffers alive while C holds pointers. */
class PendingOp {
  result = 0;
  aux = 0;
  resolve!: (value: unknown) => void;
  reject!: (error: Error) => void;
  constructor(
    readonly kind: number,
    readonly flags: number,
    readonly fd: number,
    readonly buf: Uint8Array | null,
    readonly len: number,
    readonly offset: number,
    readonly path: Uint8Array | null,
    readonly path2: Uint8Array | null,
    /** Callback form: the receiver of the result. Promise form (null): resolve and reject. */
    readonly target: IoTarget | null,
    /** The operation's extra memory (fsgw_sub.ext): digest in or out, a hash state; kept alive here. */
    readonly ext: Uint8Array | null = null,
  ) {}
}

const encoder = new TextEncoder();
function cPath(path: string): Uint8Array {
  return encoder.encode(path + "\0");
}

/** What an operation's promise resolves with: a count, a descriptor, a FileStat, or nothing. */
function valueOf(op: PendingOp): unknown {
  switch (op.kind) {
    case PoolOp.OPEN:
    case PoolOp.PREAD:
    case PoolOp.READ_FILE:
    case PoolOp.NOP:
      return op.result;
    case PoolOp.FSTAT:
    case PoolOp.STAT: {
      return fileStatOf(op.result, op.aux);
    }
    default:
      return undefined;
  }
}

export class CPoolEngine implements IoEngine, CallbackOps, ZeroCopyOps {
  readonly name = "cpool";
  readonly inline: InlineFs | null;
  readonly callbacks: CallbackOps = this;
  readonly zeroCopy: ZeroCopyOps = this;
  /** The inline calls, also when ioInline is off (zero-copy needs them; the C hook still refuses);
   *  one instance, so /debug/stats counts every inline call. */
  private readonly fs = new InlineFs();
  private readonly pool: NativePool;
  /** The operation in each C slot, from submission until its completion is drained. */
  private readonly bySlot: (PendingOp | undefined)[];
  /** Operations refused with -EAGAIN, oldest first; resubmitted as drains free slots. */
  private readonly blocked: PendingOp[] = [];
  private blockedHead = 0;
  /** Batch mode: operations staged in the submission ring this turn. */
  private readonly staged: PendingOp[] = [];
  private flushScheduled = false;
  private readonly completions: Channel<PendingOp>;
  private readonly keepAlive: ReturnType<typeof setInterval>;
  private inFlight = 0;
  private stopped = false;
  // Counters for stats.
  blockedHigh = 0;
  batches = 0;
  batchedOps = 0;

  constructor(private readonly options: CPoolOptions) {
    if (options.digestCacheEntries !== undefined) InlineFs.setDigestCacheEntries(options.digestCacheEntries);
    this.bySlot = new Array(options.capacity);
    this.completions = new Channel<PendingOp>(options.capacity);
    this.pool = new NativePool({
      threads: options.threads,
      capacity: options.capacity,
      priorThreads: options.priorThreads,
      cpuAffinity: options.cpuAffinity,
      workerNice: options.workerNice,
      batchMax: options.batchMax,
      drainBatchMax: options.drainBatchMax,
      onCompletion: (slot, result, aux) => this.onCompletion(slot, result, aux),
      onDrained: () => this.unblock(),
      join: options.joinPool,
    });
    this.pool.setJobsPerWake(options.jobsPerWake);
    this.pool.setSpinUs(options.spinUs);
    this.inline = options.inline === "off" ? null : this.fs;
    this.keepAlive = setInterval(() => {}, KEEPALIVE_PERIOD_MS);
    this.keepAlive.unref();
    void this.deliver();
  }

  /** The address of this engine's C pool, for another loop's engine to share its workers (joinPool). */
  get poolAddress(): number {
    return this.pool.address;
  }

  /** The C pool's counters (see PoolStat), read now. */
  nativeStats(): Float64Array {
    return this.pool.stats();
  }

  stats(): EngineStats {
    const n = this.pool.stats();
    const drains = n[PoolStat.DRAINS]!;
    return {
      name: this.name,
      threads: n[PoolStat.THREADS]!,
      submitMode: this.options.submitMode,
      operationsInFlight: this.inFlight,
      queueDepth: n[PoolStat.QUEUED]!,
      queueDepthHigh: n[PoolStat.QUEUED_HIGH]!,
      submitted: n[PoolStat.SUBMITTED]!,
      completed: n[PoolStat.COMPLETED]!,
      refusedFull: n[PoolStat.REFUSED]!,
      blockedInJs: this.blockedCount,
      blockedInJsHigh: this.blockedHigh,
      doorbells: n[PoolStat.DOORBELLS]!,
      drains,
      drainedRecords: n[PoolStat.DRAINED]!,
      recordsPerDrain: drains > 0 ? n[PoolStat.DRAINED]! / drains : 0,
      batches: this.batches,
      operationsPerBatch: this.batches > 0 ? this.batchedOps / this.batches : 0,
      inlineAnswered: this.inline?.answered ?? 0,
      inlineRefused: this.inline?.refused ?? 0,
      fsyncs: nativeFsyncCount(),
    };
  }

  get operationsInFlight(): number {
    return this.inFlight;
  }

  get blockedCount(): number {
    return this.blocked.length - this.blockedHead;
  }

  // ---- IoEngine ----
  // Each method returns the operation's own promise: one promise per operation, no async wrappers.

  confine(dir: string, fileMode: number): number {
    const rc = confineDir(dir, fileMode);
    return rc >= 0 ? 0 : rc;
  }

  open(path: string, mode: OpenMode): Promise<number> {
    return this.submit(PoolOp.OPEN, mode === "create" ? OPEN_CREATE : mode === "write" ? OPEN_WRITE : OPEN_READ, -1, null, 0, 0, cPath(path), null);
  }
  write(fd: number, data: Uint8Array, position: number): Promise<void> {
    return this.submit(PoolOp.PWRITE, 0, fd, data, data.length, position, null, null);
  }
  read(fd: number, into: Uint8Array, position: number): Promise<number> {
    return this.submit(PoolOp.PREAD, 0, fd, into, into.length, position, null, null);
  }
  fstat(fd: number, digestOut?: Uint8Array): Promise<FileStat> {
    return this.submit(PoolOp.FSTAT, 0, fd, null, 0, 0, null, null, digestOut ?? null);
  }
  stat(path: string): Promise<FileStat> {
    return this.submit(PoolOp.STAT, 0, -1, null, 0, 0, cPath(path), null);
  }
  close(fd: number): Promise<void> {
    return this.submit(PoolOp.CLOSE, 0, fd, null, 0, 0, null, null);
  }
  fsync(fd: number): Promise<void> {
    return this.submit(PoolOp.FSYNC, 0, fd, null, 0, 0, null, null);
  }
  rename(from: string, to: string): Promise<void> {
    return this.submit(PoolOp.RENAME, 0, -1, null, 0, 0, cPath(from), cPath(to));
  }
  unlink(path: string): Promise<void> {
    return this.submit(PoolOp.UNLINK, 0, -1, null, 0, 0, cPath(path), null);
  }
  commitFile(tmpPath: string, finalPath: string, data: Uint8Array, fsync: boolean): Promise<void> {
    return this.submit(PoolOp.COMMIT, fsync ? COMMIT_FSYNC : 0, -1, data, data.length, 0, cPath(tmpPath), cPath(finalPath));
  }
  readWhole(path: string, into: Uint8Array): Promise<number> {
    return this.submit(PoolOp.READ_FILE, 0, -1, into, into.length, 0, cPath(path), null);
  }
  // Callback forms (CallbackOps): the result reaches the target as a number.
  statTo(path: string, target: IoTarget, digestOut?: Uint8Array): void {
    this.start(this.pending(PoolOp.STAT, 0, -1, null, 0, 0, cPath(path), null, target, digestOut ?? null));
  }
  unlinkTo(path: string, target: IoTarget): void {
    this.start(this.pending(PoolOp.UNLINK, 0, -1, null, 0, 0, cPath(path), null, target));
  }
  readWholeTo(path: string, into: Uint8Array, target: IoTarget, digestOut?: Uint8Array): void {
    this.start(this.pending(PoolOp.READ_FILE, 0, -1, into, into.length, 0, cPath(path), null, target, digestOut ?? null));
  }
  commitFileTo(tmpPath: string, finalPath: string, data: Uint8Array, fsync: boolean, target: IoTarget, digest?: Uint8Array): void {
    this.start(this.pending(PoolOp.COMMIT, (fsync ? COMMIT_FSYNC : 0) | (digest?.length === 48 ? COMMIT_MD5 : 0), -1, data, data.length, 0, cPath(tmpPath), cPath(finalPath), target, digest ?? null));
  }

  // Digests.
  newHasher(md5 = false): Hasher {
    return new NativeSha256(md5);
  }
  digestOf(bytes: Uint8Array, out: Uint8Array): void {
    NativeSha256.of(bytes, out);
  }
  setDigest(fd: number, digest: Uint8Array): Promise<void> {
    return this.submit(PoolOp.FSETDIGEST, 0, fd, null, digest.length, 0, null, null, digest);
  }

  // Zero-copy (ZeroCopyOps).
  openCached(path: string): number {
    return this.fs.openCached(path);
  }
  get lastSize(): number {
    return this.fs.lastSize;
  }
  get lastDigest(): Uint8Array {
    return this.fs.lastDigest;
  }
  sendfileNow(socket: number, file: number, offset: number, len: number, head: Uint8Array | null, tail: Uint8Array | null): number {
    return this.fs.sendfileNow(socket, file, offset, len, head, tail);
  }
  sendfileTo(socket: number, file: number, offset: number, len: number, target: IoTarget): void {
    // The file's descriptor rides in `flags` (fsgw_pool.h, FSGW_OP_SENDFILE).
    this.start(this.pending(PoolOp.SENDFILE, file, socket, null, len, offset, null, null, target));
  }
  spliceTo(socket: number, file: number, offset: number, len: number, target: IoTarget, hash?: Hasher): void {
    // A C hash state rides along: the worker adds the bytes it moved (read back from the page cache).
    if (hash !== undefined && hash.state === undefined) throw new Error("spliceTo: the hasher must be the C library's (newHasher)");
    this.start(this.pending(PoolOp.SPLICE_IN, file, socket, null, len, offset, null, null, target, hash?.state ?? null));
  }
  spliceWorksIn(dir: string): number {
    return spliceProbe(dir);
  }
  dupNow(fd: number): number {
    return dupFd(fd);
  }
  closeNow(fd: number): number {
    return closeFd(fd);
  }

  /** No system call; resolves with `value`: what the pool itself costs per operation (tests, benchmarks). */
  nop(value: number): Promise<number> {
    return this.submit(PoolOp.NOP, 0, -1, null, value, 0, null, null);
  }

  async shutdown(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const op of this.staged) this.finish(op, -ECANCELED);
    this.staged.length = 0;
    for (let i = this.blockedHead; i < this.blocked.length; i++) this.finish(this.blocked[i]!, -ECANCELED);
    this.blocked.length = 0;
    this.blockedHead = 0;
    this.pool.stop(); // queued operations come back -ECANCELED through the channel
    this.completions.close();
    clearInterval(this.keepAlive);
  }

  // ---- submission ----

  /**
   * Starts one operation. The promise resolves with the operation's value (see `valueOf`); its
   * type parameter is the caller's promise, which the op kind decides.
   */
  private submit<T>(kind: number, flags: number, fd: number, buf: Uint8Array | null, len: number, offset: number, path: Uint8Array | null, path2: Uint8Array | null, ext: Uint8Array | null = null): Promise<T> {
    const op = this.pending(kind, flags, fd, buf, len, offset, path, path2, null, ext);
    const promise = new Promise<T>((resolve, reject) => {
      op.resolve = resolve as (value: unknown) => void;
      op.reject = reject;
    });
    this.start(op);
    return promise;
  }

  private pending(kind: number, flags: number, fd: number, buf: Uint8Array | null, len: number, offset: number, path: Uint8Array | null, path2: Uint8Array | null, target: IoTarget | null, ext: Uint8Array | null = null): PendingOp {
    return new PendingOp(kind, flags, fd, buf, len, offset, path, path2, target, ext);
  }

  /** Hands an operation to the pool: at once, staged for the end of the turn, or blocked behind others. */
  private start(op: PendingOp): void {
    if (this.stopped) {
      op.result = -ECANCELED;
      this.report(op);
      return;
    }
    if (this.inFlight++ === 0) this.keepAlive.ref();
    if (this.blockedCount > 0) this.block(op);
    else if (this.waitsForTurnEnd(op)) this.stage(op);
    else this.submitDirect(op);
  }

  /** Whether `op` waits for the end of the turn (see SubmitMode). */
  private waitsForTurnEnd(op: PendingOp): boolean {
    const mode = this.options.submitMode;
    return mode === "batch" || (mode === "adaptive" && op.target !== null);
  }

  /** One FFI call. Returns false when the pool is full (the operation is then blocked). */
  private submitDirect(op: PendingOp): boolean {
    const slot = this.pool.submit(op.kind, op.flags, op.fd, op.buf, op.len, op.offset, op.path, op.path2, op.ext);
    if (slot >= 0) {
      this.bySlot[slot] = op;
      return true;
    }
    if (slot === -EAGAIN) {
      this.block(op);
      return false;
    }
    this.finish(op, slot);
    return true;
  }

  private stage(op: PendingOp): void {
    this.staged.push(op);
    if (this.staged.length >= this.pool.batchMax) this.submitStaged();
    if (!this.flushScheduled) {
      // The end of this turn will flush and poll: until then completions need no doorbell.
      this.flushScheduled = true;
      this.pool.markLoopBusy();
      setImmediate(this.endOfTurn);
    }
  }

  /** Once per event-loop turn with staged work: hand it over in one call, and reap what is done. */
  private readonly endOfTurn = (): void => {
    this.flushScheduled = false;
    if (this.stopped) return;
    this.submitStaged();
    this.pool.poll();
  };

  /** Hands every staged operation over in one FFI call; the ones refused wait in `blocked`. */
  private submitStaged(): void {
    const ops = this.staged;
    if (ops.length === 0) return;
    const accepted = this.blockedCount > 0 ? 0 : this.submitBatch(ops, 0, ops.length);
    for (let i = accepted; i < ops.length; i++) this.block(ops[i]!);
    ops.length = 0;
  }

  /** Submits ops[start, start+count) (count <= batchMax) in one call; returns how many went in. */
  private submitBatch(ops: PendingOp[], start: number, count: number): number {
    for (let i = 0; i < count; i++) {
      const op = ops[start + i]!;
      this.pool.stage(i, op.kind, op.flags, op.fd, op.buf, op.len, op.offset, op.path, op.path2, op.ext);
    }
    const n = this.pool.submitStaged(count);
    if (n < 0 && n !== -EAGAIN) {
      for (let i = 0; i < count; i++) this.finish(ops[start + i]!, n);
      return count;
    }
    const accepted = Math.max(0, n);
    for (let i = 0; i < accepted; i++) this.bySlot[this.pool.stagedSlot(i)] = ops[start + i];
    if (accepted > 0) {
      this.batches++;
      this.batchedOps += accepted;
    }
    return accepted;
  }

  private block(op: PendingOp): void {
    this.blocked.push(op);
    const waiting = this.blockedCount;
    if (waiting > this.blockedHigh) this.blockedHigh = waiting;
  }

  /** Slots were freed: resubmit blocked operations, oldest first, until the pool is full again. */
  private unblock(): void {
    while (this.blockedCount > 0 && !this.stopped) {
      if (this.options.submitMode !== "batch") {
        const op = this.blocked[this.blockedHead]!;
        const slot = this.pool.submit(op.kind, op.flags, op.fd, op.buf, op.len, op.offset, op.path, op.path2, op.ext);
        if (slot === -EAGAIN) break;
        this.blockedHead++;
        if (slot >= 0) this.bySlot[slot] = op;
        else this.finish(op, slot);
      } else {
        const count = Math.min(this.blockedCount, this.pool.batchMax);
        const accepted = this.submitBatch(this.blocked, this.blockedHead, count);
        this.blockedHead += accepted;
        if (accepted < count) break;
      }
    }
    if (this.blockedHead > 1024 && this.blockedHead * 2 > this.blocked.length) {
      this.blocked.splice(0, this.blockedHead);
      this.blockedHead = 0;
    }
  }

  // ---- completion ----

  private onCompletion(slot: number, result: number, aux: number): void {
    const op = this.bySlot[slot];
    if (op === undefined) {
      // A slot completing with no operation in it means the pool's bookkeeping is broken.
      throw new Error(`fsgw_pool completed slot ${slot}, which holds no operation`);
    }
    this.bySlot[slot] = undefined;
    op.result = result;
    op.aux = aux;
    if (!this.completions.trySend(op)) {
      throw new Error("completion channel overflow: more completions than slots");
    }
  }

  /** The one consumer of the completion channel: settles operations in completion order. */
  private async deliver(): Promise<void> {
    for (;;) {
      let op = this.completions.tryReceive();
      if (op === undefined) {
        try {
          op = await this.completions.receive();
        } catch (e) {
          if (e instanceof ChannelClosedError) return;
          throw e;
        }
      }
      this.finish(op, op.result);
    }
  }

  /** The operation is over with `result` (>= 0, or -errno): it leaves the in-flight count. */
  private finish(op: PendingOp, result: number): void {
    if (--this.inFlight === 0) this.keepAlive.unref();
    op.result = result;
    this.report(op);
  }

  /** Hands the result over: a number to the target, or a value or an IoError to the promise. */
  private report(op: PendingOp): void {
    if (op.target !== null) {
      try {
        op.target.onIoDone(op.result, op.aux);
      } catch (e) {
        // A target must not throw (the IoTarget contract); if one does, the other completions still go out.
        console.error("fsgw: an I/O completion handler threw:", e);
      }
    } else if (op.result >= 0) op.resolve(valueOf(op));
    else op.reject(ioErrorFromErrno(op.result, opNames[op.kind]!));
  }

}

export { PoolStat };
