// One streamed upload: body chunks go to a temporary file as they arrive, then the file is closed and
// renamed onto its key. Chunks that arrive while writes are in flight queue up, and the next write
// takes all of them at once (up to `chunkBytesMax`), so a trickle of small TCP reads becomes a few
// large writes. Up to `writesInFlightMax` writes run at once, each at its own offset, so the disk
// and the network overlap instead of taking turns. The owner sees the bytes held in memory
// (`backlogBytes`) and pauses its socket past its bound.
//
// Its states (UploadState), changed only by move(), which checks the table LEGAL:
//
//   opening    → writing     the temporary file is open
//              → draining    ... and the owner of a resumable upload went meanwhile
//              → failing     ... and the owner went meanwhile, the body cut short
//              → settled     the open failed: nothing was created, nothing to clean
//   writing    → committing  the body is whole and every byte written
//              → draining    the owner of a resumable upload went: what arrived is written out
//              → failing     a write or a splice failed, or the owner went with the body cut short
//   draining   → parking     every byte that arrived is written
//              → failing     a write failed: the upload is discarded after all
//   committing → settled     committed, or failed inside the rename (which removed the file itself)
//              → failing     failed before the rename (size, digest, attribute)
//   failing    → removing    no write or splice in flight any more: close and unlink
//   removing   → dropping    the temporary file is gone
//   dropping   → settled     the body is over (its rest was read and dropped) or the owner went
//   parking    → settled     closed and kept for RESUME (or discarded past a bound on kept bytes)
//   any state  → settled     a bug thrown from a continuation ends the upload where it stands
//
// Writes (and one splice) run concurrently in writing, draining and failing; opening, committing,
// parking and removing each run one operation on the file, alone. A failed upload is told only once
// the body is over (`dropping`), so that the owner's reply follows the body the client sent. How the upload ends is decided
// once (`ending`, a typed value; null while the body may still commit) and told once, in settle():
// committed (onUploadDone), failed (onUploadFailed with the failure and its cause), or a bug in
// this code or the engine's (onStoreBug), after the same cleanup. An owner that has gone hears
// nothing. The open is answered apart, through onStoreDone(0) or onStoreFailed.
import { constants } from "node:os";
import { finishCommit, type Hasher, type IoEngine, type IoTarget, type ZeroCopyOps } from "../engine/io-engine";
import { IoError, ioErrorFromErrno } from "../engine/io-error";
import { causeOfErrno, failErrno, failureOfErrno, reportError } from "./file-errors";
import type { PartialUpload, Partials } from "./partials";
import { stableBytes } from "../util/stable-bytes";
import { DIGEST_MISMATCH_CAUSE, Failure, MD5_MISMATCH_CAUSE, type FailureCause, type StoreTarget, type UploadOwner, type UploadSink, setDigests } from "./store";

const ENOTSUP = constants.errno.ENOTSUP;

export type UploadState = "opening" | "writing" | "draining" | "committing" | "parking" | "failing" | "removing" | "dropping" | "settled";

const LEGAL: Record<UploadState, readonly UploadState[]> = {
  // Every state may also go to settled when a bug is thrown from a continuation (resume()).
  opening: ["writing", "draining", "failing", "settled"],
  writing: ["committing", "draining", "failing", "settled"],
  draining: ["parking", "failing", "settled"],
  committing: ["failing", "settled"],
  failing: ["removing", "settled"],
  removing: ["dropping", "settled"],
  dropping: ["settled"],
  parking: ["settled"],
  settled: [],
};

/**
 * How the upload ends, once decided: the medium refused (an answer to the client), the body's
 * SHA-256 is not the announced one (an answer), a bug (an exception that is not an IoError), the
 * owner went with the body cut short (discarded), or went from a resumable upload (parked).
 */
type Ending =
  | { readonly kind: "io"; readonly error: IoError }
  | { readonly kind: "digest" }
  | { readonly kind: "md5" }
  | { readonly kind: "bug"; readonly error: unknown }
  | { readonly kind: "aborted" }
  | { readonly kind: "parked" };

const DIGEST_ENDING: Ending = { kind: "digest" };
const MD5_ENDING: Ending = { kind: "md5" };
const ABORTED_ENDING: Ending = { kind: "aborted" };
const PARKED_ENDING: Ending = { kind: "parked" };

/** The body's SHA-256 is not the one announced: thrown inside commit, caught as DIGEST_ENDING. */
class DigestMismatch extends Error {}
/** The body's MD5 is not the one announced (expectedMd5): caught as MD5_ENDING. */
class Md5Mismatch extends Error {}

function endingOf(e: unknown): Ending {
  if (e instanceof IoError) return { kind: "io", error: e };
  if (e instanceof DigestMismatch) return DIGEST_ENDING;
  if (e instanceof Md5Mismatch) return MD5_ENDING;
  return { kind: "bug", error: e };
}

/**
 * A receiveFrom() in progress: `waiting` until every pushed byte has its offset, then `splicing`;
 * `tainted` when the socket was read by someone else while it spliced (its bytes are not trusted).
 */
interface Receive {
  phase: "waiting" | "splicing" | "tainted";
  readonly target: StoreTarget;
  readonly socket: number;
}

/** receiveFrom asked of an upload that cannot receive now (failed, aborted, or receiving already). */
const NOT_RECEIVING_CAUSE: FailureCause = { text: "the upload is not receiving" };

/** The most one splice of a resumable upload moves: what an interrupted splice costs in re-sent bytes. */
const RESUMABLE_SPLICE_BYTES = 8 * 1024 * 1024;

/** Chunks at least this large are written without being gathered (copied) into a bigger buffer. */
const SMALL_CHUNK_BYTES = 64 * 1024;

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

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
  /** Receives the body's digests once committed (DIGEST_BYTES facts). */
  digest?: Uint8Array;
  /** Also compute the body's MD5, recorded after the SHA-256 (with the C library's hasher also over spliced bytes). */
  md5?: boolean;
  /** The MD5 the body must have (16 bytes; an HTTP Content-MD5), or null; implies md5. */
  expectedMd5?: Uint8Array | null;
  /**
   * A resumable upload: its entry in `partials`. A broken connection parks it (the bytes that
   * arrived written out, the temporary file kept) instead of discarding it. With `resume`, this
   * stream continues a parked one: its file reopened, at its offset, with its hash state.
   */
  partial?: { entry: PartialUpload; table: Partials; resume: boolean };
  /**
   * Called once the file is under its key, before the owner hears of it (the listing index), with
   * its size and the digests recorded with it (the SHA-256, and the MD5 after it when computed;
   * null when the file system keeps none).
   */
  /** After the rename, before the owner hears: may return a promise the answer waits for. */
  onCommitted?: (size: number, digest: Uint8Array | null) => void | Promise<void>;
  /**
   * A whole body of at most `bytesMax` bytes is stored by `put` (the file store: a volume's record,
   * with its digests: the SHA-256, and the MD5 after it when computed) instead of being renamed onto
   * its key; the temporary file is read back, then removed. onCommitted is not called for it.
   */
  intoRecord?: { bytesMax: number; put(body: Uint8Array, digests: Uint8Array): Promise<void> };
}

export class UploadStream implements UploadSink {
  /** Changed only by move(); see LEGAL. */
  state: UploadState = "opening";
  private readonly onCommitted: ((size: number, digest: Uint8Array | null) => void | Promise<void>) | undefined;
  private readonly intoRecord: UploadStreamOptions["intoRecord"];
  /** How the upload ends, once decided; null while it may still commit. */
  private ending: Ending | null = null;
  /** The temporary file's descriptor: open from the end of `opening` until it is closed. */
  private fd = -1;
  /** Every byte of the body has been pushed (end()). */
  private bodyWhole = false;
  /** The owner is gone (abort()): it hears nothing more. */
  private ownerGone = false;
  private writesInFlight = 0;
  /** Offset of the next write: advanced when a write is submitted, not when it completes. */
  private position = 0;
  private readonly queue: Uint8Array[] = [];
  private queuedBytes = 0;
  private inFlightBytes = 0;
  private resolveDone!: () => void;
  /** Resolves once the upload is committed, parked, or its temporary file is gone. */
  readonly done = new Promise<void>((r) => (this.resolveDone = r));
  private readonly fsync: boolean;
  private readonly chunkBytesMax: number;
  private readonly writesInFlightMax: number;
  private readonly owner: UploadOwner;
  private readonly zc: ZeroCopyOps | null;
  /** The receiveFrom() in progress, if any. */
  private receive: Receive | null = null;
  /** Our dup of the socket the splices read, kept for the upload's life (see startReceive). */
  private dupSocket = -1;
  /**
   * The body's SHA-256 as it arrives: bytes through memory are added as they are pushed (in order),
   * spliced bytes by the pool worker that moved them (the engine's C hasher). The body is committed
   * only when it matches `expected`; its digest is recorded with the file before the rename.
   */
  private hasher: Hasher;
  /** The hash before the splice in flight: restored if that splice is interrupted (abort(true)). */
  private hashBeforeSplice: Hasher | null = null;
  private readonly expected: Uint8Array | null;
  private readonly digestOut: Uint8Array | undefined;
  /** The body's MD5 as it streams, when asked for. */
  /** The body's MD5 in JavaScript, when the hasher cannot compute it (another engine's). */
  private readonly md5: Bun.CryptoHasher | null;
  private readonly wantsMd5: boolean;
  private readonly expectedMd5: Uint8Array | null;
  readonly checksMd5: boolean;
  private readonly partial: { entry: PartialUpload; table: Partials; resume: boolean } | null;
  /** Where the body starts in the file: 0, or a resumed upload's offset. */
  readonly offset: number;
  /**
   * Moves the next body bytes from the socket into the file by splice (see UploadSink): present
   * when the engine splices and hashes in C; an engine whose hasher is JavaScript's copies instead.
   */
  readonly receiveFrom: ((socket: number, target: StoreTarget) => void) | undefined;

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
    this.hasher = resumed?.hasher ?? engine.newHasher(options.md5 === true || (options.expectedMd5 ?? null) !== null);
    if (resumed !== null) resumed.hasher = null;
    this.offset = resumed?.onDisk ?? 0;
    this.position = this.offset;
    this.expected = options.expected ?? this.partial?.entry.expected ?? null;
    this.digestOut = options.digest;
    this.onCommitted = options.onCommitted;
    this.intoRecord = options.intoRecord;
    if (this.digestOut !== undefined) this.digestOut[0] = 0;
    this.expectedMd5 = options.expectedMd5 ?? null;
    this.checksMd5 = this.expectedMd5 !== null;
    this.wantsMd5 = options.md5 === true || this.expectedMd5 !== null;
    // The C library's hasher computes the MD5 beside the SHA-256, also over spliced bytes; another
    // engine's leaves it to JavaScript, which spliced bytes never reach.
    this.md5 = this.wantsMd5 && this.hasher.md5 === undefined ? new Bun.CryptoHasher("md5") : null;
    this.receiveFrom = this.zc !== null && this.hasher.state !== undefined && this.md5 === null ? (socket, target) => this.startReceiving(socket, target) : undefined;
  }

  private move(to: UploadState): void {
    if (!LEGAL[this.state].includes(to)) throw new Error(`upload: illegal move ${this.state} -> ${to}`);
    this.state = to;
  }

  /**
   * Decides how the upload ends: the first decision stands, except that a failure while parking
   * discards a resumable upload after all. From `writing`, the upload stops taking the body.
   */
  private endWith(ending: Ending): void {
    if (this.ending !== null && this.ending.kind !== "parked") return;
    this.ending = ending;
    if (this.ending.kind !== "parked") {
      this.queue.length = 0; // the rest of the body is dropped
      this.queuedBytes = 0;
    }
    if (this.state === "writing" || this.state === "draining") this.move(ending.kind === "parked" ? "draining" : "failing");
  }

  private startReceiving(socket: number, target: StoreTarget): void {
    if (this.state !== "writing" || this.ending !== null || this.receive !== null) return target.onStoreFailed(Failure.IO, NOT_RECEIVING_CAUSE);
    this.receive = { phase: "waiting", target, socket };
    this.kick();
  }

  /** Starts the splice once every pushed byte has its offset (the queue is empty). */
  private startSplice(receive: Receive): void {
    const zc = this.zc!;
    if (this.dupSocket < 0) {
      // Our own descriptor for the worker: Bun may close its number, and the kernel reuse it.
      const dup = zc.dupNow(receive.socket);
      if (dup < 0) return this.received(dup, 0);
      this.dupSocket = dup;
    }
    receive.phase = "splicing";
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
    const receive = this.receive!;
    this.receive = null;
    if (receive.phase === "tainted") {
      // Someone else read the socket meanwhile: these bytes are not the body's next ones in order.
      // The file keeps them past `position`, to be overwritten; the hash goes back to before them.
      if (this.hashBeforeSplice !== null) this.hasher = this.hashBeforeSplice;
      result = 0;
    }
    this.hashBeforeSplice = null;
    if (result > 0) this.position += result;
    // Only the file refusing bytes fails the upload. A socket error breaks the connection, not the
    // body: what reached the file stays good (a resumable upload is parked with it), and the
    // owner, which hears the error, goes on by reading or closes.
    if (fileErrno !== 0) this.endWith({ kind: "io", error: ioErrorFromErrno(-fileErrno, "splice") });
    this.resume();
    if (this.ownerGone) return;
    if (result >= 0) receive.target.onStoreDone(result);
    else failErrno(receive.target, -result);
  }

  /** The engine's own code failed during a splice (only a JavaScript engine can): a bug, reported. */
  receiveBug(error: unknown): void {
    const receive = this.receive;
    this.receive = null;
    this.endWith({ kind: "bug", error });
    this.resume();
    if (!this.ownerGone) receive?.target.onStoreBug(error);
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
    this.engine.open(this.tmpPath, this.partial?.resume ? "write" : "create").then(
      (fd) => {
        this.fd = fd;
        // The owner may have gone while the file was opening: then the file is parked or removed.
        const ending = this.ending;
        this.move(ending === null ? "writing" : ending.kind === "parked" ? "draining" : "failing");
        if (!this.ownerGone) this.owner.onStoreDone(0);
        this.resume();
      },
      (e) => {
        // Nothing was created, so nothing to clean: the owner hears why, and that is the end. (A
        // resumed upload whose file cannot be opened is over too: forgotten, its file removed.)
        this.move("settled");
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
    if (this.ending !== null) return; // failed: the rest of the body is read and dropped
    this.hasher.update(chunk);
    this.md5?.update(chunk);
    this.queue.push(chunk);
    this.queuedBytes += chunk.length;
    this.kick();
  }

  /** The whole body has been pushed. */
  end(): void {
    this.bodyWhole = true;
    this.kick();
  }

  /**
   * The owner is gone (disconnect, idle timeout, shutdown) and hears nothing more. A body cut short
   * is discarded with its temporary file (a resumable one is parked); a body already whole is still
   * committed, as it would have been had the owner stayed one moment longer.
   */
  abort(spliceInterrupted = false): Promise<void> {
    this.ownerGone = true;
    if (spliceInterrupted && this.receive?.phase === "splicing") this.receive.phase = "tainted";
    if (this.receive?.phase === "waiting") this.receive = null; // never started: nobody to answer
    if (!this.bodyWhole && this.state !== "settled") {
      this.endWith(this.partial !== null ? PARKED_ENDING : ABORTED_ENDING);
      this.kick();
    }
    return this.done;
  }

  /** kick() from a continuation: an exception there is a bug of this class, reported, never lost. */
  private resume(): void {
    try {
      this.kick();
    } catch (e) {
      if (this.state === "settled") return;
      this.state = "settled"; // LEGAL's "any state → settled": nothing more runs for this upload
      this.closeDupSocket();
      this.resolveDone();
      if (!this.ownerGone) this.owner.onStoreBug(e);
    }
  }

  /** Starts whatever the state allows now. */
  private kick(): void {
    switch (this.state) {
      case "writing":
        this.writeQueued();
        if (this.receive !== null) {
          if (this.receive.phase === "waiting" && this.queuedBytes === 0) this.startSplice(this.receive);
          return; // a splice holds the offsets: nothing else starts until it is back
        }
        if (this.bodyWhole && this.queuedBytes === 0 && this.writesInFlight === 0) void this.commit();
        return;
      case "draining":
        if (this.receive !== null) return;
        this.writeQueued();
        if (this.queuedBytes === 0 && this.writesInFlight === 0) void this.park();
        return;
      case "failing": {
        // A receive that never started is refused: its owner reads the rest of the body as usual.
        const refused = this.receive?.phase === "waiting" ? this.receive : null;
        if (refused !== null) this.receive = null;
        // The descriptor stays open until every write and splice on it is back.
        if (this.writesInFlight === 0 && this.receive === null) void this.removeTemp();
        if (refused !== null && !this.ownerGone) refused.target.onStoreFailed(Failure.IO, NOT_RECEIVING_CAUSE); // last: the owner may push or end from here
        return;
      }
      case "dropping":
        if (this.bodyWhole || this.ownerGone) this.settle();
        return;
      default:
        return; // opening, committing, parking, removing: one operation runs alone; settled: over
    }
  }

  /** Starts writes for the queued bytes, up to writesInFlightMax. */
  private writeQueued(): void {
    while (this.queuedBytes > 0 && this.writesInFlight < this.writesInFlightMax) this.writeNext();
  }

  /** A resumable upload whose connection broke, every arrived byte written: kept for RESUME. */
  private async park(): Promise<void> {
    this.move("parking");
    await this.closeFile();
    const p = this.partial!;
    if (p.table.park(p.entry, this.position, this.hasher, Date.now()) !== null) {
      // Over a bound on kept bytes (the table said which): discarded, as an ordinary upload is.
      await this.engine.unlink(this.tmpPath).catch(() => {});
      p.table.drop(p.entry);
    }
    this.settle();
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
    if (error !== null) this.endWith(endingOf(error));
    this.resume();
    // After a failure the rest of the body is read and dropped: a socket paused for backlog must
    // resume, or the client could never finish sending and hear the error.
    if (!this.ownerGone) this.owner.onUploadProgress();
  }

  private async commit(): Promise<void> {
    this.move("committing");
    const fd = this.fd;
    this.fd = -1;
    /** Once finishCommit runs, it owns the descriptor and the temporary file, failure included. */
    let renaming = false;
    try {
      // Committing a body of another size than the client announced would store a wrong file.
      if (this.position !== this.expectedBytes) {
        throw new Error(`upload commit with ${this.position} bytes written of ${this.expectedBytes} announced`);
      }
      const sum = this.hasher.digest();
      if (this.expected !== null && !equalBytes(sum, this.expected)) throw new DigestMismatch();
      // Recorded before the rename, so the file and its digest appear under the key together. A
      // file system without user attributes stores the file without it.
      let recorded = this.engine.setDigest !== undefined;
      const md5 = !this.wantsMd5 ? null : this.md5 !== null ? (this.md5.digest() as Buffer) : Buffer.from(this.hasher.md5!()!);
      if (this.expectedMd5 !== null && !equalBytes(md5!, this.expectedMd5)) throw new Md5Mismatch();
      const value = md5 === null ? sum : Buffer.concat([sum, md5]);
      if (this.intoRecord !== undefined && this.expectedBytes <= this.intoRecord.bytesMax) {
        await this.putRecord(fd, this.intoRecord, value);
        if (this.digestOut !== undefined) setDigests(this.digestOut, sum, md5);
        return this.settleOrResume();
      }
      if (this.engine.setDigest !== undefined) {
        await this.engine.setDigest(fd, value).catch((e) => {
          if (!(e instanceof IoError && e.errno === ENOTSUP)) throw e;
          recorded = false;
        });
      }
      renaming = true;
      await finishCommit(this.engine, fd, this.tmpPath, this.finalPath, this.fsync);
      await this.onCommitted?.(this.expectedBytes, recorded ? value : null);
      if (this.digestOut !== undefined) setDigests(this.digestOut, sum, md5);
    } catch (e) {
      this.ending = endingOf(e);
      if (!renaming) {
        this.fd = fd; // removeTemp closes and removes them
        this.move("failing");
      }
    }
    this.settleOrResume();
  }

  /**
   * commit() of a small body into a record: the temporary file's bytes read back (from the page
   * cache: they were just written) and handed to `put`; once it holds them the temporary file is
   * only removed (a failure to remove it leaves a temporary file, which the next start sweeps).
   * A failure before that throws, and commit() removes the temporary file as after any failure.
   */
  private async putRecord(fd: number, into: NonNullable<UploadStreamOptions["intoRecord"]>, digests: Uint8Array): Promise<void> {
    // Stable: a pool worker reads into it (src/util/stable-bytes.ts).
    const body = stableBytes(this.expectedBytes);
    for (let got = 0; got < body.length; ) {
      const n = await this.engine.read(fd, body.subarray(got), got);
      if (n <= 0) throw new Error(`upload commit: the temporary file ends at ${got} of ${body.length} bytes written`);
      got += n;
    }
    await into.put(body, digests);
    await this.engine.close(fd).catch(() => {});
    await this.engine.unlink(this.tmpPath).catch(() => {});
  }

  /** After an operation that ran alone: settle if it decided the end, else carry on. */
  private settleOrResume(): void {
    if (this.state === "committing") this.settle();
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
    this.move("removing");
    await this.closeFile();
    await this.engine.unlink(this.tmpPath).catch(() => {});
    this.move("dropping");
    this.resume();
  }

  /** The end: the one place the owner hears how the upload ended. */
  private settle(): void {
    if (this.state === "settled") return; // a bug ended it meanwhile (resume)
    this.move("settled");
    const ending = this.ending;
    // Committed, failed or discarded: a resumable upload is over (its file is gone by now). A parked
    // one stays in the table, which holds its file now.
    if (this.partial !== null && ending?.kind !== "parked") this.partial.table.drop(this.partial.entry);
    this.closeDupSocket();
    this.resolveDone();
    if (this.ownerGone) return;
    if (ending === null) return this.owner.onUploadDone(this.expectedBytes);
    switch (ending.kind) {
      case "io":
        return this.owner.onUploadFailed(failureOfErrno(ending.error.errno), causeOfErrno(ending.error.errno));
      case "digest":
        return this.owner.onUploadFailed(Failure.DIGEST_MISMATCH, DIGEST_MISMATCH_CAUSE);
      case "md5":
        return this.owner.onUploadFailed(Failure.DIGEST_MISMATCH, MD5_MISMATCH_CAUSE);
      case "bug":
        return this.owner.onStoreBug(ending.error);
      case "aborted":
      case "parked":
        throw new Error(`upload: ended ${ending.kind} with its owner present`);
    }
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
