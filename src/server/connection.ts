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
//
// Storage is reached only through the Store interface (src/storage/store.ts): this file knows no
// path, descriptor or errno. Every entry from the store (onStoreDone, onStoreBug, onUploadProgress,
// onUploadDone) and from the socket catches what it runs: a bug closes this connection with a
// logged `connection_bug`, never the process.
import type { Socket } from "bun";
import type { WireCodec } from "../protocol/codec";
import { FrameDecoder } from "../protocol/frame-decoder";
import { FileType, headerProblem, Msg, Op, ProtocolError, type MessageInit, type WireMessage } from "../protocol/message";
import { checkKey, type StoreKey } from "../storage/keys";
import { DIGEST_BYTES, EntryType, Failure, type BodyReader, type Store, type UploadOwner, type UploadSink } from "../storage/store";
import type { Logger } from "../log";
import { GatheredBody, type BufferPool } from "./buffer-pool";
import type { ServerStats, StatOp } from "../observe/stats";
import { Access, type TokenScope, type Verified } from "../auth/token";
import { stableBytes } from "../util/stable-bytes";

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

function fileTypeOf(entry: number): number {
  return entry === EntryType.FILE ? FileType.FILE : entry === EntryType.DIR ? FileType.DIR : FileType.UNSET;
}

/** 64 hex digits (either case) -> the 32-byte SHA-256, or null when the text is not that. */
export function digestFromHex(text: string): Uint8Array | null {
  if (text.length !== 64 || !/^[0-9a-fA-F]{64}$/.test(text)) return null;
  return new Uint8Array(Buffer.from(text, "hex"));
}

/** The reply text of a store failure: short, human, the same whatever the store. */
export function replyText(kind: number): string {
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

// What the store operation in flight will decide (ioWaiting); its result reaches onStoreDone.
const IO_NONE = 0;
const IO_EXIST = 1;
const IO_DELETE = 2;
const IO_PUT = 3; // a small upload's whole body
const IO_READ_WHOLE = 4; // a small download, or the size that says it is not small
const IO_UPLOAD_OPEN = 5; // a streamed upload may begin
const IO_READER_OPEN = 6; // a streamed download's size
const IO_READ = 7; // a streamed download's next bytes
const IO_SEND = 8; // a streamed download's next bytes, sent by the store straight to the socket
const IO_RECEIVE = 9; // a streamed upload's next bytes, moved by the store straight from the socket

const PAUSE_STASH = 1; // input arrived while a store operation decides what comes next
const PAUSE_BACKLOG = 2; // an upload holds more than connectionBufferBytesMax not yet stored
const PAUSE_OUTPUT = 4; // replies the client does not read hold more than connectionBufferBytesMax
const PAUSE_SPLICE = 8; // the store moves the upload's body from the socket itself: Bun must not read

/** Reading resumes once a paused-for buffer has drained to this fraction of its bound. */
const RESUME_FRACTION = 0.5;

export class Connection implements UploadOwner {
  state: ConnectionState = "frame";
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
  /** Input kept while a store operation decides what it means, oldest first, and its bytes. */
  private readonly stash: Uint8Array[] = [];
  private stashBytes = 0;
  /** True while consume() runs: a result that arrives inside it must not consume the stash early. */
  private consuming = false;
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
  /** The store operation in flight (IO_*), answered through onStoreDone. */
  private ioWaiting = IO_NONE;
  private bodyRemaining = 0;
  /** A small upload's body, gathered whole; released once stored (or dropped). */
  private readonly body: GatheredBody;
  /** A streamed upload (null for a small one, gathered in `body`). */
  private upload: UploadSink | null = null;
  /** A small download's pooled buffer, from the read until its bytes leave. */
  private wholeBuffer: Uint8Array | null = null;
  /** A streamed download: the reader, its buffer (null when the store sends), and the bytes sent so far. */
  private reader: BodyReader | null = null;
  private readBuffer: Uint8Array | null = null;
  private bodySent = 0;
  /** The download's body: the whole file, or the range asked for (DOWNLOAD with Offset/Length). */
  private bodyLength = 0;
  private rangeOffset = 0;
  /** 0: the whole file; > 0: the range's length asked for; -1: from rangeOffset to the end. */
  private rangeLength = 0;
  /** A zero-copy download's END frame, or what of it is still to send; null: encode END as usual. */
  private endFrame: Uint8Array | null = null;
  /** The socket's descriptor for zero-copy sends: -2 not looked up yet, -1 none. */
  private socketFd = -2;
  /** The upload's body is being moved by the store from the socket (splice); Bun reads nothing. */
  private splicing = false;
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
  /** The upload in progress is a RESUME (its replies use RESUME_RSP until END). */
  private resuming = false;
  /** Bun read body bytes while a splice ran: the bytes that splice moved are out of order. */
  private spliceInterrupted = false;
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

  /** A getter, so that checks after a callback are not narrowed away by the compiler. */
  get isClosed(): boolean {
    return this.state === "closed";
  }

  get remote(): string {
    return `${this.socket.remoteAddress}:${this.socket.remotePort}`;
  }

  /** Waiting on the store, not on the client: the idle timeout does not apply. */
  get waitingOnServer(): boolean {
    return this.state === "waiting" || this.state === "committing" || (this.pausedBy & PAUSE_BACKLOG) !== 0;
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
    if (this.splicing) {
      // Bun read from a socket it was told not to read while the store splices from it. It does so
      // when the peer goes away mid-body; either way the body's order is lost from this splice on:
      // close. The upload drops what the interrupted splice moved (a resumable one keeps what was
      // on disk before it; any other is discarded with its temporary file).
      this.host.log.info("splice_interrupted", { remote: this.remote, key: this.keyText, bytes: chunk.length });
      this.spliceInterrupted = true;
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
      if (this.outQueue.length === 0 && this.state === "download_body" && this.ioWaiting === IO_NONE) this.continueDownload();
    } catch (e) {
      this.bug(e);
    }
  }

  /** The socket is gone: release what the exchange holds. */
  onClose(): void {
    if (this.isClosed) return;
    this.state = "closed";
    this.splicing = false;
    this.stash.length = 0;
    this.stashBytes = 0;
    this.outQueue.length = 0;
    this.outQueuedBytes = 0;
    if (this.upload !== null) {
      this.host.track(this.upload.abort(this.spliceInterrupted));
      this.upload = null;
    }
    // A body or buffer the store still reads or fills goes back when its result arrives.
    if (this.ioWaiting !== IO_PUT) this.body.release();
    this.closeReader();
    this.host.onConnectionClosed(this);
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
            this.onBody(chunk.subarray(offset, offset + take));
            offset += take;
            break;
          }
          case "closed":
            return;
          default:
            // A store operation decides what the rest means: keep it, in front of anything stashed
            // later, and stop reading until then.
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

  /** A store operation settled and the state reads input again: process what was stashed. */
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
    this.refuse(Op.AUTH_RSP, expired ? "token expired" : "unauthorized");
    // An expired token was signed by us: a client that forgot to renew it, not a guesser.
    if (!expired && this.host.authFailed(this)) this.close("address blocked after failed AUTH exchanges");
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

  /** A store operation now decides what comes next; its result reaches onStoreDone. */
  private wait(io: number): void {
    this.state = "waiting";
    this.ioWaiting = io;
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
    this.resuming = false;
    // A resumable upload always streams: only a streamed upload can be parked when its connection breaks.
    if (size <= this.host.inlineBytesMax && !msg.resumable) {
      // Small body: gather it whole (bounded by inlineBytesMax) and store it in one operation.
      this.state = "upload_body";
      this.send({ operation: Op.UPLOAD_RSP, key: msg.key, message: Msg.START });
      return;
    }
    this.wait(IO_UPLOAD_OPEN);
    this.upload = this.host.store.beginUpload(key, size, this, this.expectedDigest, this.digest, msg.resumable ? { clients: this.clients() } : undefined);
  }

  /** RESUME (extension): the rest of a parked resumable upload's body, then END and ACK as for an upload. */
  private startResume(msg: WireMessage): void {
    const key = this.acceptKey(msg, Op.RESUME_RSP);
    if (key === null) return;
    let refusal = this.takeExpectedDigest(msg);
    if (this.host.store.resumeUpload === undefined) refusal = "resumable uploads are not supported by this store";
    else if (msg.uploadId === "") refusal = "no such upload";
    if (refusal !== null) return this.refuse(Op.RESUME_RSP, refusal);
    this.resuming = true;
    this.wait(IO_UPLOAD_OPEN);
    this.upload = this.host.store.resumeUpload!(msg.uploadId, key, this, this.expectedDigest, this.digest);
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
    this.state = "committing";
    if (upload === null) {
      // Shutdown waits for the store: it reads the body until its result.
      this.host.workStarted();
      this.ioWaiting = IO_PUT;
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

  onUploadDone(result: number, detail: number): void {
    try {
      this.upload = null;
      this.uploadEnded(result, detail);
    } catch (e) {
      this.bug(e);
    }
  }

  /** The body is stored (result >= 0) or not (-FailureKind, with the store's detail). */
  private uploadEnded(result: number, detail: number): void {
    this.lastActiveMs = Date.now();
    this.unpause(PAUSE_BACKLOG);
    if (this.isClosed) return;
    if (result >= 0) {
      this.send({ operation: Op.UPLOAD, key: this.keyText, message: Msg.END, digest: this.digestHex() });
      this.exchangeDone(true);
      this.state = "upload_ack";
    } else {
      const text = replyText(-result);
      this.logFailure("upload_failed", -result, detail);
      this.send({ operation: Op.UPLOAD, key: this.keyText, message: text });
      this.exchangeDone(false);
      this.state = "upload_error";
    }
    this.resumeInput();
  }

  // ---- download ----

  private startDownload(msg: WireMessage): void {
    const key = this.acceptKey(msg, Op.DOWNLOAD_RSP);
    if (key === null) return;
    // A range (extension fields Offset and Length; docs/PROTOCOL.md): checked once the size is known.
    if (msg.offset < 0 || msg.length < 0) return this.refuse(Op.DOWNLOAD_RSP, `invalid range: offset ${msg.offset}, length ${msg.length}`);
    this.rangeOffset = msg.offset;
    this.rangeLength = msg.offset === 0 && msg.length === 0 ? 0 : msg.length === 0 ? -1 : msg.length;
    if (this.rangeLength !== 0) return this.openStreamed(key);
    const inlineMax = this.host.inlineBytesMax;
    // A store that sends bodies straight to the socket sends small ones too: START, the body and
    // END leave in one call, with no body byte copied through memory (measured in BENCHMARKS.md).
    if (inlineMax === 0 || (this.host.store.sendsFramed === true && this.zeroCopySocket() >= 0)) return this.openStreamed(key);
    // Small file: read whole, so an error can still be answered, and one socket write sends START,
    // the body and END together. A larger file's size sends it to openStreamed().
    const buffer = this.host.inlineBuffers.acquire();
    this.wholeBuffer = buffer;
    this.wait(IO_READ_WHOLE);
    this.host.store.readWhole(key, buffer.subarray(FRAME_ROOM, FRAME_ROOM + inlineMax), this, this.digest);
  }

  private onWholeRead(size: number, detail: number): void {
    const buffer = this.wholeBuffer!;
    this.wholeBuffer = null;
    if (size >= 0 && size <= this.host.inlineBytesMax && !this.isClosed) return this.sendWholeDownload(buffer, size);
    this.host.inlineBuffers.release(buffer);
    if (this.isClosed) return;
    if (size < 0) return this.answerFailure(Op.DOWNLOAD_RSP, "download_read_failed", size, detail);
    this.openStreamed(this.key!); // larger than inlineBytesMax
  }

  private openStreamed(key: StoreKey): void {
    this.wait(IO_READER_OPEN);
    const reader = this.host.store.openReader(key, this.digest);
    this.reader = reader;
    reader.open(this); // the size may come back before open() returns
  }

  private onReaderOpen(size: number, detail: number): void {
    if (this.isClosed) return;
    if (size < 0) {
      this.closeReader();
      return this.answerFailure(Op.DOWNLOAD_RSP, "download_open_failed", size, detail);
    }
    const reader = this.reader!;
    let start: MessageInit = { operation: Op.DOWNLOAD_RSP, key: this.keyText, message: Msg.START, size, type: FileType.FILE, digest: this.digestHex() };
    this.bodyLength = size;
    if (this.rangeLength !== 0) {
      const offset = this.rangeOffset;
      if (offset >= size) {
        this.closeReader();
        this.refuse(Op.DOWNLOAD_RSP, `range not satisfiable: offset ${offset} is past the end of the file (${size} bytes)`);
        this.state = "frame";
        return this.resumeInput();
      }
      // Clamped at the end of the file, as HTTP ranges are.
      this.bodyLength = this.rangeLength < 0 ? size - offset : Math.min(this.rangeLength, size - offset);
      reader.range(offset, this.bodyLength);
      start = { ...start, size: this.bodyLength, offset, fileSize: size };
    }
    this.bodySent = 0;
    this.state = "download_body";
    if (reader.sendTo !== undefined && this.zeroCopySocket() >= 0) return this.startZeroCopyDownload(reader, start);
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
    let sent = this.outQueue.length === 0 && reader.sendFramedNow !== undefined ? reader.sendFramedNow(this.socketFd, head, tail) : -1;
    if (sent === head.length + size + tail.length) {
      this.bodySent = size;
      this.endFrame = null;
      return this.downloadSent(size);
    }
    sent = Math.max(sent, 0);
    if (sent < head.length) this.sendBytes(head.subarray(sent));
    this.bodySent = Math.min(Math.max(sent - head.length, 0), size);
    this.endFrame = tail.subarray(Math.max(sent - head.length - size, 0));
    if (this.outQueue.length === 0) this.continueDownload(); // else onDrain continues
  }

  /** The digest the store reported for this exchange's file, as the wire carries it, or none. */
  private digestHex(): string | undefined {
    return this.digest[0] === 1 ? this.digestBytes.toString("hex") : undefined;
  }

  /** The socket's descriptor when this connection may send zero-copy, else -1 (looked up once). */
  private zeroCopySocket(): number {
    if (!this.host.zeroCopy) return -1;
    if (this.socketFd === -2) this.socketFd = this.host.socketDescriptor(this.socket);
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
    this.state = "download_ack";
    this.resumeInput();
  }

  /** Reads the next piece of a streamed download; called when the socket has taken the last one. */
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
      this.ioWaiting = IO_SEND;
      return reader.sendTo!(this.socketFd, this);
    }
    const want = Math.min(buffer.length, this.bodyLength - this.bodySent);
    this.ioWaiting = IO_READ;
    reader.read(want === buffer.length ? buffer : buffer.subarray(0, want), this);
  }

  /** The whole body and END are out (or queued): the exchange is over. */
  private downloadSent(size: number): void {
    this.closeReader();
    this.exchangeBytes = size;
    this.exchangeDone(true);
    this.state = "download_ack";
    this.resumeInput();
  }

  /** The store sent `n` more body bytes to the socket itself (0: the client took nothing for a while). */
  private onSent(n: number, detail: number): void {
    if (this.isClosed) return;
    if (n < 0) {
      // START promised the size: a stream cut short cannot be answered, only closed.
      this.logFailure("download_send_failed", -n, detail);
      this.exchangeDone(false);
      this.closeReader();
      return this.close("send failed mid-download");
    }
    this.bodySent += n;
    this.continueDownload();
  }

  private onRead(n: number, detail: number): void {
    if (this.isClosed) return;
    if (n <= 0) {
      // The START frame promised the size: a stream cut short cannot be answered, only closed.
      if (n < 0) this.logFailure("download_read_failed", -n, detail);
      else this.host.log.error("download_short", { remote: this.remote, key: this.keyText });
      this.exchangeDone(false);
      this.closeReader();
      return this.close(n < 0 ? "read failed mid-download" : "file shrank during download");
    }
    this.bodySent += n;
    this.sendBytes(this.readBuffer!.subarray(0, n));
    // The socket copies what it takes, and the rest waits in outQueue: the buffer is reused only
    // once the queue is empty (onDrain continues then).
    if (this.outQueue.length === 0) this.continueDownload();
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
    this.wait(IO_EXIST);
    this.host.store.stat(key, this, this.digest);
  }

  private startDelete(msg: WireMessage): void {
    const key = this.acceptKey(msg, Op.DELETE_RSP);
    if (key === null) return;
    this.wait(IO_DELETE);
    this.host.store.remove(key, this);
  }

  // ---- store results (StoreTarget) ----

  onStoreDone(result: number, detail: number): void {
    const io = this.ioWaiting;
    this.ioWaiting = IO_NONE;
    // A zero-copy send that moved nothing (a client that stopped reading) is no sign of life: the
    // idle timeout must still come for it.
    if ((io !== IO_SEND && io !== IO_RECEIVE) || result !== 0) this.lastActiveMs = Date.now();
    try {
      switch (io) {
        case IO_EXIST:
          if (this.isClosed) return;
          if (result < 0) return this.answerFailure(Op.EXIST_RSP, "exist_failed", result, detail);
          this.send({ operation: Op.EXIST_RSP, key: this.keyText, size: result, type: fileTypeOf(detail), message: Msg.SUCCESS, digest: this.digestHex() });
          return this.answered();
        case IO_DELETE:
          if (this.isClosed) return;
          if (result < 0) return this.answerFailure(Op.DELETE_RSP, "delete_failed", result, detail);
          this.send({ operation: Op.DELETE_RSP, key: this.keyText, message: Msg.SUCCESS });
          return this.answered();
        case IO_PUT:
          this.host.workDone();
          this.body.release();
          return this.uploadEnded(result, detail);
        case IO_READ_WHOLE:
          return this.onWholeRead(result, detail);
        case IO_UPLOAD_OPEN:
          return this.onUploadOpen(result, detail);
        case IO_READER_OPEN:
          return this.onReaderOpen(result, detail);
        case IO_READ:
          return this.onRead(result, detail);
        case IO_SEND:
          return this.onSent(result, detail);
        case IO_RECEIVE:
          return this.onReceived(result);
        default:
          throw new Error(`a store result (${result}) arrived with nothing waiting for it`);
      }
    } catch (e) {
      this.bug(e);
    }
  }

  onStoreBug(error: unknown): void {
    const io = this.ioWaiting;
    this.ioWaiting = IO_NONE;
    // The operation is over: what it held comes back before the connection goes.
    if (io === IO_PUT) {
      this.host.workDone();
      this.body.release();
    } else if (io === IO_READ_WHOLE && this.wholeBuffer !== null) {
      this.host.inlineBuffers.release(this.wholeBuffer);
      this.wholeBuffer = null;
    }
    this.bug(error);
  }

  private onUploadOpen(result: number, detail: number): void {
    if (this.isClosed) return;
    const replyOp = this.resuming ? Op.RESUME_RSP : Op.UPLOAD_RSP;
    if (result < 0) {
      this.upload = null;
      return this.answerFailure(replyOp, "upload_open_failed", result, detail);
    }
    const upload = this.upload!;
    let start: MessageInit = { operation: replyOp, key: this.keyText, message: Msg.START, uploadId: upload.uploadId };
    if (this.resuming) {
      // What is on disk already is not sent again: the client sends the rest, from `offset`.
      const offset = upload.offset ?? 0;
      const size = upload.totalBytes ?? 0;
      this.bodyRemaining = size - offset;
      this.exchangeBytes = size - offset;
      start = { ...start, offset, size };
      if (this.bodyRemaining === 0) {
        this.send(start);
        this.state = "committing";
        upload.end();
        return;
      }
    }
    // Zero-copy: Bun stops reading before START goes out (the client sends the body only after
    // START), so every body byte stays in the kernel for the store to splice.
    const receive = upload.receiveFrom !== undefined && this.zeroCopySocket() >= 0;
    if (receive) this.pause(PAUSE_SPLICE);
    this.send(start);
    this.state = "upload_body";
    this.resumeInput(); // body bytes that came early (a client that did not wait) are pushed first
    if (!receive) return;
    if (this.isClosed || this.state !== "upload_body" || this.bodyRemaining === 0) return this.unpause(PAUSE_SPLICE);
    this.host.stats.zeroCopyUploads++;
    this.splicing = true;
    this.receiveNext();
  }

  private receiveNext(): void {
    this.ioWaiting = IO_RECEIVE;
    this.upload!.receiveFrom!(this.socketFd, this);
  }

  /** The store moved `n` more body bytes from the socket (0: the client sent nothing for a while). */
  private onReceived(n: number): void {
    if (this.isClosed) return;
    if (n > 0) this.bodyRemaining -= n;
    if (n >= 0 && this.bodyRemaining > 0) return this.receiveNext();
    // Done, or the store could not go on (its error comes with the upload's end): Bun reads the
    // rest of the body, if any, as usual, and the upload drops it.
    this.splicing = false;
    this.unpause(PAUSE_SPLICE);
    if (this.bodyRemaining === 0) {
      this.state = "committing";
      this.upload?.end();
    }
  }

  /** A one-reply exchange got its answer: read the next request. */
  private answered(): void {
    this.exchangeDone(true);
    this.state = "frame";
    this.resumeInput();
  }

  /** Ends a waiting exchange with the reply text of a store failure (-FailureKind in `result`). */
  private answerFailure(op: number, event: string, result: number, detail: number): void {
    const text = replyText(-result);
    this.logFailure(event, -result, detail);
    this.send({ operation: op, key: this.keyText, message: text });
    this.exchangeDone(false);
    this.state = "frame";
    this.resumeInput();
  }

  private logFailure(event: string, kind: number, detail: number): void {
    const log = this.host.log;
    // "no such key" is an everyday answer, not a server problem: no line, and nothing built for one.
    if (kind === Failure.NOT_FOUND) {
      if (log.enabled("debug")) log.debug(event, { remote: this.remote, key: this.keyText, error: replyText(kind) });
      return;
    }
    if (kind === Failure.LINK_REFUSED) {
      // Someone planted a link in the data directory: the operator must hear of it.
      this.host.stats.symlinksRefused++;
      log.warn("symlink_refused", { remote: this.remote, op: this.exchangeOp, key: this.keyText, effect: "refused: nothing was read or written through the link" });
      return;
    }
    log.warn(event, { remote: this.remote, key: this.keyText, error: this.host.store.describe(detail) });
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
