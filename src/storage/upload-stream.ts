// One streamed upload: body chunks go to a temporary file as they arrive, then the file is closed and
// renamed onto its key. Chunks that arrive while writes are in flight queue up, and the next write
// takes all of them at once (up to `chunkBytesMax`), so a trickle of small TCP reads becomes a few
// large writes. Up to `writesInFlightMax` writes run at once, each at its own offset, so the disk
// and the network overlap instead of taking turns. The owner sees the bytes held in memory
// (`backlogBytes`) and pauses its socket past its bound.
//
// Every path ends in exactly one settle: committed, failed (after the temporary file is removed), or
// aborted (disconnect, idle timeout, shutdown; the temporary file is removed as well). The owner
// hears the open through onStoreDone, the end through onUploadDone, and a bug in this code or the
// engine's (an exception that is not an IoError) through onStoreBug, after the same cleanup.
import { constants } from "node:os";
import { finishCommit, type Hasher, type IoEngine, type IoTarget, type ZeroCopyOps } from "../engine/io-engine";
import { IoError, ioErrorFromErrno } from "../engine/io-error";
import { causeOfErrno, failErrno, failureOfErrno, reportError } from "./file-errors";
import type { PartialUpload, Partials } from "./partials";

const ENOTSUP = constants.errno.ENOTSUP;

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
import { DIGEST_MISMATCH_CAUSE, Failure, type FailureCause, type StoreTarget, type UploadOwner, type UploadSink } from "./store";

/** The body's SHA-256 is not the one announced: not an error of the medium, an answer. */
class DigestMismatch extends Error {}

/** receiveFrom asked of an upload that cannot receive now (failed, aborted, or receiving already). */
const NOT_RECEIVING_CAUSE: FailureCause = { text: "the upload is not receiving" };

/** The most one splice of a resumable upload moves: what an interrupted splice costs in re-sent bytes. */
const RESUMABLE_SPLICE_BYTES = 8 * 1024 * 1024;

/** Chunks at least this large are written without being gathered (copied) into a bigger buffer. */
const SMALL_CHUNK_BYTES = 64 * 1024;

export interface UploadStreamOptions {
  /** fsync the file and its directory before the rename counts as done. */
  fsync: boolean;
  /** The largest single write. */
  chunkBytesMax: number;
  /** Writes in flight at once, each at its own offset. */
  writesInFlightMax: number;
  owner: UploadOwner;
  /** sendfile/splice, when the engine has them: then receiveFrom() moves body bytes by splice. */
  zeroCopy: ZeroCopyOps | null;
  /** The SHA-256 the body must have (32 bytes), or null: a body with another is not committed. */
  expected?: Uint8Array | null;
  /** Receives the body's digest once committed (DIGEST_BYTES: a flag, then 32 bytes). */
  digest?: Uint8Array;
  /**
   * A resumable upload: its entry in `partials`. A broken connection parks it (the bytes that
   * arrived written out, the temporary file kept) instead of discarding it. With `resume`, this
   * stream continues a parked one: its file reopened, at its offset, with its hash state.
   */
  partial?: { entry: PartialUpload; table: Partials; resume: boolean };
}

export class UploadStream implements UploadSink {
  private fd = -1;
  /** open, commit or temporary-file removal in progress: they run alone. */
  private busy = false;
  private writesInFlight = 0;
  private ended = false;
  private aborted = false;
  private ownerGone = false;
  private failure: unknown = null;
  private tempExists = false;
  private settled = false;
  /** Offset of the next write: advanced when a write is submitted, not when it completes. */
  private position = 0;
  private readonly queue: Uint8Array[] = [];
  private queuedBytes = 0;
  private inFlightBytes = 0;
  private resolveDone!: () => void;
  /** Resolves once the upload is committed or its temporary file is gone. */
  readonly done = new Promise<void>((r) => (this.resolveDone = r));
  private readonly fsync: boolean;
  private readonly chunkBytesMax: number;
  private readonly writesInFlightMax: number;
  private readonly owner: UploadOwner;
  private readonly zc: ZeroCopyOps | null;
  /** A receiveFrom() waiting for the queue to empty or in flight, its socket, and our dup of it. */
  private receiver: StoreTarget | null = null;
  private receiveSocket = -1;
  private receiveInFlight = false;
  private dupSocket = -1;
  /**
   * The body's SHA-256 as it arrives: bytes through memory are added as they are pushed (in order),
   * spliced bytes by the pool worker that moved them (the engine's C hasher). The body is committed
   * only when it matches `expected`; its digest is recorded with the file before the rename.
   */
  private hasher: Hasher;
  /** The hash before the splice in flight: restored if that splice is interrupted (abort(true)). */
  private hashBeforeSplice: Hasher | null = null;
  private spliceTainted = false;
  private readonly expected: Uint8Array | null;
  private readonly digestOut: Uint8Array | undefined;
  private readonly partial: { entry: PartialUpload; table: Partials; resume: boolean } | null;
  /** A resumable upload whose owner is gone: what arrived is written out, then it is parked. */
  private parking = false;
  /** Where the body starts in the file: 0, or a resumed upload's offset. */
  readonly offset: number;

  constructor(
    private readonly engine: IoEngine,
    private readonly tmpPath: string,
    private readonly finalPath: string,
    /** The size the client announced: exactly this many bytes are committed, or nothing. */
    private readonly expectedBytes: number,
    options: UploadStreamOptions,
  ) {
    this.fsync = options.fsync;
    this.chunkBytesMax = options.chunkBytesMax;
    this.writesInFlightMax = options.writesInFlightMax;
    this.owner = options.owner;
    this.zc = options.zeroCopy;
    this.partial = options.partial ?? null;
    const resumed = this.partial !== null && this.partial.resume ? this.partial.entry : null;
    this.hasher = resumed?.hasher ?? engine.newHasher();
    if (resumed !== null) resumed.hasher = null;
    this.offset = resumed?.onDisk ?? 0;
    this.position = this.offset;
    this.expected = options.expected ?? this.partial?.entry.expected ?? null;
    this.digestOut = options.digest;
    if (this.digestOut !== undefined) this.digestOut[0] = 0;
    // Splice needs a hasher the pool can update; an engine whose hasher is not the C library's copies.
    if (this.zc === null || this.hasher.state === undefined) this.receiveFrom = undefined;
  }

  /** Moves the next body bytes from the socket into the file by splice (see UploadSink). */
  receiveFrom?(socket: number, target: StoreTarget): void {
    if (this.failure !== null || this.aborted || this.settled || this.receiver !== null) return target.onStoreFailed(Failure.IO, NOT_RECEIVING_CAUSE);
    this.receiver = target;
    this.receiveSocket = socket;
    this.kick();
  }

  /** Starts the splice once every pushed byte has its offset (the queue is empty). */
  private startReceive(): void {
    const zc = this.zc!;
    if (this.dupSocket < 0) {
      // Our own descriptor for the worker: Bun may close its number, and the kernel reuse it.
      const dup = zc.dupNow(this.receiveSocket);
      if (dup < 0) return this.received(dup, 0);
      this.dupSocket = dup;
    }
    this.receiveInFlight = true;
    // A resumable upload keeps a copy of the hash from before each splice, and splices at most
    // RESUMABLE_SPLICE_BYTES at a time: if the splice is interrupted, only that much is given up.
    let len = this.expectedBytes - this.position;
    if (this.partial !== null) {
      this.hashBeforeSplice = this.hasher.copy();
      len = Math.min(len, RESUMABLE_SPLICE_BYTES);
    }
    zc.spliceTo(this.dupSocket, this.fd, this.position, len, new Received(this), this.hasher);
  }

  /**
   * A splice completed: bytes taken from the socket, or -errno; `fileErrno` when the file refused
   * them. Either failure fails the upload, as a failed write does; the owner still hears how many
   * bytes left the socket, and its next receiveFrom() is refused, so it reads the rest as usual.
   */
  received(result: number, fileErrno: number): void {
    this.receiveInFlight = false;
    const target = this.receiver!;
    this.receiver = null;
    if (this.spliceTainted) {
      // Someone else read the socket meanwhile: these bytes are not the body's next ones in order.
      // The file keeps them past `position`, to be overwritten; the hash goes back to before them.
      this.spliceTainted = false;
      if (this.hashBeforeSplice !== null) this.hasher = this.hashBeforeSplice;
      result = 0;
    }
    this.hashBeforeSplice = null;
    if (result > 0) this.position += result;
    // Only the file refusing bytes fails the upload. A socket error breaks the connection, not the
    // body: what reached the file stays good (a resumable upload is parked with it), and the
    // owner, which hears the error, goes on by reading or closes.
    if (fileErrno !== 0 && this.failure === null) {
      this.failure = ioErrorFromErrno(-fileErrno, "splice");
      this.queue.length = 0;
      this.queuedBytes = 0;
    }
    this.resume();
    if (this.ownerGone) return;
    if (result >= 0) target.onStoreDone(result);
    else failErrno(target, -result);
  }

  /** The engine's own code failed during a receive (only a JavaScript engine can): a bug, reported. */
  receiveBug(error: unknown): void {
    this.receiveInFlight = false;
    const target = this.receiver;
    this.receiver = null;
    if (this.failure === null) this.failure = error;
    this.resume();
    if (!this.ownerGone) target?.onStoreBug(error);
  }

  private closeDupSocket(): void {
    if (this.dupSocket >= 0) this.zc!.closeNow(this.dupSocket);
    this.dupSocket = -1;
  }

  /** A resumable upload's id. */
  get uploadId(): string | undefined {
    return this.partial?.entry.id;
  }

  /** The whole body's size, as announced by the request that started the upload. */
  get totalBytes(): number {
    return this.expectedBytes;
  }

  /** Creates the temporary file (a resumed upload reopens its own); the owner hears onStoreDone(0) when the body may come, or why not. */
  open(): void {
    this.busy = true;
    this.engine.open(this.tmpPath, this.partial?.resume ? "write" : "create").then(
      (fd) => {
        this.busy = false;
        this.fd = fd;
        this.tempExists = true;
        if (!this.ownerGone) this.owner.onStoreDone(0);
        this.resume();
      },
      (e) => {
        // Nothing was created, so nothing to clean: the owner hears why, and that is the end. (A
        // resumed upload whose file cannot be opened is over too: forgotten, its file removed.)
        this.busy = false;
        this.settled = true;
        if (this.partial !== null) {
          this.partial.table.drop(this.partial.entry);
          if (this.partial.resume) void this.engine.unlink(this.tmpPath).catch(() => {});
        }
        this.resolveDone();
        if (!this.ownerGone) reportError(this.owner, e);
      },
    );
  }

  /** Bytes received and not yet written: memory this upload holds. */
  get backlogBytes(): number {
    return this.queuedBytes + this.inFlightBytes;
  }

  push(chunk: Uint8Array): void {
    if (this.failure !== null || this.aborted) return; // the body is drained and dropped
    this.hasher.update(chunk);
    this.queue.push(chunk);
    this.queuedBytes += chunk.length;
    this.kick();
  }

  /** The whole body has been pushed. */
  end(): void {
    this.ended = true;
    this.kick();
  }

  /**
   * The owner is gone (disconnect, idle timeout, shutdown) and hears nothing more. A body cut short
   * is discarded with its temporary file; a body already whole is still committed, as it would
   * have been had the owner stayed one moment longer.
   */
  abort(spliceInterrupted = false): Promise<void> {
    this.ownerGone = true;
    if (spliceInterrupted && this.receiveInFlight) this.spliceTainted = true;
    if (!this.ended) {
      if (this.partial !== null && this.failure === null) {
        // Resumable: every byte that arrived is written out, then the upload waits for RESUME.
        this.parking = true;
        this.receiver = null;
      } else {
        this.aborted = true;
        this.queue.length = 0;
        this.queuedBytes = 0;
      }
      this.kick();
    }
    return this.done;
  }

  /** kick() from a continuation: an exception there is a bug of this class, reported, never lost. */
  private resume(): void {
    try {
      this.kick();
    } catch (e) {
      if (this.failure === null) this.failure = e;
      if (!this.settled) {
        this.settled = true;
        this.resolveDone();
        if (!this.ownerGone) this.owner.onStoreBug(e);
      }
    }
  }

  /** Starts whatever can start now. */
  private kick(): void {
    if (this.settled || this.busy) return;
    if (this.receiveInFlight) return; // a splice holds the fd and the offsets: wait for it
    if (this.failure !== null || this.aborted) {
      if (this.writesInFlight > 0) return; // the fd stays open until they are back
      if (this.fd >= 0 || this.tempExists) void this.removeTemp(); // catches everything it awaits
      else if (this.aborted || this.ended) this.settle();
      return;
    }
    if (this.fd < 0) return; // still opening (a resumable upload parks once the open is back)
    while (this.queuedBytes > 0 && this.writesInFlight < this.writesInFlightMax) this.writeNext();
    if (this.parking) {
      if (this.queuedBytes === 0 && this.writesInFlight === 0) void this.park();
      return;
    }
    if (this.receiver !== null && this.queuedBytes === 0) return this.startReceive();
    if (this.ended && this.queuedBytes === 0 && this.writesInFlight === 0) void this.commit();
  }

  /** A resumable upload whose connection broke, every arrived byte written: kept for RESUME. */
  private async park(): Promise<void> {
    this.busy = true;
    await this.closeFile();
    this.busy = false;
    const p = this.partial!;
    if (p.table.park(p.entry, this.position, this.hasher, Date.now()) !== null) {
      // Over a bound on kept bytes (the table said which): discarded, as an ordinary upload is.
      await this.engine.unlink(this.tmpPath).catch(() => {});
      p.table.drop(p.entry);
    }
    this.tempExists = false; // the table holds the file now, or it is gone
    this.settled = true;
    if (this.dupSocket >= 0) this.closeDupSocket();
    this.resolveDone();
  }

  /**
   * Starts one write. A chunk of SMALL_CHUNK_BYTES or more is written as it is (no copy); runs of
   * smaller chunks are gathered into one buffer of up to chunkBytesMax, so a trickle of small TCP
   * reads does not cost a system call each. Copying large chunks would cost more than it saves.
   */
  private writeNext(): void {
    const first = this.queue[0]!;
    let data: Uint8Array;
    if (first.length >= SMALL_CHUNK_BYTES || first.length >= this.chunkBytesMax || this.queue.length === 1) {
      if (first.length > this.chunkBytesMax) {
        data = first.subarray(0, this.chunkBytesMax);
        this.queue[0] = first.subarray(this.chunkBytesMax);
      } else {
        data = this.queue.shift()!;
      }
    } else {
      let total = 0;
      let count = 0;
      for (const chunk of this.queue) {
        if (chunk.length >= SMALL_CHUNK_BYTES || total + chunk.length > this.chunkBytesMax) break;
        total += chunk.length;
        count++;
      }
      data = new Uint8Array(total);
      let filled = 0;
      for (let i = 0; i < count; i++) {
        const chunk = this.queue.shift()!;
        data.set(chunk, filled);
        filled += chunk.length;
      }
    }
    const length = data.length;
    this.queuedBytes -= length;
    this.inFlightBytes += length;
    this.writesInFlight++;
    const position = this.position;
    this.position += length;
    this.engine.write(this.fd, data, position).then(
      () => this.onWriteDone(length, null),
      (e) => this.onWriteDone(length, e),
    );
  }

  private onWriteDone(length: number, error: unknown): void {
    this.writesInFlight--;
    this.inFlightBytes -= length;
    if (error !== null && this.failure === null) {
      this.failure = error;
      this.queue.length = 0;
      this.queuedBytes = 0;
    }
    this.resume();
    // After a failure the rest of the body is read and dropped: a socket paused for backlog must
    // resume, or the client could never finish sending and hear the error.
    if (!this.ownerGone) this.owner.onUploadProgress();
  }

  private async commit(): Promise<void> {
    this.busy = true;
    const fd = this.fd;
    this.fd = -1;
    /** Once finishCommit runs, it owns the descriptor and the temporary file, failure included. */
    let committing = false;
    try {
      // Committing a body of another size than the client announced would store a wrong file.
      if (this.position !== this.expectedBytes) {
        throw new Error(`upload commit with ${this.position} bytes written of ${this.expectedBytes} announced`);
      }
      const sum = this.hasher.digest();
      if (this.expected !== null && !equalBytes(sum, this.expected)) throw new DigestMismatch();
      // Recorded before the rename, so the file and its digest appear under the key together. A
      // file system without user attributes stores the file without it.
      if (this.engine.setDigest !== undefined) {
        await this.engine.setDigest(fd, sum).catch((e) => {
          if (!(e instanceof IoError && e.errno === ENOTSUP)) throw e;
        });
      }
      committing = true;
      await finishCommit(this.engine, fd, this.tmpPath, this.finalPath, this.fsync);
      this.tempExists = false;
      if (this.digestOut !== undefined) {
        this.digestOut[0] = 1;
        this.digestOut.set(sum, 1);
      }
    } catch (e) {
      this.failure = e;
      if (committing) this.tempExists = false; // finishCommit closed the descriptor and removed the file
      else this.fd = fd; // removeTemp closes and removes them
    }
    this.busy = false;
    if (this.failure === null) this.settle();
    else this.resume();
  }

  /** Closes the temporary file's descriptor, if open (a close error changes nothing here). */
  private async closeFile(): Promise<void> {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    await this.engine.close(fd).catch(() => {});
  }

  /** Closes and unlinks the temporary file after a failure or an abort. */
  private async removeTemp(): Promise<void> {
    this.busy = true;
    await this.closeFile();
    await this.engine.unlink(this.tmpPath).catch(() => {});
    this.tempExists = false;
    this.busy = false;
    this.resume();
  }

  private settle(): void {
    if (this.settled) return;
    this.settled = true;
    // Committed, failed or abandoned: a resumable upload is over (its file is gone by now).
    if (this.partial !== null) this.partial.table.drop(this.partial.entry);
    if (this.dupSocket >= 0) this.closeDupSocket();
    this.resolveDone();
    if (this.ownerGone) return;
    const failure = this.failure;
    if (failure === null) this.owner.onUploadDone(this.expectedBytes);
    else if (failure instanceof IoError) this.owner.onUploadFailed(failureOfErrno(failure.errno), causeOfErrno(failure.errno));
    else if (failure instanceof DigestMismatch) this.owner.onUploadFailed(Failure.DIGEST_MISMATCH, DIGEST_MISMATCH_CAUSE);
    else this.owner.onStoreBug(failure);
  }
}

class Received implements IoTarget {
  constructor(private readonly upload: UploadStream) {}
  onIoDone(result: number, aux: number): void {
    this.upload.received(result, aux);
  }
  onIoBug(error: unknown): void {
    this.upload.receiveBug(error);
  }
}
