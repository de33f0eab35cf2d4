// A client-side connection that speaks frames and raw bodies: the base of the client library, and
// what the tests use to play both well-behaved and misbehaving clients.
//
// Reads are pulled (`readFrame`, `readBody`); incoming bytes wait in a queue bounded by
// `bufferBytesMax`, past which the socket is paused until the caller reads. Writes resolve once
// the socket has taken every byte (Bun's socket.write may take only part; the rest goes on drain).
import type { Socket } from "bun";
import { codecFor, type WireCodec, type WireName } from "../protocol/codec";
import { FrameDecoder } from "../protocol/frame-decoder";
import { ProtocolError, REPLY_FRAME_BYTES_MAX, type MessageInit, type WireMessage } from "../protocol/message";
import { authExchange } from "./exchanges";

/** Reading resumes once the caller has taken all but this fraction of bufferBytesMax. */
const RESUME_FRACTION = 0.5;

export class ConnectionClosedError extends Error {}

/** TLS as the client speaks it: PEM texts (not file names). */
export interface ClientTls {
  /** CA certificate(s) that sign the server's certificate; default: the system's roots. */
  ca?: string;
  /** The client's own certificate and key, for a server that requires them (mutual TLS). */
  cert?: string;
  key?: string;
  /** The name the server's certificate must carry; default: the host connected to. */
  serverName?: string;
}

export interface WireConnOptions {
  host: string;
  port: number;
  wire?: WireName;
  /** Largest frame accepted from the server (default REPLY_FRAME_BYTES_MAX). */
  frameBytesMax?: number;
  bufferBytesMax?: number;
  /** Speak TLS; connect() resolves once the handshake succeeded (and rejects when it failed). */
  tls?: ClientTls;
  /** An access token, presented in an AUTH exchange before connect() resolves. */
  token?: string;
}

/** A handshake the server ended without a word: the two usual reasons. */
const NO_TLS_ANSWER = "the server closed the connection during the handshake: it may not speak TLS on this port (drop --tls), or it requires a client certificate (--cert and --cert-key)";

/**
 * Why the server's certificate was refused, with what to do where the fix is known: a certificate
 * that does not name the host connected to (the usual self-signed one says only CN=localhost).
 */
function tlsRefusal(error: Error | null | undefined, host: string): string {
  const text = error?.message ?? "refused";
  if (/altname|does not match|hostname/i.test(text)) {
    return `TLS handshake failed: the server's certificate does not name ${host} (${text}): connect with --host set to a name the certificate carries (e.g. --host localhost), or give the certificate a subjectAltName with ${host} (README, "Security")`;
  }
  if (/disconnected before secure TLS|socket hang up|ECONNRESET/i.test(text)) return `TLS handshake failed: ${NO_TLS_ANSWER}`;
  if (/self[- ]signed|unable to get local issuer|unable to verify/i.test(text)) {
    return `TLS handshake failed: ${text}: pass the certificate of the CA that signed the server's (or the self-signed certificate itself) with --ca`;
  }
  return `TLS handshake failed: ${text}`;
}

/**
 * What the first bytes from a port say when they are not an fsgw frame: a TLS record (the port
 * speaks TLS: an alert answering our plain request) or an HTTP answer (the admin endpoint, or any
 * web server). Null when they say nothing known.
 */
function otherProtocol(first: Uint8Array): ProtocolError | null {
  // A TLS record: content type 20..23 (change cipher spec, alert, handshake, data), version 3.x.
  if (first.length >= 2 && first[0]! >= 20 && first[0]! <= 23 && first[1] === 3) {
    return new ProtocolError("this port speaks TLS: add --tls (and --ca <file> unless a CA this machine trusts signed its certificate)");
  }
  if (first.length >= 5 && new TextDecoder().decode(first.subarray(0, 5)) === "HTTP/") {
    return new ProtocolError("this is an HTTP port (the admin endpoint?), not fsgw's protocol port (default 9999)");
  }
  return null;
}

/** The TLS handshake failed: the server's certificate was not trusted, or it refused ours. */
export class TlsError extends Error {}

export class WireConn {
  private readonly chunks: Uint8Array[] = [];
  private bufferedBytes = 0;
  private paused = false;
  private closedFlag = false;
  private closeError: Error | null = null;
  private wake: (() => void) | null = null;
  private pendingWrite: { bytes: Uint8Array; resolve: () => void; reject: (e: Error) => void } | null = null;
  private corked: Uint8Array | null = null;
  private flushScheduled = false;
  private readonly decoder: FrameDecoder;
  /** Whether a frame was ever read here (until then, a bad frame may be another protocol's bytes). */
  private framesRead = false;
  /** Bytes received plus bytes the socket took: moves whenever the connection makes progress. */
  bytesSeen = 0;
  private resolveClosed!: () => void;
  /** Resolves when the socket has closed, for whatever reason. */
  readonly closed = new Promise<void>((r) => (this.resolveClosed = r));

  private constructor(
    private socket: Socket<WireConn> | null,
    readonly codec: WireCodec,
    frameBytesMax: number,
    private readonly bufferBytesMax: number,
  ) {
    this.decoder = new FrameDecoder(frameBytesMax);
  }

  static async connect(options: WireConnOptions): Promise<WireConn> {
    const conn = new WireConn(null, codecFor(options.wire ?? "protobuf"), options.frameBytesMax ?? REPLY_FRAME_BYTES_MAX, options.bufferBytesMax ?? 4 * 1024 * 1024);
    const tls = options.tls;
    // With TLS, nothing may be written before the handshake is done (Bun drops such bytes), so
    // connect() waits for it, and turns a failed one into a TlsError that says why.
    let handshakeDone!: (error: Error | null) => void;
    const handshake = new Promise<Error | null>((resolve) => (handshakeDone = resolve));
    conn.socket = await Bun.connect<WireConn>({
      hostname: options.host,
      port: options.port,
      data: conn,
      ...(tls !== undefined
        ? { tls: { ca: tls.ca, cert: tls.cert, key: tls.key, serverName: tls.serverName ?? options.host, rejectUnauthorized: true } }
        : {}),
      socket: {
        data: (s, chunk) => s.data.onData(chunk),
        drain: (s) => s.data.onDrain(),
        close: (s) => {
          s.data.onClosed(null);
          handshakeDone(new TlsError(`TLS handshake failed: ${NO_TLS_ANSWER}`));
        },
        error: (s, e) => {
          s.data.onClosed(e);
          handshakeDone(new TlsError(tlsRefusal(e, tls?.serverName ?? options.host)));
        },
        end: (s) => s.data.onClosed(null),
        connectError: (s, e) => s.data.onClosed(e),
        handshake: (s, success, authorizationError) => handshakeDone(success ? null : new TlsError(tlsRefusal(authorizationError, tls?.serverName ?? options.host))),
      },
    });
    conn.socket.setNoDelay(true);
    if (tls !== undefined) {
      const failed = await handshake;
      if (failed !== null) {
        conn.destroy();
        throw failed;
      }
      // (TLS 1.3 lets a server refuse a missing client certificate after the client's side of
      // the handshake is done: the client then learns it from the close that follows, on its
      // first exchange, as "connection closed by peer: ... CERTIFICATE_REQUIRED".)
    }
    if (options.token !== undefined) {
      try {
        await authExchange(conn, options.token);
      } catch (e) {
        conn.close();
        throw e;
      }
    }
    return conn;
  }

  get isClosed(): boolean {
    return this.closedFlag;
  }

  private onData(chunk: Uint8Array): void {
    this.bytesSeen += chunk.length;
    this.chunks.push(chunk);
    this.bufferedBytes += chunk.length;
    if (this.bufferedBytes > this.bufferBytesMax && !this.paused) {
      this.paused = true;
      this.socket?.pause();
    }
    this.wakeReader();
  }

  private onDrain(): void {
    const w = this.pendingWrite;
    if (w === null || this.socket === null) return;
    const n = this.socket.write(w.bytes);
    if (n < 0) return;
    this.bytesSeen += n;
    if (n < w.bytes.length) {
      w.bytes = w.bytes.subarray(n);
      return;
    }
    this.pendingWrite = null;
    w.resolve();
  }

  private onClosed(error: Error | null): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.closeError = error;
    if (this.pendingWrite !== null) {
      this.pendingWrite.reject(new ConnectionClosedError("connection closed while writing"));
      this.pendingWrite = null;
    }
    this.resolveClosed();
    this.wakeReader();
  }

  private wakeReader(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private waitForData(): Promise<void> {
    if (this.closedFlag) {
      const why = this.closeError ? `: ${this.closeError.message}` : "";
      return Promise.reject(new ConnectionClosedError(`connection closed by peer${why}`));
    }
    return new Promise<void>((r) => (this.wake = r));
  }

  private consumed(n: number): void {
    this.bufferedBytes -= n;
    if (this.paused && this.bufferedBytes <= this.bufferBytesMax * RESUME_FRACTION) {
      this.paused = false;
      this.socket?.resume();
    }
  }

  /**
   * Queues a frame to go out with the next write, or on the next event-loop turn at the latest.
   * An exchange's closing ACK and the next request then share one packet and one server read,
   * which the protocol allows (the server reads the ACK before the next request either way).
   */
  deferFrame(msg: MessageInit): void {
    const frame = this.codec.encodeFrame(msg);
    this.corked = this.corked === null ? frame : Buffer.concat([this.corked, frame]);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushCorked);
    }
  }

  private readonly flushCorked = (): void => {
    this.flushScheduled = false;
    if (this.corked === null || this.pendingWrite !== null || this.closedFlag) return;
    this.write(new Uint8Array(0)).catch(() => {}); // a failure surfaces on the next read
  };

  /** Writes all of `bytes` (after any deferred frames); resolves when the socket has taken them. */
  write(bytes: Uint8Array): Promise<void> {
    if (this.closedFlag || this.socket === null) return Promise.reject(new ConnectionClosedError("connection closed"));
    if (this.pendingWrite !== null) throw new Error("WireConn.write: a write is already pending");
    if (this.corked !== null) {
      bytes = bytes.length === 0 ? this.corked : Buffer.concat([this.corked, bytes]);
      this.corked = null;
    }
    if (bytes.length === 0) return Promise.resolve();
    const n = this.socket.write(bytes);
    if (n < 0) return Promise.reject(new ConnectionClosedError("connection closed"));
    this.bytesSeen += n;
    if (n === bytes.length) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.pendingWrite = { bytes: bytes.subarray(n), resolve, reject };
    });
  }

  sendFrame(msg: MessageInit): Promise<void> {
    return this.write(this.codec.encodeFrame(msg));
  }

  /** Reads the next frame and decodes it. Throws ProtocolError on a malformed one. */
  async readFrame(): Promise<WireMessage> {
    for (;;) {
      while (this.chunks.length > 0) {
        const chunk = this.chunks[0]!;
        let used: number;
        try {
          used = this.decoder.feed(chunk, 0);
        } catch (e) {
          // The first bytes we ever got may say what speaks on that port instead of fsgw.
          throw (!this.framesRead && otherProtocol(chunk)) || e;
        }
        if (used === chunk.length) this.chunks.shift();
        else this.chunks[0] = chunk.subarray(used);
        this.consumed(used);
        const frame = this.decoder.takeFrame();
        if (frame !== null) {
          this.framesRead = true;
          return this.codec.decode(frame);
        }
      }
      await this.waitForData();
    }
  }

  /**
   * Hands the next `n` raw bytes to `sink` as they arrive (views into received chunks, valid only
   * during the call). A sink that returns a promise is awaited before more is read.
   */
  async readBody(n: number, sink: (part: Uint8Array) => void | Promise<void>): Promise<void> {
    if (this.decoder.midFrame) throw new ProtocolError("body requested in the middle of a frame");
    let remaining = n;
    while (remaining > 0) {
      if (this.chunks.length === 0) {
        await this.waitForData();
        continue;
      }
      const chunk = this.chunks[0]!;
      const take = Math.min(remaining, chunk.length);
      const part = take === chunk.length ? chunk : chunk.subarray(0, take);
      if (take === chunk.length) this.chunks.shift();
      else this.chunks[0] = chunk.subarray(take);
      this.consumed(take);
      remaining -= take;
      const pending = sink(part);
      if (pending !== undefined) await pending;
    }
  }

  /** Resolves true if the peer closes the connection within `ms`, without reading anything. */
  async closedWithin(ms: number): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const result = await Promise.race([
      this.closed.then(() => true),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms))),
    ]);
    clearTimeout(timer);
    return result;
  }

  /** Closes after sending any deferred frames. */
  close(): void {
    if (this.corked !== null && this.pendingWrite === null && !this.closedFlag) this.socket?.write(this.corked);
    this.corked = null;
    this.socket?.end();
  }

  /** Cuts the connection at once (RST), as a crashing client would. */
  destroy(): void {
    this.socket?.terminate();
  }
}
