// One event loop's TCP server: Bun.listen on the shared port, the connection table and its bound
// (over every loop), the sweeper of idle and overdue connections, reload, stop and abandon.
import type { Socket, TCPSocketListener, TCPSocketListenOptions } from "bun";
import { corsOriginsOf, type Config } from "../config";
import type { IoEngine } from "../engine/io-engine";
import { codecFor, type WireCodec } from "../protocol/codec";
import type { Store } from "../storage/store";
import { ServerStats } from "../observe/stats";
import type { Logger } from "../log";
import { BufferPool } from "./buffer-pool";
import { listenOrExplain } from "./listen";
import { checkSocket } from "../platform";
import { constants } from "node:os";
import { nodeCrypto } from "../util/crypto";
import type { Verified } from "../auth/token";
import type { IpGuard } from "./ip-guard";
import type { SharedIpGuard } from "./shared-ip-guard";
import type { SharedCounters } from "./shared-counters";
import { certificateProblem, Security } from "./security";
import { Connection, FRAME_ROOM, type ConnectionHost } from "./connection";
import { HttpConnection, type HttpHost } from "../http/http-connection";
import { MultipartUploads, type MultipartStore } from "../http/multipart";
import { join } from "node:path";

const ENOTCONN = constants.errno.ENOTCONN;
/** How long a stop or a failed loop waits for cleanups in flight (temporary files, descriptors). */
const CLEANUP_MS_MAX = 1500;

/**
 * The TLS 1.2 suites offered: ECDHE key exchange only, so a recorded session cannot be decrypted
 * later with the server's key (forward secrecy; static-RSA suites such as AES256-GCM-SHA384 were
 * accepted before), and AEAD ciphers only. TLS 1.3's suites are always offered and all qualify.
 */
export const TLS12_CIPHERS = [
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-CHACHA20-POLY1305",
].join(":");
/** TLS 1.2 at least (Bun's default too; said here so that a Bun upgrade cannot lower it). */
function noTlsBelow12(): number {
  const c = nodeCrypto().constants;
  return c.SSL_OP_NO_SSLv3 | c.SSL_OP_NO_TLSv1 | c.SSL_OP_NO_TLSv1_1;
}


export interface ServerOptions {
  config: Config;
  engine: IoEngine;
  log: Logger;
  /**
   * Which event loop of the group this server is (src/server/loop-group.ts): the store was prepared
   * by the group (lock, sweep, the bucket reached), the port is shared with the other loops
   * (SO_REUSEPORT), and `connectionsMax` counts every loop's connections (`counters`).
   */
  loop: { index: number; of: number; counters: SharedCounters };
  /** The store to serve: this loop's own instance. */
  store: Store;
  /** The per-address (and per-token) table, the server's, shared by its loops. */
  clients: IpGuard | SharedIpGuard;
}

/**
 * Logs one kind of event at most once a second, with how many happened since: a flood of refused
 * connections or failed handshakes costs a line a second, not a line each.
 */
class RateLimitedLog {
  private since = 0;
  private lastLogMs = 0;
  constructor(
    private readonly log: Logger,
    private readonly event: string,
  ) {}
  note(fields: Record<string, unknown>): void {
    this.since++;
    const now = Date.now();
    if (now - this.lastLogMs < 1000) return;
    this.log.warn(this.event, { ...fields, count: this.since });
    this.since = 0;
    this.lastLogMs = now;
  }
}

export class Server implements ConnectionHost {
  readonly engine: IoEngine;
  readonly store: Store;
  readonly codec: WireCodec;
  readonly log: Logger;
  readonly stats = new ServerStats();
  readonly frameBytesMax: number;
  readonly connectionBufferBytesMax: number;
  readonly uploadBytesMax: number;
  readonly listPageBytesMax: number;
  readonly inlineBytesMax: number;
  readonly ioChunkBytes: number;
  readonly uploadWritesInFlightMax: number;
  readonly inlineBuffers: BufferPool;
  readonly zeroCopy: boolean;
  readonly tokensRequired: boolean;
  draining = false;
  /** Why zero-copy sends are off for this process, once found (logged once). */
  private zeroCopyProblem: string | null = null;

  private readonly config: Config;
  private readonly connections = new Set<Connection>();
  /**
   * auth "token": connections without a valid token, oldest first (by unauthenticatedSinceMs), at
   * most unauthenticatedMax: they must complete AUTH within authTimeoutMs, and one more evicts the
   * oldest, so that connections that never authenticate cannot hold the server's slots.
   */
  private readonly unauthenticated = new Set<Connection>();
  /** This loop's share of unauthenticatedConnectionsMax. */
  private readonly unauthenticatedMax: number;
  private readonly evictions: RateLimitedLog;
  private readonly authTimeoutsLog: RateLimitedLog;
  private readonly frameTimeoutsLog: RateLimitedLog;
  private trackedWork = 0;
  private trackedIdle: (() => void) | null = null;
  private readonly refusals: RateLimitedLog;
  private readonly ipRefusals: RateLimitedLog;
  private readonly handshakeFailures: RateLimitedLog;
  private readonly ipGuard: IpGuard | SharedIpGuard;
  /** TLS material and token secrets, read at start() and again by reload(). */
  private security: Security | null = null;
  private listener: TCPSocketListener<Connection> | null = null;
  /** The HTTP front door (src/http/), beside the protocol's port, over the same store and bounds. */
  private httpListener: TCPSocketListener<HttpConnection> | null = null;
  private readonly httpConnections = new Set<HttpConnection>();
  /** What HTTP connections see of this server (made when the port opens). */
  private httpHost!: HttpHost;
  private readonly startedAt = new Date();
  private sweeper: ReturnType<typeof setInterval> | null = null;
  private stopping: Promise<void> | null = null;
  private allClosed: (() => void) | null = null;

  constructor(private readonly options: ServerOptions) {
    const { config, engine, log } = options;
    this.config = config;
    this.engine = engine;
    this.log = log;
    // The per-client limits are one table for every loop (whichever loop a connection reaches).
    this.ipGuard = options.clients;
    this.store = options.store;
    const store: Store = this.store;
    const resumable = store.resumable;
    if (resumable !== undefined) this.stats.resumable = () => resumable.stats();
    if (store.stats !== undefined) this.stats.store = () => store.stats!();
    this.codec = codecFor(config.wire);
    this.frameBytesMax = config.frameBytesMax;
    this.connectionBufferBytesMax = config.connectionBufferBytesMax;
    this.uploadBytesMax = config.uploadBytesMax;
    this.listPageBytesMax = config.listPageBytesMax;
    this.inlineBytesMax = config.inlineBytesMax;
    this.ioChunkBytes = config.ioChunkBytes;
    this.uploadWritesInFlightMax = config.uploadWritesInFlightMax;
    const inlineBufferBytes = FRAME_ROOM + config.inlineBytesMax + FRAME_ROOM;
    this.inlineBuffers = new BufferPool(inlineBufferBytes, Math.floor(config.inlineBuffersBytesMax / inlineBufferBytes));
    this.refusals = new RateLimitedLog(log, "connection_refused");
    this.ipRefusals = new RateLimitedLog(log, "connection_refused_address");
    this.handshakeFailures = new RateLimitedLog(log, "tls_handshake_failed");
    this.evictions = new RateLimitedLog(log, "unauthenticated_evicted");
    this.authTimeoutsLog = new RateLimitedLog(log, "auth_timeout");
    this.frameTimeoutsLog = new RateLimitedLog(log, "frame_timeout");
    this.unauthenticatedMax = Math.max(1, Math.ceil(config.unauthenticatedConnectionsMax / options.loop.of));
    this.tokensRequired = config.auth === "token";
    const tls = config.tlsCertFile !== "";
    this.zeroCopy = config.zeroCopy && engine.zeroCopy !== null && !tls;
    // Start-up notices are the server's: with several loops, loop 0 says them (the others would repeat them).
    const notices = options.loop.index === 0;
    if (!notices) return;
    if (config.zeroCopy && engine.zeroCopy === null) log.info("zero_copy_off", { reason: `the ${engine.name} engine has no sendfile (cpool has)`, effect: "downloads are read into memory and written" });
    else if (config.zeroCopy && tls) log.info("zero_copy_off", { reason: "TLS: bodies are encrypted in user space", effect: "bodies are read into memory, encrypted and written" });
  }

  get port(): number {
    return this.listener?.port ?? 0;
  }

  /** The HTTP front door's port, 0 when it is off. */
  get httpPort(): number {
    return this.httpListener?.port ?? 0;
  }

  async start(): Promise<void> {
    this.security = Security.load(this.config);
    this.store.attach?.(this.log, this.options.loop.index);
    this.listener = this.listen(this.config.port);
    this.listenHttp();
    if (this.security.tls !== null) {
      this.log.info("tls", { clientCertificates: this.security.tls.ca !== null ? "required" : "not asked" });
      this.checkCertificate("start");
    }
    if (this.tokensRequired) this.log.info("auth_tokens", { secrets: this.security.secretCount });
  }

  /**
   * Opens the protocol port. With TLS it is opened with SO_REUSEPORT, so that reload() can open
   * the port again with new certificates before closing the old listener (no moment without one);
   * a plain bind first proves no other process holds the port (with SO_REUSEPORT on both, two
   * servers would silently share it).
   */
  private listen(port: number): TCPSocketListener<Connection> {
    const tls = this.security!.tls;
    const handlers = {
      open: (socket: Socket<Connection>) => this.onOpen(socket),
      data: (socket: Socket<Connection>, chunk: Buffer) => socket.data?.onData(chunk),
      drain: (socket: Socket<Connection>) => socket.data?.onDrain(),
      close: (socket: Socket<Connection>) => socket.data?.onClose(),
      error: (socket: Socket<Connection>, error: Error) => {
        this.log.debug("socket_error", { error: error.message });
        socket.data?.onClose();
      },
      handshake: (socket: Socket<Connection>, success: boolean, authorizationError: Error | null) => this.onHandshake(socket, success, authorizationError),
    };
    const host = this.config.host;
    return listenOrExplain("the file protocol (host, port)", host, port, () => {
      // Every loop listens on the port with SO_REUSEPORT and the kernel spreads connections over
      // them (the group proved the port free before the first one bound it); a loop that takes a
      // failed one's place binds beside the others, so the port never stops accepting.
      return Bun.listen<Connection>(listenOptions(host, port, tls, handlers));
    });
  }

  /**
   * Opens the HTTP front door's port (httpPort; 0: off), with SO_REUSEPORT as the protocol's port,
   * and over TLS (HTTPS) with the protocol's certificate when it has one: never in clear beside an
   * encrypted protocol port.
   */
  private listenHttp(port = this.config.httpPort): void {
    if (port === 0) return;
    const host = this.config.httpHost === "" ? this.config.host : this.config.httpHost;
    this.httpHost = {
      store: this.store,
      log: this.log,
      bucket: "fsgw",
      startedAt: this.startedAt,
      headBytesMax: this.config.httpHeadBytesMax,
      uploadBytesMax: this.config.uploadBytesMax,
      inlineBytesMax: this.config.inlineBytesMax,
      connectionBufferBytesMax: this.config.connectionBufferBytesMax,
      listPageBytesMax: this.config.listPageBytesMax,
      multipart: this.multipartStore(),
      partBytesMin: this.config.multipartPartBytesMin,
      corsOrigins: new Set(corsOriginsOf(this.config.httpCorsOrigins)),
      bucketsMax: this.config.bucketsMax,
      tokensRequired: this.tokensRequired,
      draining: () => this.draining,
      verifyToken: (token) => this.verifyToken(token),
      s3SecretKeys: (accessKeyId) => this.security!.s3SecretKeys(accessKeyId),
      // Under TLS the bytes must go through the encrypting socket: no descriptor (zeroCopy is off).
      socketFdOf: (socket) => (this.zeroCopy ? this.socketDescriptor(socket as unknown as Socket<Connection>) : -1),
      track: (work) => this.track(work),
      closed: (conn) => {
        if (!this.httpConnections.delete(conn)) return;
        this.options.loop.counters.connections.add(this.options.loop.index, -1);
        this.ipGuard.closed(conn.address, Date.now());
        if (this.connections.size === 0 && this.httpConnections.size === 0) {
          this.stopSweeper();
          this.allClosed?.();
        }
      },
    };
    const handlers = {
      open: (socket: Socket<HttpConnection>) => this.onHttpOpen(socket),
      data: (socket: Socket<HttpConnection>, chunk: Buffer) => socket.data?.onData(chunk),
      drain: (socket: Socket<HttpConnection>) => socket.data?.onDrain(),
      close: (socket: Socket<HttpConnection>) => socket.data?.onClose(),
      error: (socket: Socket<HttpConnection>) => socket.data?.onClose(),
      handshake: (socket: Socket<HttpConnection>, success: boolean, authorizationError: Error | null) => {
        if (success) return;
        this.stats.tlsHandshakeFailures++;
        this.handshakeFailures.note({ remote: `${socket.remoteAddress}:${socket.remotePort}`, error: authorizationError?.message ?? "handshake failed" });
        socket.data?.close();
      },
    };
    this.httpListener = listenOrExplain("the HTTP front door (httpHost, httpPort)", host, port, () => Bun.listen<HttpConnection>(listenOptions(host, port, this.security!.tls, handlers)));
  }

  /**
   * Where S3 multipart uploads are kept: the gateway's own multipartDir on the file store; on the
   * S3 store the bucket's own multipart uploads (the gateway stays stateless; multipartDir only
   * spools a part on its way).
   */
  private multipartStore(): MultipartStore {
    const local = new MultipartUploads(this.config.multipartDir === "" ? join(this.config.dataDir, ".multipart") : this.config.multipartDir, this.config.multipartUploadsMax, this.config.multipartTtlMs, this.config.fsyncOnCommit);
    return this.store.ownMultipart?.(local, this.config.multipartUploadsMax) ?? local;
  }

  /** An HTTP connection: admitted by the same bounds as the protocol's (connectionsMax, per address). */
  private onHttpOpen(socket: Socket<HttpConnection>): void {
    if (this.draining || !this.admit()) {
      this.stats.connectionsRefused++;
      socket.terminate();
      return;
    }
    if (this.ipGuard.admit(socket.remoteAddress, Date.now()) !== "ok") {
      this.stats.connectionsRefusedPerIp++;
      this.options.loop.counters.connections.add(this.options.loop.index, -1);
      socket.terminate();
      return;
    }
    const conn = new HttpConnection(socket, this.httpHost);
    socket.data = conn;
    socket.setNoDelay(true);
    this.httpConnections.add(conn);
    if (this.sweeper === null) this.startSweeper();
  }



  /** TLS only: a failed handshake (a plaintext client, an unknown CA, no client certificate) closes the connection. */
  private onHandshake(socket: Socket<Connection>, success: boolean, authorizationError: Error | null): void {
    if (success) return;
    this.stats.tlsHandshakeFailures++;
    this.handshakeFailures.note({ remote: `${socket.remoteAddress}:${socket.remotePort}`, error: authorizationError?.message ?? "handshake failed" });
    socket.data?.close("TLS handshake failed");
    socket.end();
  }

  /**
   * SIGHUP: reads the TLS files and token secrets again. New connections get the new certificate;
   * open ones keep theirs. A file that cannot be read changes nothing and is logged.
   */
  reload(): boolean {
    const security = this.security;
    if (security === null || this.draining) return false;
    const problem = security.reload();
    if (problem !== null) {
      this.log.error("reload_failed", { error: problem, effect: "the certificates and secrets in use are kept" });
      return false;
    }
    if (security.tls !== null && this.listener !== null) {
      const old = this.listener;
      const oldHttp = this.httpListener;
      try {
        this.listener = this.listen(old.port);
        if (oldHttp !== null) this.listenHttp(oldHttp.port);
      } catch (e) {
        if (this.listener !== old) this.listener.stop(true);
        this.httpListener = oldHttp;
        this.listener = old;
        this.log.error("reload_failed", { error: (e as Error).message, effect: "the old listener and certificate stay in use" });
        return false;
      }
      old.stop(false); // stops accepting; its open connections go on
      oldHttp?.stop(false);
    }
    // Changing the secret revokes the tokens it signed: on open connections too, not only at the
    // next AUTH (a connection keeps its token, checked again here against the new secrets).
    let revoked = 0;
    if (this.tokensRequired) {
      const verify = (token: string) => security.verify(token);
      for (const conn of this.connections) if (conn.recheckToken(verify)) revoked++;
    }
    this.stats.tokensRevoked += revoked;
    this.log.info("reloaded", { tls: security.tls !== null, tokenSecrets: security.secretCount, ...(this.tokensRequired ? { connectionsRevoked: revoked } : {}) });
    if (security.tls !== null) this.checkCertificate("reload");
    return true;
  }

  /** A server certificate that is expired or not yet valid is served (clients refuse it): said loudly. */
  private checkCertificate(when: "start" | "reload"): void {
    const problem = certificateProblem(this.security!.tls!.cert);
    if (problem === null) return;
    // Once per server: with several loops, loop 0 says it.
    if (this.options.loop.index !== 0) return;
    this.log.warn("tls_certificate_not_valid", { file: this.config.tlsCertFile, when, problem, effect: "clients that check certificates refuse this server until it is replaced (then kill -HUP)" });
  }

  verifyToken(token: string): Verified {
    return this.security!.verify(token);
  }

  /** Counts a failed AUTH from this connection's address; true when the address is now blocked. */
  authFailed(conn: Connection): boolean {
    this.stats.authFailures++;
    const before = this.ipGuard.blocks;
    const blocked = this.ipGuard.authFailed(conn.address, Date.now());
    if (this.ipGuard.blocks !== before) {
      this.stats.authBlocks++;
      this.log.warn("address_blocked", { address: conn.address, forMs: this.config.authBlockMs, reason: `${this.config.authFailuresMax} failed AUTH exchanges within ${this.config.authFailureWindowMs} ms` });
    }
    return blocked;
  }

  /** Says the server is ready: logged once every listener is up. */
  logListening(adminPort: number): void {
    this.log.info("listening", {
      host: this.config.host,
      port: this.port,
      adminPort,
      engine: this.options.engine.name,
      wire: this.codec.name,
      store: this.store.description,
      pid: process.pid,
    });
  }

  /** Counts a new connection against connectionsMax (over every loop): false when it is reached. */
  private admit(): boolean {
    const { counters, index } = this.options.loop;
    return counters.connections.addWithin(index, 1, this.config.connectionsMax);
  }

  private onOpen(socket: Socket<Connection>): void {
    if (this.draining || !this.admit()) {
      this.stats.connectionsRefused++;
      if (!this.draining) this.refusals.note({ remote: `${socket.remoteAddress}:${socket.remotePort}`, reason: "connectionsMax reached", open: this.connections.size, connectionsMax: this.config.connectionsMax });
      socket.terminate();
      return;
    }
    const admission = this.ipGuard.admit(socket.remoteAddress, Date.now());
    if (admission !== "ok") {
      if (admission === "blocked") this.stats.connectionsRefusedBlocked++;
      else this.stats.connectionsRefusedPerIp++;
      this.ipRefusals.note({ address: socket.remoteAddress, reason: admission === "blocked" ? "address blocked after failed AUTH exchanges" : `connectionsPerIpMax (${this.config.connectionsPerIpMax}) reached` });
      this.options.loop.counters.connections.add(this.options.loop.index, -1); // admitted by count, refused by address
      socket.terminate();
      return;
    }
    const conn = new Connection(socket, this);
    socket.data = conn;
    socket.setNoDelay(true);
    this.connections.add(conn);
    this.stats.connectionsAccepted++;
    this.stats.connectionsOpen = this.connections.size;
    if (this.tokensRequired) this.addUnauthenticated(conn);
    if (this.sweeper === null) this.startSweeper();
  }

  authenticatedChanged(conn: Connection, authenticated: boolean): void {
    if (authenticated) this.unauthenticated.delete(conn);
    else if (this.connections.has(conn)) this.addUnauthenticated(conn);
  }

  /**
   * A connection without a token joins the newest end of the unauthenticated ones; past this loop's
   * share of unauthenticatedConnectionsMax the oldest is closed to make room (an attacker holding
   * connections open without authenticating loses its oldest ones first, a real client that
   * authenticates within a round trip keeps its place), and counted as a failed AUTH of its address.
   */
  private addUnauthenticated(conn: Connection): void {
    this.unauthenticated.delete(conn);
    if (this.unauthenticated.size >= this.unauthenticatedMax) {
      const oldest: Connection = this.unauthenticated.values().next().value!;
      this.unauthenticated.delete(oldest);
      this.stats.unauthenticatedEvicted++;
      this.evictions.note({ remote: oldest.remote, reason: `unauthenticatedConnectionsMax (${this.config.unauthenticatedConnectionsMax}) reached: the oldest connection without a token makes room` });
      this.authFailed(oldest);
      oldest.close("evicted: unauthenticated connections at their bound");
    }
    this.unauthenticated.add(conn);
  }

  /**
   * The kernel descriptor of a connection's socket, or -1. Bun reports it as `socket.fd` (not in its
   * typings); it is checked against the connection's ports with getsockname/getpeername before any
   * byte goes to it behind Bun's back, so a Bun whose `fd` means something else costs a warning and
   * the copying path, never a stream sent to the wrong place (test/server/zero-copy.test.ts).
   */
  socketDescriptor(socket: Socket<Connection>): number {
    if (this.zeroCopyProblem !== null) return -1;
    const fd = (socket as unknown as { fd?: unknown }).fd;
    let problem: string | null = null;
    if (typeof fd !== "number" || !Number.isInteger(fd) || fd < 0) problem = `Bun's socket has no usable fd (${String(fd)})`;
    else {
      const rc = checkSocket(fd, socket.localPort, socket.remotePort);
      if (rc === 0) return fd;
      if (rc === -ENOTCONN) return -1; // this peer is already gone: nothing to learn about Bun
      problem = `socket.fd ${fd} is not this connection's socket (check: errno ${-rc})`;
    }
    this.zeroCopyProblem = problem;
    this.log.warn("zero_copy_off", { reason: problem, effect: "downloads are read into memory and written (the copying path)" });
    return -1;
  }

  onConnectionClosed(conn: Connection): void {
    if (!this.connections.has(conn)) return;
    this.options.loop.counters.connections.add(this.options.loop.index, -1);
    this.ipGuard.closed(conn.address, Date.now());
    this.connections.delete(conn);
    this.unauthenticated.delete(conn);
    this.stats.connectionsOpen = this.connections.size;
    if (this.connections.size === 0 && this.httpConnections.size === 0) {
      this.stopSweeper();
      this.allClosed?.();
    }
  }

  /** Counts work that shutdown must wait for; two shared callbacks, no allocation per call. */
  track(work: Promise<unknown>): void {
    this.trackedWork++;
    work.then(this.trackedDone, this.trackedDone);
  }

  workStarted(): void {
    this.trackedWork++;
  }

  workDone(): void {
    this.trackedDone();
  }

  private readonly trackedDone = (): void => {
    if (--this.trackedWork === 0) this.trackedIdle?.();
  };

  /**
   * Resolves when the cleanups in flight (temporary files removed, descriptors closed) are done, or
   * after `ms` at most (a disk that hangs must not hold a shutdown for ever): true when done.
   */
  private allTrackedDone(ms: number): Promise<boolean> {
    if (this.trackedWork === 0) return Promise.resolve(true);
    let timer: ReturnType<typeof setTimeout> | undefined;
    return Promise.race([
      new Promise<boolean>((resolve) => (this.trackedIdle = () => resolve(true))),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
    ]).finally(() => clearTimeout(timer));
  }

  /**
   * This loop failed (a bug outside any connection): it stops accepting, cuts every connection at
   * once (their uploads are discarded, their counts in the shared tables given back), forgets its
   * resumable uploads and closes its store. What its cleanups do not finish within CLEANUP_MS_MAX
   * is left (and said).
   */
  async abandon(): Promise<void> {
    this.draining = true;
    this.listener?.stop(true);
    this.httpListener?.stop(true);
    this.stopSweeper();
    for (const conn of [...this.connections]) conn.close("the loop failed");
    for (const conn of [...this.httpConnections]) conn.close();
    if (!(await this.allTrackedDone(CLEANUP_MS_MAX))) this.log.warn("cleanup_unfinished", { pending: this.trackedWork, effect: "temporary files may stay until the next start" });
    await this.store.resumable?.discardAll();
    this.store.close?.();
  }

  /**
   * Closes connections silent for idleTimeoutMs, those with a request frame (an HTTP head) begun
   * more than frameTimeoutMs ago, and (auth "token") those that have not authenticated within
   * authTimeoutMs; the HTTP door's connections too (HttpConnection.timedOut).
   * It runs only while connections exist, so an idle server has no timer at all; its period (a
   * quarter of the shortest timeout, at most 1 s) bounds how late a timeout fires.
   */
  private startSweeper(): void {
    const { idleTimeoutMs, frameTimeoutMs, authTimeoutMs } = this.config;
    const shortestMs = Math.min(idleTimeoutMs, frameTimeoutMs, this.tokensRequired ? authTimeoutMs : idleTimeoutMs);
    const periodMs = Math.max(10, Math.min(1000, Math.floor(shortestMs / 4)));
    this.sweeper = setInterval(() => {
      const now = Date.now();
      // Oldest first: the first one still within its time ends the scan.
      for (const conn of this.unauthenticated) {
        if (now - conn.unauthenticatedSinceMs <= authTimeoutMs) break;
        this.unauthenticated.delete(conn);
        this.stats.authTimeouts++;
        this.authTimeoutsLog.note({ remote: conn.remote, reason: `no AUTH within authTimeoutMs (${authTimeoutMs})` });
        this.authFailed(conn);
        conn.close("no AUTH within authTimeoutMs");
      }
      for (const conn of this.connections) {
        if (now - conn.lastActiveMs > idleTimeoutMs && !conn.waitingOnServer) {
          this.stats.idleTimeouts++;
          this.log.info("idle_timeout", { remote: conn.remote, state: conn.state, idleMs: now - conn.lastActiveMs });
          conn.close("idle timeout");
        } else if (conn.frameOverdue(now, frameTimeoutMs)) {
          this.stats.frameTimeouts++;
          this.frameTimeoutsLog.note({ remote: conn.remote, state: conn.state, reason: `a request frame not complete within frameTimeoutMs (${frameTimeoutMs})` });
          conn.close("frame not complete within frameTimeoutMs");
        }
      }
      // The HTTP door's connections by the same two bounds: silence, and a head trickled in.
      for (const conn of this.httpConnections) {
        const reason = conn.timedOut(now, idleTimeoutMs, frameTimeoutMs);
        if (reason === null) continue;
        if (reason === "idle timeout") this.stats.idleTimeouts++;
        else this.stats.frameTimeouts++;
        this.frameTimeoutsLog.note({ remote: conn.remote, state: conn.state, reason });
        conn.close();
      }
    }, periodMs);
  }

  private stopSweeper(): void {
    if (this.sweeper !== null) clearInterval(this.sweeper);
    this.sweeper = null;
  }

  /**
   * Stops accepting, lets exchanges in flight finish for up to shutdownGraceMs, then cuts what is
   * left (partial uploads lose their temporary files), waits for cleanups and stops the engine.
   */
  stop(): Promise<void> {
    if (this.stopping !== null) return this.stopping;
    this.stopping = (async () => {
      this.draining = true;
      this.listener?.stop(false);
      this.httpListener?.stop(false);
      for (const conn of [...this.connections]) if (conn.betweenExchanges) conn.close("server shutting down");
      for (const conn of [...this.httpConnections]) if (conn.idle) conn.close();
      if (this.connections.size > 0 || this.httpConnections.size > 0) {
        const allClosed = new Promise<void>((resolve) => (this.allClosed = resolve));
        let timer: ReturnType<typeof setTimeout> | undefined;
        const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.config.shutdownGraceMs)));
        await Promise.race([allClosed, grace]);
        clearTimeout(timer);
        // The grace period is over: say what is cut, one line each and a count, then cut it.
        const left = [...this.connections];
        let cut = 0;
        for (const conn of left) {
          const exchange = conn.exchangeInFlight();
          if (exchange !== null) {
            cut++;
            this.log.warn("exchange_cut", exchange);
          }
          conn.cutForShutdown();
        }
        if (left.length > 0) this.log.warn("shutdown_cut", { connections: left.length, exchangesCut: cut, graceMs: this.config.shutdownGraceMs });
        for (const conn of [...this.httpConnections]) conn.close();
      }
      this.listener?.stop(true);
      this.httpListener?.stop(true);
      this.stopSweeper();
      if (!(await this.allTrackedDone(CLEANUP_MS_MAX))) this.log.warn("cleanup_unfinished", { pending: this.trackedWork, effect: "temporary files may stay until the next start" });
      // Partial uploads do not outlive the server (a resumable one's hash state is in memory): their
      // files go now, not at the next start, and their clients send them again from the start.
      const removed = (await this.store.resumable?.discardAll()) ?? 0;
      if (removed > 0) this.log.info("partial_uploads_removed", { uploads: removed, reason: "server shutting down" });
      this.store.close?.();
      await this.options.engine.shutdown();
      this.log.info("stopped", {});
    })();
    return this.stopping;
  }
}

/**
 * Bun.listen's options for a port of this server: SO_REUSEPORT (every loop listens on the port),
 * and TLS 1.2+ with the configured certificate (and client certificates when a CA is set) when
 * there is one. reusePort works for Bun.listen though its typings list it only for connect (the
 * certificate-reload test fails if a Bun upgrade drops it).
 */
function listenOptions<T>(hostname: string, port: number, tls: { cert: string | Buffer; key: string | Buffer; ca: string | Buffer | null } | null, socket: TCPSocketListenOptions<T>["socket"]): TCPSocketListenOptions<T> {
  const options = { hostname, port, reusePort: true, socket } as TCPSocketListenOptions<T>;
  if (tls === null) return options;
  return {
    ...options,
    tls: {
      cert: tls.cert,
      key: tls.key,
      ciphers: TLS12_CIPHERS,
      secureOptions: noTlsBelow12(),
      ...(tls.ca !== null ? { ca: tls.ca, requestCert: true, rejectUnauthorized: true } : {}),
    },
  };
}
