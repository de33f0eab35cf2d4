// One client connection: one explicit state machine for the five exchanges of docs/PROTOCOL.md.
//
// Socket callbacks only feed bytes (`onData`) and drain events (`onDrain`) in; everything else is a
// state transition here. Bytes may arrive in any split: a frame a byte at a time, or a frame, a body
// and the next frame in one chunk. While an exchange waits on the disk, input that arrives is kept
// (`stash`) and reading pauses, so a pipelining client is served in order with bounded memory.
//
//   frame ──BENCH──────────────────────────────────────────────────────▶ frame
//   frame ──UPLOAD──▶ waiting ──START──▶ upload_body ──▶ committing ──END──▶ upload_ack ──ACK──▶ frame
//                                                                  └─error──▶ upload_error (ACK optional)
//   frame ──DOWNLOAD──▶ waiting ──START──▶ download_body ──END──▶ download_ack ──ACK──▶ frame
//   frame ──EXIST / DELETE──▶ waiting ──reply──▶ frame
import type { Socket } from "bun";
import { S_IFDIR, S_IFMT, S_IFREG, WOULD_BLOCK, type IoTarget } from "../engine/io-engine";
import { clientText, clientTextOfErrno, errnoName } from "../engine/io-error";
import type { WireCodec } from "../protocol/codec";
import { FrameDecoder } from "../protocol/frame-decoder";
import { FileType, headerProblem, Msg, Op, ProtocolError, type MessageInit, type WireMessage } from "../protocol/message";
import { checkKey, type CheckedKey } from "../storage/keys";
import type { ReadHandle, Store } from "../storage/store";
import { UploadStream, type UploadOwner } from "../storage/upload-stream";
import type { Logger } from "../log";
import type { BufferPool } from "./buffer-pool";
import type { ServerStats, StatOp } from "../observe/stats";

export type ConnectionState =
  | "frame" // between exchanges: reading a request frame
  | "waiting" // an engine call decides the next step; input is stashed
  | "upload_body" // reading the raw body of an upload
  | "committing" // body complete; waiting for the file to be committed
  | "upload_ack" // END sent; the next frame must be the client's ACK
  | "upload_error" // an error text ended the upload; an ACK frame, if the client sends one, is skipped
  | "download_body" // sending the raw body of a download
  | "download_ack" // END sent; the next frame must be the client's ACK
  | "closed";

/** What a connection needs from its server; the server owns bounds, counters and shutdown. */
export interface ConnectionHost {
  readonly store: Store;
  readonly codec: WireCodec;
  readonly log: Logger;
  readonly stats: ServerStats;
  readonly frameBytesMax: number;
  readonly connectionBufferBytesMax: number;
  readonly uploadBytesMax: number;
  readonly inlineBytesMax: number;
  readonly ioChunkBytes: number;
  readonly uploadWritesInFlightMax: number;
  /** Buffers of FRAME_ROOM + inlineBytesMax + FRAME_ROOM bytes for small downloads. */
  readonly inlineBuffers: BufferPool;
  /** Keeps a cleanup (temporary file removal, fd close) visible to shutdown until it settles. */
  track(work: Promise<unknown>): void;
  /** The same for work without a promise: one workDone() follows each workStarted(). */
  workStarted(): void;
  workDone(): void;
  /** True once the server is draining: a connection closes when its exchange is over. */
  readonly draining: boolean;
  onConnectionClosed(conn: Connection): void;
}

/** Room kept before and after an inline download's body for its START and END frames. */
export const FRAME_ROOM = 1024;

function fileTypeOf(mode: number): number {
  const format = mode & S_IFMT;
  return format === S_IFREG ? FileType.FILE : format === S_IFDIR ? FileType.DIR : FileType.UNSET;
}

// What a callback-form engine call in flight will decide (ioWaiting).
const IO_NONE = 0;
const IO_EXIST = 1;
const IO_DELETE = 2;
const IO_COMMIT = 3;

const PAUSE_STASH = 1; // input arrived while an engine call decides what comes next
const PAUSE_BACKLOG = 2; // an upload holds more than connectionBufferBytesMax not yet on disk
const PAUSE_OUTPUT = 4; // replies the client does not read hold more than connectionBufferBytesMax

export class Connection implements UploadOwner, IoTarget {
  state: ConnectionState = "frame";
  /** Date.now() of the last sign of life: bytes in, a drain, an engine completion. */
  lastActiveMs = Date.now();

  private readonly decoder: FrameDecoder;
  private stash: Uint8Array | null = null;
  private pausedBy = 0;
  /** Reply bytes the socket did not take yet, oldest first, and how many. */
  private readonly outQueue: Uint8Array[] = [];
  private outQueuedBytes = 0;

  // The exchange in progress.
  private key = "";
  private keyHash = 0;
  private bodyRemaining = 0;
  /** The upload's body is gathered whole in memory and committed in one engine call. */
  private inlineUpload = false;
  /** Its bytes: the one data chunk that held all of them (no copy), or a pooled buffer they were
   *  gathered into; a pooled one goes back to the pool once the commit settles. */
  private inlineBody: Uint8Array | null = null;
  private inlineBodyPooled = false;
  private inlineFilled = 0;
  /** The callback-form engine call in flight (IO_*), answered through onIoDone. */
  private ioWaiting = IO_NONE;
  private upload: UploadStream | null = null;
  private download: ReadHandle | null = null;
  private downloadBuffer: Uint8Array | null = null;
  private downloadPosition = 0;
  private downloadReadInFlight = false;
  // The exchange's numbers, for stats.
  private exchangeStart = 0;
  private exchangeOp: StatOp = "bench";
  private exchangeBytes = 0;
  /** An inline-download buffer whose bytes still wait in outQueue. */
  private heldBuffer: Uint8Array | null = null;

  constructor(
    private readonly socket: Socket<Connection>,
    private readonly host: ConnectionHost,
  ) {
    this.decoder = new FrameDecoder(host.frameBytesMax);
  }

  /** A getter, so that checks after an await are not narrowed away by the compiler. */
  get isClosed(): boolean {
    return this.state === "closed";
  }

  get remote(): string {
    return `${this.socket.remoteAddress}:${this.socket.remotePort}`;
  }

  /** Waiting on the disk, not on the client: the idle timeout does not apply. */
  get waitingOnServer(): boolean {
    return this.state === "waiting" || this.state === "committing" || (this.pausedBy & PAUSE_BACKLOG) !== 0;
  }

  /** Between exchanges with no partial frame: closing now loses nothing. */
  get betweenExchanges(): boolean {
    return this.state === "frame" && !this.decoder.midFrame && this.stash === null;
  }

  // ---- socket events ----

  onData(chunk: Uint8Array): void {
    this.lastActiveMs = Date.now();
    if (this.isClosed) return;
    if (this.stash !== null) {
      this.stashMore(chunk);
      return;
    }
    this.consume(chunk, 0);
  }

  onDrain(): void {
    this.lastActiveMs = Date.now();
    this.flushOut();
    if (this.outQueue.length === 0 && this.state === "download_body" && !this.downloadReadInFlight) {
      this.continueDownload();
    }
  }

  /** The socket is gone: release what the exchange holds. */
  onClose(): void {
    if (this.isClosed) return;
    const committing = this.state === "committing";
    this.state = "closed";
    this.stash = null;
    this.outQueue.length = 0;
    this.outQueuedBytes = 0;
    if (this.upload !== null) {
      this.host.track(this.upload.abort());
      this.upload = null;
    }
    // Mid-body, the gathered bytes are dropped; while committing, the engine still reads them and
    // the commit's settlement returns the buffer.
    if (!committing) this.releaseInlineBody();
    if (this.download !== null && !this.downloadReadInFlight) this.closeDownloadFile();
    this.host.onConnectionClosed(this);
  }

  /** Closes the connection from the server side (violation, idle, shutdown). */
  close(reason: string): void {
    if (this.isClosed) return;
    this.host.log.debug("connection_closed", { remote: this.remote, reason });
    this.socket.end();
    this.onClose();
  }

  // ---- input ----

  private consume(chunk: Uint8Array, offset: number): void {
    try {
      while (offset < chunk.length) {
        switch (this.state) {
          case "frame":
          case "upload_ack":
          case "upload_error":
          case "download_ack": {
            offset += this.decoder.feed(chunk, offset);
            const frame = this.decoder.takeFrame();
            if (frame !== null) this.onFrame(frame);
            break;
          }
          case "upload_body": {
            const take = Math.min(this.bodyRemaining, chunk.length - offset);
            this.onBody(chunk.subarray(offset, offset + take));
            offset += take;
            break;
          }
          case "closed":
            return;
          default:
            // An engine call decides what the rest means: keep it and stop reading until then.
            this.stash = chunk.subarray(offset);
            this.pause(PAUSE_STASH);
            return;
        }
      }
    } catch (e) {
      if (e instanceof ProtocolError) {
        this.violation(e.message);
      } else {
        this.bug(e);
      }
    }
  }

  /** A bug in this connection's code: say so with the stack, and close only this connection. */
  private bug(e: unknown): void {
    this.host.log.error("connection_bug", { remote: this.remote, state: this.state, error: String((e as Error)?.stack ?? e) });
    this.close("internal error");
  }

  /** The peer broke the protocol: count it, say why, and close (as the Go original does). */
  private violation(reason: string): void {
    this.host.stats.protocolViolations++;
    this.host.log.warn("protocol_violation", { remote: this.remote, state: this.state, reason });
    this.close("protocol violation");
  }

  private stashMore(chunk: Uint8Array): void {
    const old = this.stash!;
    if (old.length + chunk.length > this.host.connectionBufferBytesMax + this.host.frameBytesMax) {
      this.violation("sent too much without waiting for a reply");
      return;
    }
    const joined = new Uint8Array(old.length + chunk.length);
    joined.set(old);
    joined.set(chunk, old.length);
    this.stash = joined;
  }

  /** An engine call settled and the state reads input again: process what was stashed. */
  private resumeInput(): void {
    if (this.isClosed) return;
    if (this.host.draining && this.betweenExchanges) {
      this.close("server shutting down");
      return;
    }
    const stash = this.stash;
    this.stash = null;
    this.unpause(PAUSE_STASH);
    if (stash !== null) this.consume(stash, 0);
  }

  private onFrame(bytes: Uint8Array): void {
    const msg = this.host.codec.decode(bytes);
    const problem = headerProblem(msg);
    if (problem !== null) throw new ProtocolError(problem);
    switch (this.state) {
      case "upload_ack":
        this.expectAck(msg, Op.UPLOAD);
        return;
      case "download_ack":
        this.expectAck(msg, Op.DOWNLOAD);
        return;
      case "upload_error":
        this.state = "frame";
        if (msg.operation === Op.UPLOAD && msg.message === Msg.ACK) return this.endExchange();
        break;
    }
    this.onRequest(msg);
  }

  private expectAck(msg: WireMessage, op: number): void {
    if (msg.operation !== op || msg.message !== Msg.ACK) {
      throw new ProtocolError(`expected ACK with op ${op}, got op ${msg.operation} message ${JSON.stringify(msg.message)}`);
    }
    this.state = "frame";
    this.endExchange();
  }

  /** An exchange is over; a draining server lets the connection go now. */
  private endExchange(): void {
    if (this.host.draining && this.betweenExchanges) this.close("server shutting down");
  }

  private onRequest(msg: WireMessage): void {
    this.exchangeStart = performance.now();
    this.exchangeBytes = 0;
    this.key = msg.key;
    switch (msg.operation) {
      case Op.BENCH_MARK:
        this.exchangeOp = "bench";
        this.send({ operation: Op.BENCH_MARK_RSP, key: msg.key });
        this.exchangeDone(true);
        return this.endExchange();
      case Op.UPLOAD:
        this.exchangeOp = "upload";
        return this.startUpload(msg);
      case Op.DOWNLOAD:
        this.exchangeOp = "download";
        return this.startDownload(msg);
      case Op.EXIST:
        this.exchangeOp = "exist";
        return this.startExist(msg);
      case Op.DELETE:
        this.exchangeOp = "delete";
        return this.startDelete(msg);
      default:
        throw new ProtocolError(`unknown op ${msg.operation}`);
    }
  }

  /** The exchange's last reply is out: count it, and log it at debug level only. */
  private exchangeDone(ok: boolean): void {
    this.host.stats.exchange(this.exchangeOp, this.exchangeStart, ok ? this.exchangeBytes : 0, ok);
    const log = this.host.log;
    if (log.enabled("debug")) {
      log.debug("exchange", { remote: this.remote, op: this.exchangeOp, key: this.key, ok, bytes: this.exchangeBytes, ms: (performance.now() - this.exchangeStart).toFixed(3) });
    }
  }

  /** Validates the key; on failure answers with `replyOp` and the reason, and returns null. */
  private acceptKey(msg: WireMessage, replyOp: number): CheckedKey | null {
    const checked = checkKey(msg.key);
    if (typeof checked === "string") {
      this.key = msg.key;
      this.send({ operation: replyOp, key: msg.key, message: checked });
      this.exchangeDone(false);
      return null;
    }
    this.key = msg.key;
    this.keyHash = checked.hash;
    return checked;
  }

  // ---- upload ----

  private startUpload(msg: WireMessage): void {
    if (this.acceptKey(msg, Op.UPLOAD_RSP) === null) return;
    const size = msg.size;
    let refusal: string | null = null;
    if (!(size > 0)) refusal = `invalid size ${size}: an upload carries at least 1 byte`;
    else if (size > this.host.uploadBytesMax) refusal = `file too large: ${size} bytes exceeds the server's uploadBytesMax ${this.host.uploadBytesMax}`;
    if (refusal !== null) {
      this.send({ operation: Op.UPLOAD_RSP, key: msg.key, message: refusal });
      this.exchangeDone(false);
      return;
    }
    this.bodyRemaining = size;
    this.exchangeBytes = size;
    if (size <= this.host.inlineBytesMax) {
      // Small body: gather it whole (bounded by inlineBytesMax) and commit it in one engine call.
      this.inlineUpload = true;
      this.inlineFilled = 0;
      this.state = "upload_body";
      this.send({ operation: Op.UPLOAD_RSP, key: msg.key, message: Msg.START });
      return;
    }
    const store = this.host.store;
    this.upload = new UploadStream(
      store.engine,
      store.tempPath(this.keyHash),
      store.finalPath(this.key, this.keyHash),
      store.fsyncOnCommit,
      this.host.ioChunkBytes,
      this.host.uploadWritesInFlightMax,
      this,
    );
    this.state = "waiting";
    void this.upload.open().then((error) => this.onUploadOpened(error));
  }

  private onUploadOpened(error: unknown): void {
    this.lastActiveMs = Date.now();
    if (this.isClosed) return;
    if (error !== null) {
      this.upload = null;
      this.logIoError("upload_open_failed", error);
      this.send({ operation: Op.UPLOAD_RSP, key: this.key, message: clientText(error) });
      this.exchangeDone(false);
      this.state = "frame";
    } else {
      this.send({ operation: Op.UPLOAD_RSP, key: this.key, message: Msg.START });
      this.state = "upload_body";
    }
    this.resumeInput();
  }

  private onBody(part: Uint8Array): void {
    this.bodyRemaining -= part.length;
    if (this.inlineUpload) {
      if (this.inlineFilled === 0 && this.bodyRemaining === 0) {
        this.inlineBody = part; // the whole body in one chunk: no copy (Bun never reuses the chunk)
      } else {
        if (this.inlineBody === null) {
          this.inlineBody = this.host.inlineBuffers.acquire();
          this.inlineBodyPooled = true;
        }
        this.inlineBody.set(part, this.inlineFilled);
      }
      this.inlineFilled += part.length;
    } else {
      const upload = this.upload!;
      // No copy: Bun hands each `data` callback a fresh buffer and never reuses it (proved by
      // test/server/bun-socket-buffers.test.ts), so the view stays valid until the engine wrote it.
      upload.push(part);
      if (upload.backlogBytes > this.host.connectionBufferBytesMax) this.pause(PAUSE_BACKLOG);
    }
    if (this.bodyRemaining > 0) return;
    this.state = "committing";
    if (this.inlineUpload) {
      this.inlineUpload = false;
      // Shutdown waits for the commit: the engine reads the body until it completes.
      this.host.workStarted();
      this.ioWaiting = IO_COMMIT;
      this.host.store.commitWholeTo(this.key, this.keyHash, this.inlineBody!.subarray(0, this.inlineFilled), this);
    } else {
      this.upload!.end();
    }
  }

  private releaseInlineBody(): void {
    if (this.inlineBodyPooled) this.host.inlineBuffers.release(this.inlineBody!);
    this.inlineBody = null;
    this.inlineBodyPooled = false;
    this.inlineUpload = false;
  }

  onUploadProgress(): void {
    this.lastActiveMs = Date.now();
    if (this.upload !== null && this.upload.backlogBytes <= this.host.connectionBufferBytesMax / 2) {
      this.unpause(PAUSE_BACKLOG);
    }
  }

  onUploadSettled(error: unknown): void {
    if (error !== null && !this.isClosed) this.logIoError("upload_failed", error);
    this.uploadEnded(error === null ? null : clientText(error), "");
  }

  /** The body is committed (errorText null) or not; a failure's `logDetail` is logged unless empty. */
  private uploadEnded(errorText: string | null, logDetail: string): void {
    this.lastActiveMs = Date.now();
    this.upload = null;
    this.unpause(PAUSE_BACKLOG);
    if (this.isClosed) return;
    if (errorText === null) {
      this.send({ operation: Op.UPLOAD, key: this.key, message: Msg.END });
      this.exchangeDone(true);
      this.state = "upload_ack";
    } else {
      if (logDetail !== "") this.logFailure("upload_failed", errorText, logDetail);
      this.send({ operation: Op.UPLOAD, key: this.key, message: errorText });
      this.exchangeDone(false);
      this.state = "upload_error";
    }
    this.resumeInput();
  }

  // ---- download ----

  private startDownload(msg: WireMessage): void {
    if (this.acceptKey(msg, Op.DOWNLOAD_RSP) === null) return;
    const inlineMax = this.host.inlineBytesMax;
    if (inlineMax === 0) return void this.downloadStreamed();
    // Small file: read whole, so an error can still be answered, and one socket write sends START,
    // the body and END together. First inline, from the page cache; else on the engine.
    const buffer = this.host.inlineBuffers.acquire();
    const body = buffer.subarray(FRAME_ROOM, FRAME_ROOM + inlineMax);
    const size = this.host.store.readNow(this.key, this.keyHash, body);
    if (size >= 0 && size <= inlineMax) return this.sendWholeDownload(buffer, size);
    if (size === WOULD_BLOCK) return void this.downloadWholeOnEngine(buffer, body);
    this.host.inlineBuffers.release(buffer);
    if (size < 0) return this.answerErrno(Op.DOWNLOAD_RSP, "download_read_failed", size);
    void this.downloadStreamed(); // larger than inlineBytesMax
  }

  /** The inline read was refused: the engine reads the file whole, or says it is too large. */
  private async downloadWholeOnEngine(buffer: Uint8Array, body: Uint8Array): Promise<void> {
    this.state = "waiting";
    const store = this.host.store;
    const inlineMax = this.host.inlineBytesMax;
    let size: number;
    try {
      size = await store.engine.readWhole(store.finalPath(this.key, this.keyHash), body);
    } catch (e) {
      this.host.inlineBuffers.release(buffer);
      return this.answerError(Op.DOWNLOAD_RSP, "download_read_failed", e);
    }
    this.lastActiveMs = Date.now();
    if (size <= inlineMax) return this.sendWholeDownload(buffer, size);
    this.host.inlineBuffers.release(buffer);
    if (this.isClosed) return;
    return this.downloadStreamed();
  }

  private async downloadStreamed(): Promise<void> {
    this.state = "waiting";
    const store = this.host.store;
    let handle: ReadHandle;
    try {
      handle = await store.openForRead(this.key, this.keyHash);
    } catch (e) {
      return this.answerError(Op.DOWNLOAD_RSP, "download_open_failed", e);
    }
    this.lastActiveMs = Date.now();
    this.download = handle;
    if (this.isClosed) return this.closeDownloadFile();
    this.send({ operation: Op.DOWNLOAD_RSP, key: this.key, message: Msg.START, size: handle.size, type: FileType.FILE });
    this.downloadBuffer = new Uint8Array(Math.max(1, Math.min(this.host.ioChunkBytes, handle.size)));
    this.downloadPosition = 0;
    this.state = "download_body";
    this.continueDownload();
  }

  /**
   * Sends START, the body (already at FRAME_ROOM in `buffer`) and END as one write: the frames are
   * encoded into the room around the body, so the body is not copied. A frame always fits its room:
   * a key is at most 255 bytes, so even a JSON frame of a key of 255 escaped quotes is ~700 bytes.
   */
  private sendWholeDownload(buffer: Uint8Array, size: number): void {
    if (this.isClosed) return this.host.inlineBuffers.release(buffer);
    const codec = this.host.codec;
    const start = codec.encodeFrame({ operation: Op.DOWNLOAD_RSP, key: this.key, message: Msg.START, size, type: FileType.FILE });
    const end = codec.encodeFrame({ operation: Op.DOWNLOAD, key: this.key, message: Msg.END });
    const bodyEnd = FRAME_ROOM + size;
    if (start.length > FRAME_ROOM || end.length > FRAME_ROOM) throw new Error(`reply frame of ${start.length} bytes exceeds FRAME_ROOM`);
    buffer.set(start, FRAME_ROOM - start.length);
    buffer.set(end, bodyEnd);
    this.sendBytes(buffer.subarray(FRAME_ROOM - start.length, bodyEnd + end.length));
    // The socket copied what it took; if some bytes wait in outQueue, they are views of `buffer`,
    // which goes back to the pool only once they are sent.
    if (this.outQueue.length === 0) this.host.inlineBuffers.release(buffer);
    else this.heldBuffer = buffer;
    this.exchangeBytes = size;
    this.exchangeDone(true);
    this.state = "download_ack";
    this.resumeInput();
  }

  /** Reads the next piece of a streamed download; called when the socket has taken the last one. */
  private continueDownload(): void {
    const handle = this.download!;
    if (this.downloadPosition >= handle.size) {
      this.closeDownloadFile();
      this.send({ operation: Op.DOWNLOAD, key: this.key, message: Msg.END });
      this.exchangeBytes = handle.size;
      this.exchangeDone(true);
      this.state = "download_ack";
      this.resumeInput();
      return;
    }
    const buffer = this.downloadBuffer!;
    const want = Math.min(buffer.length, handle.size - this.downloadPosition);
    this.downloadReadInFlight = true;
    this.host.store.engine
      .read(handle.fd, want === buffer.length ? buffer : buffer.subarray(0, want), this.downloadPosition)
      .then(this.onDownloadRead, this.onDownloadReadFailed);
  }

  private readonly onDownloadRead = (n: number): void => {
    this.downloadReadInFlight = false;
    this.lastActiveMs = Date.now();
    if (this.isClosed) return this.closeDownloadFile();
    if (n === 0) {
      // The START frame promised more bytes than the file now has: the stream cannot recover.
      this.host.log.error("download_short", { remote: this.remote, key: this.key });
      this.exchangeDone(false);
      return this.close("file shrank during download");
    }
    this.downloadPosition += n;
    this.sendBytes(this.downloadBuffer!.subarray(0, n));
    // The socket copies what it takes, and the rest waits in outQueue: the buffer is reused only
    // once the queue is empty.
    if (this.outQueue.length === 0) this.continueDownload();
  };

  private readonly onDownloadReadFailed = (e: unknown): void => {
    this.downloadReadInFlight = false;
    this.logIoError("download_read_failed", e);
    this.exchangeDone(false);
    this.closeDownloadFile();
    this.close("read failed mid-download");
  };

  private closeDownloadFile(): void {
    const handle = this.download;
    if (handle === null) return;
    this.download = null;
    this.downloadBuffer = null;
    this.host.track(this.host.store.engine.close(handle.fd).catch(() => {}));
  }

  // ---- exist, delete ----

  private startExist(msg: WireMessage): void {
    if (this.acceptKey(msg, Op.EXIST_RSP) === null) return;
    const store = this.host.store;
    const size = store.statNow(this.key, this.keyHash);
    if (size === WOULD_BLOCK) return this.existOnEngine();
    if (size < 0) return this.answerErrno(Op.EXIST_RSP, "exist_failed", size);
    this.answerExist(size, fileTypeOf(store.lastMode));
  }

  /** The inline stat was refused (not cached): the engine looks. */
  private existOnEngine(): void {
    this.wait(IO_EXIST);
    this.host.store.statTo(this.key, this.keyHash, this);
  }

  private answerExist(size: number, type: number): void {
    this.send({ operation: Op.EXIST_RSP, key: this.key, size, type, message: Msg.SUCCESS });
    this.exchangeDone(true);
    this.state = "frame";
    this.resumeInput();
  }

  private startDelete(msg: WireMessage): void {
    if (this.acceptKey(msg, Op.DELETE_RSP) === null) return;
    this.wait(IO_DELETE);
    this.host.store.removeTo(this.key, this.keyHash, this);
  }

  // ---- completions of callback-form engine calls (IoTarget) ----

  /** An engine call now decides what comes next; its result reaches onIoDone. */
  private wait(io: number): void {
    this.state = "waiting";
    this.ioWaiting = io;
  }

  onIoDone(result: number, aux: number): void {
    const io = this.ioWaiting;
    this.ioWaiting = IO_NONE;
    this.lastActiveMs = Date.now();
    try {
      switch (io) {
        case IO_EXIST:
          if (this.isClosed) return;
          if (result < 0) return this.answerErrno(Op.EXIST_RSP, "exist_failed", result);
          return this.answerExist(result, fileTypeOf(aux));
        case IO_DELETE:
          if (this.isClosed) return;
          if (result < 0) return this.answerErrno(Op.DELETE_RSP, "delete_failed", result);
          this.send({ operation: Op.DELETE_RSP, key: this.key, message: Msg.SUCCESS });
          this.exchangeDone(true);
          this.state = "frame";
          return this.resumeInput();
        case IO_COMMIT:
          this.host.workDone();
          this.releaseInlineBody();
          return this.uploadEnded(result < 0 ? clientTextOfErrno(result) : null, result < 0 ? `commit: ${errnoName(result)}` : "");
        default:
          throw new Error(`an I/O completion (result ${result}) arrived with nothing waiting for it`);
      }
    } catch (e) {
      this.bug(e);
    }
  }

  /** Ends a waiting exchange with the client-facing text of an engine error. */
  private answerError(op: number, event: string, e: unknown): void {
    this.logIoError(event, e);
    this.answerText(op, clientText(e));
  }

  /** Ends an exchange with the client-facing text of an inline operation's -errno. */
  private answerErrno(op: number, event: string, negErrno: number): void {
    const text = clientTextOfErrno(negErrno);
    this.logFailure(event, text, errnoName(negErrno));
    this.answerText(op, text);
  }

  private answerText(op: number, text: string): void {
    this.lastActiveMs = Date.now();
    if (this.isClosed) return;
    this.send({ operation: op, key: this.key, message: text });
    this.exchangeDone(false);
    this.state = "frame";
    this.resumeInput();
  }

  private logIoError(event: string, e: unknown): void {
    this.logFailure(event, clientText(e), String((e as Error)?.message ?? e));
  }

  private logFailure(event: string, text: string, detail: string): void {
    // "no such key" is an everyday answer, not a server problem: no line, and nothing built for one.
    const log = this.host.log;
    if (text !== "no such key") log.warn(event, { remote: this.remote, key: this.key, error: detail });
    else if (log.enabled("debug")) log.debug(event, { remote: this.remote, key: this.key, error: text });
  }

  // ---- output ----

  private send(msg: MessageInit): void {
    this.sendBytes(this.host.codec.encodeFrame(msg));
  }

  /**
   * Writes a reply, queueing what the socket does not take. A client that sends requests without
   * reading the replies would grow the queue without end: past connectionBufferBytesMax, reading
   * pauses until the client has taken half of it.
   */
  private sendBytes(bytes: Uint8Array): void {
    if (this.isClosed) return;
    if (this.outQueue.length === 0) {
      const n = this.socket.write(bytes);
      if (n < 0) return; // closed underneath us; onClose follows
      if (n === bytes.length) return;
      bytes = bytes.subarray(n);
    }
    this.outQueue.push(bytes);
    this.outQueuedBytes += bytes.length;
    if (this.outQueuedBytes > this.host.connectionBufferBytesMax) this.pause(PAUSE_OUTPUT);
  }

  private flushOut(): void {
    while (this.outQueue.length > 0) {
      const bytes = this.outQueue[0]!;
      const n = this.socket.write(bytes);
      if (n < 0) return;
      this.outQueuedBytes -= Math.max(0, n);
      if (n < bytes.length) {
        this.outQueue[0] = bytes.subarray(n);
        if (this.outQueuedBytes <= this.host.connectionBufferBytesMax / 2) this.unpause(PAUSE_OUTPUT);
        return;
      }
      this.outQueue.shift();
    }
    this.unpause(PAUSE_OUTPUT);
    if (this.heldBuffer !== null) {
      this.host.inlineBuffers.release(this.heldBuffer);
      this.heldBuffer = null;
    }
  }

  // ---- flow control ----

  private pause(reason: number): void {
    if (this.pausedBy === 0) this.socket.pause();
    this.pausedBy |= reason;
  }

  private unpause(reason: number): void {
    if ((this.pausedBy & reason) === 0) return;
    this.pausedBy &= ~reason;
    if (this.pausedBy === 0 && this.state !== "closed") this.socket.resume();
  }
}
