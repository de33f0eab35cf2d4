// One client connection: one explicit state machine for the exchanges of docs/PROTOCOL.md (bench,
// upload, download, exist, delete, and the extensions AUTH, RESUME and LIST).
//
// Socket callbacks only feed bytes (`onData`) and drain events (`onDrain`) in, and the store
// answers through typed results (onStoreDone, onStat, onStoreFailed, onUploadDone,
// onUploadFailed); everything else is a move between the states below, made by move(), which
// asserts that the move is legal. Bytes may arrive in any split: a frame a byte at a time, or a
// frame, a body and the next frame in one chunk. While the store decides (or a download's body is
// leaving), input that arrives is kept (`stash`) and reading pauses, so a pipelining client is
// served in order with bounded memory.
//
//   frame ──BENCH / AUTH / a refusal──────────────────────────────────────────────────▶ frame
//   frame ──EXIST──▶ exist ──answer──▶ frame          frame ──DELETE──▶ delete ──answer──▶ frame
//   frame ──LIST──▶ list ──START+page──▶ frame
//   frame ──UPLOAD (small)──START──▶ upload_body ──▶ upload_commit ──END──▶ upload_ack ──ACK──▶ frame
//   frame ──UPLOAD / RESUME──▶ upload_open ──START──▶ upload_body ⇄ upload_receive ──▶ upload_commit
//                                                   (the store moves the body itself: splice)  │
//                                     upload_commit ──error text──▶ upload_error (ACK skipped) ─┘──▶ frame
//   frame ──DOWNLOAD (small)──▶ download_whole ──START+body+END──▶ download_ack ──ACK──▶ frame
//   frame ──DOWNLOAD──▶ download_open ──START──▶ download_read / download_send ⇄ download_drain
//                                                   ──END──▶ download_ack ──ACK──▶ frame
//   every state ──close──▶ closed (a store result that arrives later finds `closedIn`)
//
// Storage is reached only through the Store interface (src/storage/store.ts): this file knows no
// path, descriptor or errno. Every entry from the store and from the socket catches what it runs:
// a bug closes this connection with a logged `connection_bug`, never the process.
import type { Socket } from "bun";
import type { WireCodec } from "../protocol/codec";
import { FrameDecoder } from "../protocol/frame-decoder";
import { FileType, headerProblem, Msg, Op, ProtocolError, type MessageInit, type WireMessage } from "../protocol/message";
import { checkKey, type StoreKey } from "../storage/keys";
import { DIGEST_BYTES, FACT_SHA256, EntryType, Failure, type BodyReader, type EntryKind, type FailureCause, type FailureKind, type StatTarget, type Store, type UploadOwner, type UploadSink, type ListPage } from "../storage/store";
import type { Logger } from "../log";
import { GatheredBody, type BufferPool } from "./buffer-pool";
import type { ServerStats, StatOp } from "../observe/stats";
import { Access, DEFAULT_BUCKET, scopeHasBucket, type TokenScope, type Verified } from "../auth/token";
import { stableBytes } from "../util/stable-bytes";
import { SHUTDOWN_TEXT } from "../protocol/message";
import { listRequestOf } from "./listing";

export type ConnectionState =
  | "frame" // between exchanges: reading a request frame
  | "exist" // the store looks the key up
  | "delete" // the store removes the key
  | "list" // the store reads a page of the listing
  | "upload_open" // the store prepares a streamed upload (or takes a parked one back: RESUME)
  | "upload_body" // reading the raw body of an upload
  | "upload_receive" // the store moves the body from the socket itself (splice): Bun reads nothing
  | "upload_commit" // the body is whole: the store stores it (small: in one call) or commits it
  | "upload_ack" // END sent; the next frame must be the client's ACK
  | "upload_error" // an error text ended the upload; an ACK frame, if the client sends one, is skipped
  | "download_whole" // the store reads a small file whole (or says its size: too large for that)
  | "download_open" // the store opens a streamed download
  | "download_read" // the store reads the next bytes of the body into memory
  | "download_send" // the store sends the next bytes of the body to the socket itself (sendfile)
  | "download_drain" // bytes wait for the socket: the next piece goes once it drains
  | "download_ack" // END sent; the next frame must be the client's ACK
  | "closed";

/** The moves the machine may make; move() asserts every one against this table. */
const LEGAL: Record<ConnectionState, readonly ConnectionState[]> = {
  frame: ["frame", "exist", "delete", "list", "upload_open", "upload_body", "download_whole", "download_open", "closed"],
  exist: ["frame", "closed"],
  delete: ["frame", "closed"],
  list: ["frame", "closed"],
  upload_open: ["upload_body", "upload_commit", "frame", "closed"],
  upload_body: ["upload_receive", "upload_commit", "closed"],
  upload_receive: ["upload_receive", "upload_body", "upload_commit", "closed"],
  upload_commit: ["upload_ack", "upload_error", "closed"],
  upload_ack: ["frame", "closed"],
  upload_error: ["frame", "closed"],
  download_whole: ["download_ack", "download_open", "frame", "closed"],
  download_open: ["download_read", "download_send", "download_drain", "download_ack", "frame", "closed"],
  download_read: ["download_read", "download_drain", "download_ack", "closed"],
  download_send: ["download_send", "download_drain", "download_ack", "closed"],
  download_drain: ["download_read", "download_send", "download_ack", "closed"],
  download_ack: ["frame", "closed"],
  closed: [],
};

/** States in which the store, not the client, decides what comes next: the idle timeout waits. */
const WAITING_ON_STORE: ReadonlySet<ConnectionState> = new Set(["exist", "delete", "list", "upload_open", "upload_commit", "download_whole", "download_open"]);

/** What a connection needs from its server; the server owns bounds, counters and shutdown. */
export interface ConnectionHost {
  readonly store: Store;
  readonly codec: WireCodec;
  readonly log: Logger;
  readonly stats: ServerStats;
  readonly frameBytesMax: number;
  readonly connectionBufferBytesMax: number;
  readonly uploadBytesMax: number;
  /** listPageBytesMax: the bytes of one LIST page's lines. */
  readonly listPageBytesMax: number;
  readonly inlineBytesMax: number;
  readonly ioChunkBytes: number;
  readonly uploadWritesInFlightMax: number;
  /** Buffers of FRAME_ROOM + inlineBytesMax + FRAME_ROOM bytes for small downloads. */
  readonly inlineBuffers: BufferPool;
  /** Downloads by sendfile when the store offers it and the socket's descriptor is known. */
  readonly zeroCopy: boolean;
  /** This socket's kernel descriptor, checked, or -1 (said once per process why not). */
  socketDescriptor(socket: Socket<Connection>): number;
  /** Keeps a cleanup (temporary file removal, fd close) visible to shutdown until it settles. */
  track(work: Promise<unknown>): void;
  /** The same for work without a promise: one workDone() follows each workStarted(). */
  workStarted(): void;
  workDone(): void;
  /** True once the server is draining: a connection closes when its exchange is over. */
  readonly draining: boolean;
  onConnectionClosed(conn: Connection): void;
  /** auth "token": every exchange but AUTH needs a token's scope first. */
  readonly tokensRequired: boolean;
  /** Checks a token's signature (the scope's expiry is the connection's to judge). */
  verifyToken(token: string): Verified;
  /** Counts a failed AUTH from this connection's address: true when the address is now blocked. */
  authFailed(conn: Connection): boolean;
  /**
   * auth "token": this connection's AUTH succeeded (true), or its token was revoked (false): it
   * leaves, or joins again, the unauthenticated connections, which have a deadline and a budget.
   */
  authenticatedChanged(conn: Connection, authenticated: boolean): void;
}

/** Room kept before and after an inline download's body for its START and END frames. */
export const FRAME_ROOM = 1024;

function fileTypeOf(entry: EntryKind): number {
  return entry === EntryType.FILE ? FileType.FILE : entry === EntryType.DIR ? FileType.DIR : FileType.UNSET;
}

/** 64 hex digits (either case) -> the 32-byte SHA-256, or null when the text is not that. */
export function digestFromHex(text: string): Uint8Array | null {
  if (text.length !== 64 || !/^[0-9a-fA-F]{64}$/.test(text)) return null;
  return new Uint8Array(Buffer.from(text, "hex"));
}

/** The reply text of a store failure: short, human, the same whatever the store. */
export function replyText(kind: FailureKind): string {
  switch (kind) {
    case Failure.NOT_FOUND:
      return "no such key";
    case Failure.NOT_A_FILE:
      return "not a file";
    case Failure.NO_SPACE:
      return "disk full";
    case Failure.PERMISSION:
      return "permission denied";
    case Failure.BUSY:
      return "server busy: try again";
    case Failure.UNAVAILABLE:
      return "store unavailable";
    case Failure.TIMEOUT:
      return "store timeout";
    case Failure.TOO_LARGE:
      return "file too large";
    case Failure.DIGEST_MISMATCH:
      return "digest mismatch";
    case Failure.NO_UPLOAD:
      return "no such upload";
    case Failure.UPLOAD_BUSY:
      return "upload in progress on another connection";
    case Failure.LINK_REFUSED:
      return "refused: a symbolic link stands in the data directory";
    default:
      return "I/O error";
  }
}

const PAUSE_STASH = 1; // input arrived while the store decides what comes next
const PAUSE_BACKLOG = 2; // an upload holds more than connectionBufferBytesMax not yet stored
const PAUSE_OUTPUT = 4; // replies the client does not read hold more than connectionBufferBytesMax
const PAUSE_RECEIVE = 8; // the store moves the upload's body from the socket itself: Bun must not read

/** Reading resumes once a paused-for buffer has drained to this fraction of its bound. */
const RESUME_FRACTION = 0.5;

/** The part of a file a download asks for (extension fields Offset and Length). */
interface ByteRange {
  offset: number;
  /** null: to the end of the file. */
  length: number | null;
}

export class Connection implements StatTarget, UploadOwner {
  /** Moved only by move(); see the table LEGAL. */
  state: ConnectionState = "frame";
  /** The state the connection was in when it closed: what a store result arriving later was for. */
  private closedIn: ConnectionState = "frame";
  /** Date.now() of the last sign of life: bytes in, a drain, a store result. */
  lastActiveMs = Date.now();
  /**
   * Date.now() when this connection last had no token (opened, or its token revoked): with auth
   * "token" it must complete AUTH within authTimeoutMs of it (the server's sweeper checks).
   */
  unauthenticatedSinceMs = this.lastActiveMs;
  /** Date.now() when the request frame now being read began (its first byte): frameTimeoutMs runs from it. */
  private frameStartedMs = 0;

  private readonly decoder: FrameDecoder;
  /** Input kept while the store decides what it means, oldest first, and its bytes. */
  private readonly stash: Uint8Array[] = [];
  private stashBytes = 0;
  /** True while consume() runs: a result that arrives inside it must not consume the stash early. */
  private consuming = false;
  /** Why reading is paused: a set of independent reasons (PAUSE_*), each lifted on its own. */
  private pausedBy = 0;
  /** Reply bytes the socket did not take yet, oldest first, and how many. */
  private readonly outQueue: Uint8Array[] = [];
  private outQueuedBytes = 0;
  /** An inline-download buffer whose bytes still wait in outQueue. */
  private heldBuffer: Uint8Array | null = null;

  // The exchange in progress.
  /** The request's key as the client sent it (replies echo it), and once checked, the store's. */
  private keyText = "";
  private key: StoreKey | null = null;
  /** An upload exchange is an UPLOAD or a RESUME: the op of its START and of a refusal at its open. */
  private uploadReplyOp: number = Op.UPLOAD_RSP;
  private bodyRemaining = 0;
  /** A small upload's body, gathered whole; released once stored (or dropped). */
  private readonly body: GatheredBody;
  /** A streamed upload (null for a small one, gathered in `body`). */
  private upload: UploadSink | null = null;
  /** A small download's pooled buffer, from the read until its bytes leave. */
  private wholeBuffer: Uint8Array | null = null;
  /** A streamed download: the reader, its buffer (null: the store sends the body itself), and the bytes sent so far. */
  private reader: BodyReader | null = null;
  private readBuffer: Uint8Array | null = null;
  private bodySent = 0;
  /** The download's body: the whole file, or the range asked for. */
  private bodyLength = 0;
  private range: ByteRange | null = null;
  /** A zero-copy download's END frame, or what of it is still to send; null: encode END as usual. */
  private endFrame: Uint8Array | null = null;
  /** The socket's descriptor for zero-copy sends, once looked up: null when there is none. */
  private socketFd: number | null | undefined = undefined;
  /** Bun read body bytes while a receive ran: the bytes that receive moved are out of order. */
  private receiveInterrupted = false;
  // The exchange's numbers, for stats.
  private exchangeStart = 0;
  private exchangeOp: StatOp = "bench";
  private exchangeBytes = 0;
  /** The file's SHA-256 (DIGEST_BYTES: a flag, then 32 bytes) as the store reports it, reused by each exchange. */
  private readonly digest = stableBytes(DIGEST_BYTES); // stores write it from pool workers
  /** Its 32 digest bytes as a Buffer, made once: every answer that carries a digest hexes them. */
  private readonly digestBytes = Buffer.from(this.digest.buffer, 1, 32);
  /** What the token presented on this connection allows (auth "token"), or null before AUTH. */
  private scope: TokenScope | null = null;
  /** The token that gave `scope`, kept so that a reload of the secrets can check it again. */
  private token = "";
  /** The SHA-256 the upload in progress must have (from its request), or null. */
  private expectedDigest: Uint8Array | null = null;
  /** The client's address, for the per-address limits (kept: Bun's may be gone once closed). */
  readonly address: string;

  constructor(
    private readonly socket: Socket<Connection>,
    private readonly host: ConnectionHost,
  ) {
    this.decoder = new FrameDecoder(host.frameBytesMax);
    this.body = new GatheredBody(host.inlineBuffers);
    this.address = socket.remoteAddress;
  }

  /** The one way the state changes: a move the table does not allow is a bug of this file. */
  private move(to: ConnectionState): void {
    if (!LEGAL[this.state].includes(to)) throw new Error(`connection: illegal move ${this.state} -> ${to}`);
    this.state = to;
  }

  /** A getter, so that checks after a callback are not narrowed away by the compiler. */
  get isClosed(): boolean {
    return this.state === "closed";
  }

  get remote(): string {
    return `${this.socket.remoteAddress}:${this.socket.remotePort}`;
  }

  /** Waiting on the store, not on the client: the idle timeout does not apply. */
  get waitingOnServer(): boolean {
    return WAITING_ON_STORE.has(this.state) || (this.pausedBy & PAUSE_BACKLOG) !== 0;
  }

  /**
   * A request frame began more than `timeoutMs` before `nowMs` and is still not complete: a client
   * trickling a frame a byte at a time (each byte resets the idle timeout, not this deadline).
   */
  frameOverdue(nowMs: number, timeoutMs: number): boolean {
    return this.decoder.midFrame && nowMs - this.frameStartedMs > timeoutMs;
  }

  /** auth "token": whether an AUTH exchange succeeded and its token still holds. */
  get authenticated(): boolean {
    return this.scope !== null;
  }

  /** Between exchanges with no partial frame: closing now loses nothing. */
  get betweenExchanges(): boolean {
    return this.state === "frame" && !this.decoder.midFrame && this.stash.length === 0;
  }

  /**
   * What this connection is in the middle of, for the log when shutdown cuts it: null between
   * exchanges; else the exchange, its key, and the body bytes received (upload) or sent (download).
   */
  exchangeInFlight(): Record<string, string | number> | null {
    if (this.betweenExchanges || this.isClosed) return null;
    const fields: Record<string, string | number> = { remote: this.remote, state: this.state, op: this.exchangeOp, key: this.keyText };
    if (this.exchangeOp === "upload") fields.bytesReceived = this.exchangeBytes - this.bodyRemaining;
    if (this.exchangeOp === "upload") fields.bytesAnnounced = this.exchangeBytes;
    if (this.exchangeOp === "download" && this.reader !== null) fields.bytesSent = this.bodySent;
    return fields;
  }

  // ---- socket events ----

  onData(chunk: Uint8Array): void {
    this.lastActiveMs = Date.now();
    if (this.isClosed) return;
    if (this.state === "upload_receive") {
      // Bun read from a socket it was told not to read while the store receives from it. It does
      // so when the peer goes away mid-body; either way the body's order is lost from this receive
      // on: close. The upload drops what the interrupted receive moved (a resumable one keeps what
      // was on disk before it; any other is discarded with its temporary file).
      this.host.log.info("splice_interrupted", { remote: this.remote, key: this.keyText, bytes: chunk.length });
      this.receiveInterrupted = true;
      return this.close("data arrived during a spliced upload");
    }
    if (this.stash.length > 0) {
      this.stashMore(chunk);
      return;
    }
    this.consume(chunk, 0);
  }

  onDrain(): void {
    this.lastActiveMs = Date.now();
    try {
      this.flushOut();
      if (this.outQueue.length === 0 && this.state === "download_drain") this.continueDownload();
    } catch (e) {
      this.bug(e);
    }
  }

  /** The socket is gone: release what the exchange holds. */
  onClose(): void {
    if (this.isClosed) return;
    const from = this.state;
    this.closedIn = from;
    this.move("closed");
    this.stash.length = 0;
    this.stashBytes = 0;
    this.outQueue.length = 0;
    this.outQueuedBytes = 0;
    if (this.upload !== null) {
      this.host.track(this.upload.abort(this.receiveInterrupted));
      this.upload = null;
    }
    // A small body the store is storing, or a buffer it is filling, goes back when its result arrives.
    if (!(from === "upload_commit" && this.holdsSmallBody)) this.body.release();
    this.closeReader();
    this.host.onConnectionClosed(this);
  }

  /**
   * Shutdown's grace is over. An upload whose body is still on its way is answered why it ends
   * (SHUTDOWN_TEXT, in place of its END) before the connection closes: the client can say so and
   * send it again to the next server, instead of reporting a dropped connection. Any other
   * exchange is cut.
   */
  cutForShutdown(): void {
    if (this.state === "upload_open" || this.state === "upload_body" || this.state === "upload_receive") {
      this.send({ operation: Op.UPLOAD, key: this.keyText, message: SHUTDOWN_TEXT });
    }
    this.close("server shutting down");
  }

  /** Closes the connection from the server side (violation, idle, shutdown, bug). */
  close(reason: string): void {
    if (this.isClosed) return;
    this.host.log.debug("connection_closed", { remote: this.remote, reason });
    this.socket.end();
    this.onClose();
  }

  // ---- input ----

  private consume(chunk: Uint8Array, offset: number): void {
    this.consuming = true;
    try {
      while (offset < chunk.length) {
        switch (this.state) {
          case "frame":
          case "upload_ack":
          case "upload_error":
          case "download_ack": {
            // The frame deadline runs from a frame's first byte (kept only when one begins here).
            if (!this.decoder.midFrame) this.frameStartedMs = this.lastActiveMs;
            offset += this.decoder.feed(chunk, offset);
            const frame = this.decoder.takeFrame();
            if (frame !== null) this.onFrame(frame);
            break;
          }
          case "upload_body": {
            const take = Math.min(this.bodyRemaining, chunk.length - offset);
            // A chunk that is all body (the client waited for START) is passed as it is: the first
            // view of a fresh buffer makes JavaScriptCore give it an ArrayBuffer object of its own.
            this.onBody(offset === 0 && take === chunk.length ? chunk : chunk.subarray(offset, offset + take));
            offset += take;
            break;
          }
          case "closed":
            return;
          default:
            // The store decides what the rest means (or a body is leaving): keep it, in front of
            // anything stashed later, and stop reading until then.
            this.stash.unshift(chunk.subarray(offset));
            this.stashBytes += chunk.length - offset;
            this.pause(PAUSE_STASH);
            return;
        }
      }
    } catch (e) {
      if (e instanceof ProtocolError) this.violation(e.message);
      else this.bug(e);
    } finally {
      this.consuming = false;
    }
  }

  /**
   * The one guard: a bug in this connection's code (or its store's) is logged with its stack and
   * counted, and closes only this connection; the exchange's temporary file goes with it.
   */
  private bug(e: unknown): void {
    this.host.stats.connectionBugs++;
    this.host.log.error("connection_bug", { remote: this.remote, state: this.state, error: String((e as Error)?.stack ?? e) });
    this.close("internal error");
  }

  /** The peer broke the protocol: count it, say why, and close (as the Go original does). */
  private violation(reason: string): void {
    this.host.stats.protocolViolations++;
    this.host.log.warn("protocol_violation", { remote: this.remote, state: this.state, reason });
    this.close("protocol violation");
  }

  /** Keeps a chunk that arrived while earlier input waits: a list, so nothing is copied. */
  private stashMore(chunk: Uint8Array): void {
    if (this.stashBytes + chunk.length > this.host.connectionBufferBytesMax + this.host.frameBytesMax) {
      this.violation("sent too much without waiting for a reply");
      return;
    }
    this.stash.push(chunk);
    this.stashBytes += chunk.length;
  }

  /** The store settled and the state reads input again: process what was stashed. */
  private resumeInput(): void {
    if (this.isClosed) return;
    if (this.host.draining && this.betweenExchanges) {
      this.close("server shutting down");
      return;
    }
    this.unpause(PAUSE_STASH);
    // Inside consume() (a result that came synchronously), the chunk being read comes first: the
    // loop that called consume() goes on to the stash afterwards.
    if (this.consuming) return;
    while (this.stash.length > 0 && (this.pausedBy & PAUSE_STASH) === 0 && !this.isClosed) {
      const chunk = this.stash.shift()!;
      this.stashBytes -= chunk.length;
      this.consume(chunk, 0);
    }
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
        this.move("frame");
        if (msg.operation === Op.UPLOAD && msg.message === Msg.ACK) return this.endExchange();
        break;
    }
    this.onRequest(msg);
  }

  private expectAck(msg: WireMessage, op: number): void {
    if (msg.operation !== op || msg.message !== Msg.ACK) {
      throw new ProtocolError(`expected ACK with op ${op}, got op ${msg.operation} message ${JSON.stringify(msg.message)}`);
    }
    this.move("frame");
    this.endExchange();
  }

  /** An exchange is over; a draining server lets the connection go now. */
  private endExchange(): void {
    if (this.host.draining && this.betweenExchanges) this.close("server shutting down");
  }

  private onRequest(msg: WireMessage): void {
    this.exchangeStart = performance.now();
    this.exchangeBytes = 0;
    this.keyText = msg.key;
    this.key = null;
    switch (msg.operation) {
      case Op.BENCH_MARK:
        this.exchangeOp = "bench";
        if (this.refusedByScope(Op.BENCH_MARK_RSP, 0)) return;
        this.send({ operation: Op.BENCH_MARK_RSP, key: msg.key });
        this.exchangeDone(true);
        return this.endExchange();
      case Op.UPLOAD:
        this.exchangeOp = "upload";
        if (this.refusedByScope(Op.UPLOAD_RSP, Access.WRITE)) return;
        return this.startUpload(msg);
      case Op.DOWNLOAD:
        this.exchangeOp = "download";
        if (this.refusedByScope(Op.DOWNLOAD_RSP, Access.READ)) return;
        return this.startDownload(msg);
      case Op.EXIST:
        this.exchangeOp = "exist";
        if (this.refusedByScope(Op.EXIST_RSP, Access.READ)) return;
        return this.startExist(msg);
      case Op.DELETE:
        this.exchangeOp = "delete";
        if (this.refusedByScope(Op.DELETE_RSP, Access.DELETE)) return;
        return this.startDelete(msg);
      case Op.AUTH:
        this.exchangeOp = "auth";
        return this.authenticate(msg);
      case Op.RESUME:
        this.exchangeOp = "upload";
        if (this.refusedByScope(Op.RESUME_RSP, Access.WRITE)) return;
        return this.startResume(msg);
      case Op.LIST:
        this.exchangeOp = "list";
        // The prefix (in the key's field) must lie within the token's: a listing never shows keys outside it.
        if (this.refusedByScope(Op.LIST_RSP, Access.READ)) return;
        return this.startList(msg);
      default:
        throw new ProtocolError(`unknown op ${msg.operation}`);
    }
  }

  // ---- access (auth "token") ----

  /**
   * With auth "token", answers an exchange its connection may not make (no token yet, an expired
   * one, an operation or a key outside its scope) with the reason, touching nothing, and returns
   * true. `access` is the operation's class (0: bench, which any valid token may run).
   */
  private refusedByScope(replyOp: number, access: number): boolean {
    if (!this.host.tokensRequired) return false;
    const scope = this.scope;
    let refusal: string | null = null;
    if (scope === null) refusal = "unauthorized";
    else if (Date.now() >= scope.expiresAtMs) refusal = "token expired";
    else if ((scope.access & access) !== access) refusal = "forbidden: operation not allowed";
    else if (access !== 0 && !this.keyText.startsWith(scope.prefix)) refusal = "forbidden: key outside token scope";
    // The protocol's keys are the default bucket's: a token for another bucket does not reach them.
    else if (access !== 0 && !scopeHasBucket(scope, DEFAULT_BUCKET)) refusal = "forbidden: key outside token scope";
    if (refusal === null) return false;
    this.refuse(replyOp, refusal);
    this.host.log.debug("exchange_refused", { remote: this.remote, op: this.exchangeOp, key: this.keyText, reason: refusal, tokenId: scope?.id ?? "" });
    return true;
  }

  /**
   * AUTH: checks the token's signature once for the connection and keeps its scope. A bad token is
   * answered "unauthorized" (the log says why) and counted against the client's address; once the
   * address is blocked, the connection is closed after the answer. Without auth "token" the
   * answer is "success": the token is not needed, and a client that always sends one still works.
   */
  private authenticate(msg: WireMessage): void {
    if (!this.host.tokensRequired) {
      this.send({ operation: Op.AUTH_RSP, key: msg.key, message: Msg.SUCCESS });
      this.exchangeDone(true);
      return;
    }
    const verified = this.host.verifyToken(msg.token);
    if (verified.ok && Date.now() < verified.scope.expiresAtMs) {
      const was = this.scope !== null;
      this.scope = verified.scope;
      this.token = msg.token;
      if (!was) this.host.authenticatedChanged(this, true);
      this.host.log.info("auth", { remote: this.remote, tokenId: verified.scope.id });
      this.send({ operation: Op.AUTH_RSP, key: msg.key, message: Msg.SUCCESS });
      this.exchangeDone(true);
      return;
    }
    // A failed AUTH takes away what an earlier one gave: the connection is unauthenticated again.
    if (this.scope !== null) {
      this.unauthenticatedSinceMs = Date.now();
      this.host.authenticatedChanged(this, false);
    }
    this.scope = null;
    this.token = "";
    const expired = verified.ok;
    this.host.log.info("auth_failed", { remote: this.remote, reason: expired ? "token expired" : verified.reason, tokenId: verified.ok ? verified.scope.id : "" });
    // An expired token was signed by us: a client that forgot to renew it, not a guesser. The
    // failure is counted before the refusal leaves: a client that reconnects the moment it reads
    // it must find its address blocked already (the next connection may reach another loop).
    const blocked = !expired && this.host.authFailed(this);
    this.refuse(Op.AUTH_RSP, expired ? "token expired" : "unauthorized");
    if (blocked) this.close("address blocked after failed AUTH exchanges");
  }

  /**
   * The server's secrets changed (SIGHUP): the token this connection authenticated with is checked
   * against the new ones. One they no longer sign loses its scope, so the next exchange is answered
   * "unauthorized" (an exchange in flight finishes: its scope was checked when it began). Returns
   * true when this connection's token was revoked.
   */
  recheckToken(verify: (token: string) => Verified): boolean {
    if (this.scope === null) return false;
    if (verify(this.token).ok) return false;
    this.host.log.info("token_revoked", { remote: this.remote, tokenId: this.scope.id, reason: "no longer signed by a configured secret" });
    this.scope = null;
    this.token = "";
    // It may authenticate again with a token of the new secret, within authTimeoutMs as a new one.
    this.unauthenticatedSinceMs = Date.now();
    this.host.authenticatedChanged(this, false);
    return true;
  }

  /** Who a resumable upload of this connection is charged to: its address, and its token's id. */
  private clients(): string[] {
    return this.scope === null ? [this.address] : [this.address, `token:${this.scope.id}`];
  }

  /** Answers the request with a text instead of going on: the exchange is over, nothing touched. */
  private refuse(replyOp: number, text: string): void {
    this.send({ operation: replyOp, key: this.keyText, message: text });
    this.exchangeDone(false);
  }

  /** Takes the request's Digest (extension field 10) as the body's expected SHA-256: null, or why it cannot be. */
  private takeExpectedDigest(msg: WireMessage): string | null {
    this.expectedDigest = msg.digest === "" ? null : digestFromHex(msg.digest);
    return msg.digest !== "" && this.expectedDigest === null ? "invalid digest: expected the SHA-256 as 64 hex digits" : null;
  }

  /** The exchange's last reply is out: count it, and log it at debug level only. */
  private exchangeDone(ok: boolean): void {
    this.host.stats.exchange(this.exchangeOp, this.exchangeStart, ok ? this.exchangeBytes : 0, ok);
    const log = this.host.log;
    if (log.enabled("debug")) {
      log.debug("exchange", { remote: this.remote, op: this.exchangeOp, key: this.keyText, ok, bytes: this.exchangeBytes, ms: (performance.now() - this.exchangeStart).toFixed(3) });
    }
  }

  /** Checks the request's key; on failure answers with `replyOp` and the reason, and returns null. */
  private acceptKey(msg: WireMessage, replyOp: number): StoreKey | null {
    const checked = checkKey(msg.key);
    if (typeof checked === "string") {
      this.refuse(replyOp, checked);
      return null;
    }
    this.key = checked;
    return checked;
  }

  // ---- upload ----

  private startUpload(msg: WireMessage): void {
    const key = this.acceptKey(msg, Op.UPLOAD_RSP);
    if (key === null) return;
    const size = msg.size;
    let refusal = this.takeExpectedDigest(msg);
    if (!(size > 0)) refusal = `invalid size ${size}: an upload carries at least 1 byte`;
    else if (size > this.host.uploadBytesMax) refusal = `file too large: ${size} bytes exceeds the server's uploadBytesMax ${this.host.uploadBytesMax}`;
    if (refusal !== null) return this.refuse(Op.UPLOAD_RSP, refusal);
    this.bodyRemaining = size;
    this.exchangeBytes = size;
    this.uploadReplyOp = Op.UPLOAD_RSP;
    // A resumable upload always streams: only a streamed upload can be parked when its connection breaks.
    if (size <= this.host.inlineBytesMax && !msg.resumable) {
      // Small body: gather it whole (bounded by inlineBytesMax) and store it in one operation.
      this.move("upload_body");
      this.send({ operation: Op.UPLOAD_RSP, key: msg.key, message: Msg.START });
      return;
    }
    this.move("upload_open");
    this.upload = this.host.store.beginUpload(key, size, this, this.expectedDigest, this.digest, msg.resumable ? { clients: this.clients() } : undefined);
  }

  /** RESUME (extension): the rest of a parked resumable upload's body, then END and ACK as for an upload. */
  private startResume(msg: WireMessage): void {
    const key = this.acceptKey(msg, Op.RESUME_RSP);
    if (key === null) return;
    let refusal = this.takeExpectedDigest(msg);
    const resumable = this.host.store.resumable;
    if (resumable === undefined) refusal = "resumable uploads are not supported by this store";
    else if (msg.uploadId === "") refusal = "no such upload";
    if (refusal !== null) return this.refuse(Op.RESUME_RSP, refusal);
    this.uploadReplyOp = Op.RESUME_RSP;
    this.move("upload_open");
    this.upload = resumable!.resume(msg.uploadId, key, this, this.expectedDigest, this.digest);
  }

  /** A small upload's body is with the store (upload_commit without a sink): the store reads it until its result. */
  private get holdsSmallBody(): boolean {
    return this.upload === null;
  }

  private onBody(part: Uint8Array): void {
    this.bodyRemaining -= part.length;
    const upload = this.upload;
    if (upload === null) {
      this.body.add(part, this.bodyRemaining === 0 && part.length === this.exchangeBytes);
    } else {
      // No copy: Bun hands each `data` callback a fresh buffer and never reuses it (proved by
      // test/server/bun-socket-buffers.test.ts), so the view stays valid until the store wrote it.
      upload.push(part);
      if (upload.backlogBytes > this.host.connectionBufferBytesMax) this.pause(PAUSE_BACKLOG);
    }
    if (this.bodyRemaining > 0) return;
    this.move("upload_commit");
    if (upload === null) {
      // Shutdown waits for the store: it reads the body until its result.
      this.host.workStarted();
      this.host.store.putWhole(this.key!, this.body.bytes, this, this.expectedDigest, this.digest);
    } else {
      upload.end();
    }
  }

  onUploadProgress(): void {
    this.lastActiveMs = Date.now();
    try {
      if (this.upload !== null && this.upload.backlogBytes <= this.host.connectionBufferBytesMax * RESUME_FRACTION) {
        this.unpause(PAUSE_BACKLOG);
      }
    } catch (e) {
      this.bug(e);
    }
  }

  onUploadDone(size: number): void {
    try {
      this.upload = null;
      this.uploadEnded(size, null, null);
    } catch (e) {
      this.bug(e);
    }
  }

  onUploadFailed(failure: FailureKind, cause: FailureCause): void {
    try {
      this.upload = null;
      this.uploadEnded(0, failure, cause);
    } catch (e) {
      this.bug(e);
    }
  }

  /** The body is stored (`failure` null) or not (why, and the store's cause). */
  private uploadEnded(_size: number, failure: FailureKind | null, cause: FailureCause | null): void {
    this.lastActiveMs = Date.now();
    this.unpause(PAUSE_BACKLOG);
    if (this.isClosed) return;
    if (failure === null) {
      this.send({ operation: Op.UPLOAD, key: this.keyText, message: Msg.END, digest: this.digestHex() });
      this.exchangeDone(true);
      this.move("upload_ack");
    } else {
      const text = replyText(failure);
      this.logFailure("upload_failed", failure, cause!);
      this.send({ operation: Op.UPLOAD, key: this.keyText, message: text });
      this.exchangeDone(false);
      this.move("upload_error");
    }
    this.resumeInput();
  }

  /** The store is ready for the body (a streamed upload's open, or a RESUME taken back). */
  private onUploadOpen(): void {
    const upload = this.upload!;
    let start: MessageInit = { operation: this.uploadReplyOp, key: this.keyText, message: Msg.START, uploadId: upload.uploadId };
    if (this.uploadReplyOp === Op.RESUME_RSP) {
      // What is on disk already is not sent again: the client sends the rest, from `offset`.
      const offset = upload.offset ?? 0;
      const size = upload.totalBytes ?? 0;
      this.bodyRemaining = size - offset;
      this.exchangeBytes = size - offset;
      start = { ...start, offset, size };
      if (this.bodyRemaining === 0) {
        this.send(start);
        this.move("upload_commit");
        upload.end();
        return;
      }
    }
    // Zero-copy: Bun stops reading before START goes out (the client sends the body only after
    // START), so every body byte stays in the kernel for the store to receive.
    const receive = upload.receiveFrom !== undefined && this.zeroCopySocket() !== null;
    if (receive) this.pause(PAUSE_RECEIVE);
    this.send(start);
    this.move("upload_body");
    this.resumeInput(); // body bytes that came early (a client that did not wait) are pushed first
    if (!receive) return;
    if (this.state !== "upload_body" || this.bodyRemaining === 0) return this.unpause(PAUSE_RECEIVE);
    this.host.stats.zeroCopyUploads++;
    this.receiveNext();
  }

  private receiveNext(): void {
    this.move("upload_receive");
    this.upload!.receiveFrom!(this.socketFd!, this);
  }

  /** The store moved `n` more body bytes from the socket (0: the client sent nothing for a while). */
  private onReceived(n: number): void {
    if (n > 0) this.bodyRemaining -= n;
    if (this.bodyRemaining > 0) return this.receiveNext();
    this.unpause(PAUSE_RECEIVE);
    this.move("upload_commit");
    this.upload!.end();
  }

  /**
   * The store could not go on receiving (its error comes with the upload's end): Bun reads the
   * rest of the body, if any, as usual, and the upload drops it.
   */
  private stopReceiving(): void {
    this.move("upload_body");
    this.unpause(PAUSE_RECEIVE);
  }

  // ---- download ----

  private startDownload(msg: WireMessage): void {
    const key = this.acceptKey(msg, Op.DOWNLOAD_RSP);
    if (key === null) return;
    // A range (extension fields Offset and Length; docs/PROTOCOL.md): checked once the size is known.
    if (msg.offset < 0 || msg.length < 0) return this.refuse(Op.DOWNLOAD_RSP, `invalid range: offset ${msg.offset}, length ${msg.length}`);
    this.range = msg.offset === 0 && msg.length === 0 ? null : { offset: msg.offset, length: msg.length === 0 ? null : msg.length };
    if (this.range !== null) return this.openStreamed(key);
    const inlineMax = this.host.inlineBytesMax;
    // A store that sends bodies straight to the socket sends small ones too: START, the body and
    // END leave in one call, with no body byte copied through memory (measured in BENCHMARKS.md).
    if (inlineMax === 0 || (this.host.store.sendsFramed === true && this.zeroCopySocket() !== null)) return this.openStreamed(key);
    // Small file: read whole, so an error can still be answered, and one socket write sends START,
    // the body and END together. A larger file's size sends it to openStreamed().
    const buffer = this.host.inlineBuffers.acquire();
    this.wholeBuffer = buffer;
    this.move("download_whole");
    this.host.store.readWhole(key, buffer.subarray(FRAME_ROOM, FRAME_ROOM + inlineMax), this, this.digest);
  }

  private onWholeRead(size: number): void {
    const buffer = this.wholeBuffer!;
    this.wholeBuffer = null;
    if (size <= this.host.inlineBytesMax) return this.sendWholeDownload(buffer, size);
    this.host.inlineBuffers.release(buffer);
    this.openStreamed(this.key!); // larger than inlineBytesMax
  }

  private openStreamed(key: StoreKey): void {
    this.move("download_open");
    const reader = this.host.store.openReader(key, this.digest);
    this.reader = reader;
    reader.open(this); // the size may come back before open() returns
  }

  private onReaderOpen(size: number): void {
    const reader = this.reader!;
    let start: MessageInit = { operation: Op.DOWNLOAD_RSP, key: this.keyText, message: Msg.START, size, type: FileType.FILE, digest: this.digestHex() };
    this.bodyLength = size;
    const range = this.range;
    if (range !== null) {
      if (range.offset >= size) {
        this.closeReader();
        this.move("frame");
        this.refuse(Op.DOWNLOAD_RSP, `range not satisfiable: offset ${range.offset} is past the end of the file (${size} bytes)`);
        return this.resumeInput();
      }
      // Clamped at the end of the file, as HTTP ranges are.
      this.bodyLength = range.length === null ? size - range.offset : Math.min(range.length, size - range.offset);
      reader.range(range.offset, this.bodyLength);
      start = { ...start, size: this.bodyLength, offset: range.offset, fileSize: size };
    }
    this.bodySent = 0;
    if (reader.sendTo !== undefined && this.zeroCopySocket() !== null) return this.startZeroCopyDownload(reader, start);
    this.send(start);
    if (this.host.zeroCopy) this.host.stats.zeroCopyFallbacks++;
    this.endFrame = null;
    this.readBuffer = new Uint8Array(Math.max(1, Math.min(this.host.ioChunkBytes, this.bodyLength)));
    this.continueDownload();
  }

  /**
   * The store writes the body to the socket itself (sendfile). Bun's write() puts bytes in the
   * kernel before it returns (what it cannot put there it does not count, and they wait in
   * outQueue): with outQueue empty, every earlier byte is ahead, so START, the body and END may go
   * in one store call. What that call cannot send (a full socket, pages not in memory) goes on
   * in order: the rest of START by write(), the body by sendTo, the rest of END by write().
   */
  private startZeroCopyDownload(reader: BodyReader, start: MessageInit): void {
    this.host.stats.zeroCopyDownloads++;
    const codec = this.host.codec;
    const size = this.bodyLength;
    const head = codec.encodeFrame(start);
    const tail = codec.encodeFrame({ operation: Op.DOWNLOAD, key: this.keyText, message: Msg.END });
    this.readBuffer = null; // the store sends the body itself
    let sent = this.outQueue.length === 0 && reader.sendFramedNow !== undefined ? reader.sendFramedNow(this.socketFd!, head, tail) : -1;
    if (sent === head.length + size + tail.length) {
      this.bodySent = size;
      this.endFrame = null;
      return this.downloadSent(size);
    }
    sent = Math.max(sent, 0);
    if (sent < head.length) this.sendBytes(head.subarray(sent));
    this.bodySent = Math.min(Math.max(sent - head.length, 0), size);
    this.endFrame = tail.subarray(Math.max(sent - head.length - size, 0));
    if (this.outQueue.length === 0) this.continueDownload();
    else this.move("download_drain"); // onDrain continues
  }

  /** The digest the store reported for this exchange's file, as the wire carries it, or none. */
  private digestHex(): string | undefined {
    return (this.digest[0]! & FACT_SHA256) !== 0 ? this.digestBytes.toString("hex") : undefined;
  }

  /** The socket's descriptor when this connection may send and receive zero-copy, else null (looked up once). */
  private zeroCopySocket(): number | null {
    if (!this.host.zeroCopy) return null;
    if (this.socketFd === undefined) {
      const fd = this.host.socketDescriptor(this.socket);
      this.socketFd = fd >= 0 ? fd : null;
    }
    return this.socketFd;
  }

  /**
   * Sends START, the body (already at FRAME_ROOM in `buffer`) and END as one write: the frames are
   * encoded into the room around the body, so the body is not copied. A frame always fits its room:
   * a key is at most 255 bytes, so even a JSON frame of a key of 255 escaped quotes is ~700 bytes.
   */
  private sendWholeDownload(buffer: Uint8Array, size: number): void {
    const codec = this.host.codec;
    const start = codec.encodeFrame({ operation: Op.DOWNLOAD_RSP, key: this.keyText, message: Msg.START, size, type: FileType.FILE, digest: this.digestHex() });
    const end = codec.encodeFrame({ operation: Op.DOWNLOAD, key: this.keyText, message: Msg.END });
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
    this.move("download_ack");
    this.resumeInput();
  }

  /** Starts the next piece of a streamed download: the socket has taken the last one. */
  private continueDownload(): void {
    const reader = this.reader!;
    if (this.bodySent >= this.bodyLength) {
      const end = this.endFrame;
      this.endFrame = null;
      if (end === null) this.send({ operation: Op.DOWNLOAD, key: this.keyText, message: Msg.END });
      else if (end.length > 0) this.sendBytes(end);
      return this.downloadSent(this.bodyLength);
    }
    const buffer = this.readBuffer;
    if (buffer === null) {
      this.move("download_send");
      return reader.sendTo!(this.socketFd!, this);
    }
    const want = Math.min(buffer.length, this.bodyLength - this.bodySent);
    this.move("download_read");
    reader.read(want === buffer.length ? buffer : buffer.subarray(0, want), this);
  }

  /** The whole body and END are out (or queued): the exchange is over. */
  private downloadSent(size: number): void {
    this.closeReader();
    this.exchangeBytes = size;
    this.exchangeDone(true);
    this.move("download_ack");
    this.resumeInput();
  }

  /** The store sent `n` more body bytes to the socket itself (0: the client took nothing for a while). */
  private onSent(n: number): void {
    this.bodySent += n;
    this.continueDownload();
  }

  private onRead(n: number): void {
    if (n === 0) {
      // The START frame promised the size: a stream cut short cannot be answered, only closed.
      this.host.log.error("download_short", { remote: this.remote, key: this.keyText });
      this.exchangeDone(false);
      this.closeReader();
      return this.close("file shrank during download");
    }
    this.bodySent += n;
    this.sendBytes(this.readBuffer!.subarray(0, n));
    // The socket copies what it takes, and the rest waits in outQueue: the buffer is reused only
    // once the queue is empty (onDrain continues then).
    if (this.outQueue.length === 0) this.continueDownload();
    else this.move("download_drain");
  }

  /** A streamed download's body failed after START promised its size: it cannot be answered, only closed. */
  private downloadBroke(event: string, failure: FailureKind, cause: FailureCause, reason: string): void {
    this.logFailure(event, failure, cause);
    this.exchangeDone(false);
    this.closeReader();
    this.close(reason);
  }

  private closeReader(): void {
    const reader = this.reader;
    if (reader === null) return;
    this.reader = null;
    this.readBuffer = null;
    this.host.track(reader.close());
  }

  // ---- exist, delete ----

  private startExist(msg: WireMessage): void {
    const key = this.acceptKey(msg, Op.EXIST_RSP);
    if (key === null) return;
    this.move("exist");
    this.host.store.stat(key, this, this.digest);
  }

  private startList(msg: WireMessage): void {
    const list = this.host.store.list;
    const request = listRequestOf(msg, this.host.listPageBytesMax);
    if (typeof request === "string") return this.refuse(Op.LIST_RSP, request);
    if (list === undefined) return this.refuse(Op.LIST_RSP, "listing unavailable");
    this.move("list");
    list.call(this.host.store, request, this);
  }

  /** A page of the listing: START with where the next page starts, then the page's lines. */
  onListed(page: ListPage): void {
    this.lastActiveMs = Date.now();
    try {
      if (this.isClosed) return this.lateResult();
      if (this.state !== "list") throw new Error(`a listing arrived in state ${this.state}`);
      this.exchangeBytes = page.lines.length;
      this.send({ operation: Op.LIST_RSP, key: this.keyText, message: Msg.START, size: page.lines.length, nextAfter: page.next });
      if (page.lines.length > 0) this.sendBytes(page.lines);
      this.answered();
    } catch (e) {
      this.bug(e);
    }
  }

  private startDelete(msg: WireMessage): void {
    const key = this.acceptKey(msg, Op.DELETE_RSP);
    if (key === null) return;
    this.move("delete");
    this.host.store.remove(key, this);
  }

  // ---- store results ----

  onStat(size: number, entry: EntryKind): void {
    this.lastActiveMs = Date.now();
    try {
      if (this.isClosed) return;
      if (this.state !== "exist") throw new Error(`a stat result arrived in state ${this.state}`);
      this.send({ operation: Op.EXIST_RSP, key: this.keyText, size, type: fileTypeOf(entry), message: Msg.SUCCESS, digest: this.digestHex() });
      this.answered();
    } catch (e) {
      this.bug(e);
    }
  }

  onStoreDone(value: number): void {
    // A zero-copy send or receive that moved nothing (a client that stopped reading or sending) is
    // no sign of life: the idle timeout must still come for it.
    if (value !== 0 || (this.state !== "download_send" && this.state !== "upload_receive")) this.lastActiveMs = Date.now();
    try {
      switch (this.state) {
        case "delete":
          this.send({ operation: Op.DELETE_RSP, key: this.keyText, message: Msg.SUCCESS });
          return this.answered();
        case "upload_commit":
          // Only a small body's one-call store answers here (a streamed one: onUploadDone).
          this.smallBodyBack();
          return this.uploadEnded(value, null, null);
        case "download_whole":
          return this.onWholeRead(value);
        case "upload_open":
          return this.onUploadOpen();
        case "download_open":
          return this.onReaderOpen(value);
        case "download_read":
          return this.onRead(value);
        case "download_send":
          return this.onSent(value);
        case "upload_receive":
          return this.onReceived(value);
        case "closed":
          return this.lateResult();
        default:
          throw new Error(`a store result (${value}) arrived in state ${this.state}, which waits for none`);
      }
    } catch (e) {
      this.bug(e);
    }
  }

  onStoreFailed(failure: FailureKind, cause: FailureCause): void {
    this.lastActiveMs = Date.now();
    try {
      switch (this.state) {
        case "exist":
          return this.answerFailure(Op.EXIST_RSP, "exist_failed", failure, cause);
        case "delete":
          return this.answerFailure(Op.DELETE_RSP, "delete_failed", failure, cause);
        case "list":
          return this.answerFailure(Op.LIST_RSP, "list_failed", failure, cause);
        case "upload_commit":
          this.smallBodyBack();
          return this.uploadEnded(0, failure, cause);
        case "download_whole":
          this.host.inlineBuffers.release(this.wholeBuffer!);
          this.wholeBuffer = null;
          return this.answerFailure(Op.DOWNLOAD_RSP, "download_read_failed", failure, cause);
        case "upload_open":
          this.upload = null;
          return this.answerFailure(this.uploadReplyOp, "upload_open_failed", failure, cause);
        case "download_open":
          this.closeReader();
          return this.answerFailure(Op.DOWNLOAD_RSP, "download_open_failed", failure, cause);
        case "download_read":
          return this.downloadBroke("download_read_failed", failure, cause, "read failed mid-download");
        case "download_send":
          return this.downloadBroke("download_send_failed", failure, cause, "send failed mid-download");
        case "upload_receive":
          return this.stopReceiving();
        case "closed":
          return this.lateResult();
        default:
          throw new Error(`a store failure (${failure}) arrived in state ${this.state}, which waits for none`);
      }
    } catch (e) {
      this.bug(e);
    }
  }

  onStoreBug(error: unknown): void {
    // The operation is over: what it held comes back before the connection goes.
    if (this.state === "upload_commit" && this.holdsSmallBody) this.smallBodyBack();
    else if (this.state === "download_whole" && this.wholeBuffer !== null) {
      this.host.inlineBuffers.release(this.wholeBuffer);
      this.wholeBuffer = null;
    } else if (this.state === "closed") this.lateResult();
    this.bug(error);
  }

  /** A small upload's body, stored (or not) by the store's one call: the shutdown's count and the buffer go back. */
  private smallBodyBack(): void {
    this.host.workDone();
    this.body.release();
  }

  /** A store result for a connection that closed meanwhile: only what the operation held goes back. */
  private lateResult(): void {
    if (this.closedIn === "upload_commit" && this.holdsSmallBody) this.smallBodyBack();
    else if (this.closedIn === "download_whole" && this.wholeBuffer !== null) {
      this.host.inlineBuffers.release(this.wholeBuffer);
      this.wholeBuffer = null;
    }
    this.closedIn = "closed"; // given back once
  }

  /** A one-reply exchange got its answer: read the next request. */
  private answered(): void {
    this.exchangeDone(true);
    this.move("frame");
    this.resumeInput();
  }

  /** Ends a waiting exchange with the reply text of a store failure. */
  private answerFailure(op: number, event: string, failure: FailureKind, cause: FailureCause): void {
    this.logFailure(event, failure, cause);
    this.send({ operation: op, key: this.keyText, message: replyText(failure) });
    this.exchangeDone(false);
    this.move("frame");
    this.resumeInput();
  }

  private logFailure(event: string, failure: FailureKind, cause: FailureCause): void {
    const log = this.host.log;
    // "no such key" is an everyday answer, not a server problem: no line, and nothing built for one.
    if (failure === Failure.NOT_FOUND) {
      if (log.enabled("debug")) log.debug(event, { remote: this.remote, key: this.keyText, error: replyText(failure) });
      return;
    }
    if (failure === Failure.LINK_REFUSED) {
      // Someone planted a link in the data directory: the operator must hear of it.
      this.host.stats.symlinksRefused++;
      log.warn("symlink_refused", { remote: this.remote, op: this.exchangeOp, key: this.keyText, effect: "refused: nothing was read or written through the link" });
      return;
    }
    log.warn(event, { remote: this.remote, key: this.keyText, error: cause.text });
  }

  // ---- output ----

  private send(msg: MessageInit): void {
    this.sendBytes(this.host.codec.encodeFrame(msg));
  }

  /**
   * Writes a reply, queueing what the socket does not take. A client that sends requests without
   * reading the replies would grow the queue without end: past connectionBufferBytesMax, reading
   * pauses until the client has taken all but RESUME_FRACTION of it.
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
        if (this.outQueuedBytes <= this.host.connectionBufferBytesMax * RESUME_FRACTION) this.unpause(PAUSE_OUTPUT);
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
