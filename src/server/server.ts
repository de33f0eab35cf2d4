// The TCP server: Bun.listen, the connection table and its bound, the idle sweeper, and shutdown.
import type { Socket, TCPSocketListener } from "bun";
import type { Config } from "../config";
import type { IoEngine } from "../engine/io-engine";
import { codecFor, type WireCodec } from "../protocol/codec";
import { FileStore } from "../storage/file-store";
import type { Store } from "../storage/store";
import { ServerStats } from "../observe/stats";
import type { Logger } from "../log";
import { BufferPool } from "./buffer-pool";
import { listenOrExplain } from "./listen";
import { checkSocket } from "../platform";
import { constants } from "node:os";

const ENOTCONN = constants.errno.ENOTCONN;
import { Connection, FRAME_ROOM, type ConnectionHost } from "./connection";


export interface ServerOptions {
  config: Config;
  engine: IoEngine;
  log: Logger;
}

/** Logs refused connections at most once a second, with how many were refused since. */
class RefusalLog {
  private refusedSince = 0;
  private lastLogMs = 0;
  constructor(private readonly log: Logger) {}
  note(remote: string, open: number, max: number): void {
    this.refusedSince++;
    const now = Date.now();
    if (now - this.lastLogMs < 1000) return;
    this.log.warn("connection_refused", { remote, reason: "connectionsMax reached", open, connectionsMax: max, refused: this.refusedSince });
    this.refusedSince = 0;
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
  readonly inlineBytesMax: number;
  readonly ioChunkBytes: number;
  readonly uploadWritesInFlightMax: number;
  readonly inlineBuffers: BufferPool;
  readonly zeroCopy: boolean;
  draining = false;
  /** Why zero-copy sends are off for this process, once found (logged once). */
  private zeroCopyProblem: string | null = null;

  private readonly config: Config;
  private readonly connections = new Set<Connection>();
  private trackedWork = 0;
  private trackedIdle: (() => void) | null = null;
  private readonly refusals: RefusalLog;
  private listener: TCPSocketListener<Connection> | null = null;
  private sweeper: ReturnType<typeof setInterval> | null = null;
  private stopping: Promise<void> | null = null;
  private allClosed: (() => void) | null = null;

  constructor(private readonly options: ServerOptions) {
    const { config, engine, log } = options;
    this.config = config;
    this.engine = engine;
    this.log = log;
    this.store = new FileStore(engine, {
      dataDir: config.dataDir,
      shards: config.shards,
      fsyncOnCommit: config.fsyncOnCommit,
      ioChunkBytes: config.ioChunkBytes,
      uploadWritesInFlightMax: config.uploadWritesInFlightMax,
    });
    this.codec = codecFor(config.wire);
    this.frameBytesMax = config.frameBytesMax;
    this.connectionBufferBytesMax = config.connectionBufferBytesMax;
    this.uploadBytesMax = config.uploadBytesMax;
    this.inlineBytesMax = config.inlineBytesMax;
    this.ioChunkBytes = config.ioChunkBytes;
    this.uploadWritesInFlightMax = config.uploadWritesInFlightMax;
    const inlineBufferBytes = FRAME_ROOM + config.inlineBytesMax + FRAME_ROOM;
    this.inlineBuffers = new BufferPool(inlineBufferBytes, Math.floor(config.inlineBuffersBytesMax / inlineBufferBytes));
    this.refusals = new RefusalLog(log);
    this.zeroCopy = config.zeroCopy && engine.zeroCopy !== null;
    if (config.zeroCopy && engine.zeroCopy === null) log.info("zero_copy_off", { reason: `the ${engine.name} engine has no sendfile (cpool has)`, effect: "downloads are read into memory and written" });
  }

  get port(): number {
    return this.listener?.port ?? 0;
  }

  start(): void {
    this.store.init(this.log);
    // Bun calls these with the socket; the Connection in socket.data does the rest.
    this.listener = listenOrExplain("the file protocol (host, port)", this.config.host, this.config.port, () => Bun.listen<Connection>({
      hostname: this.config.host,
      port: this.config.port,
      socket: {
        open: (socket) => this.onOpen(socket),
        data: (socket, chunk) => socket.data?.onData(chunk),
        drain: (socket) => socket.data?.onDrain(),
        close: (socket) => socket.data?.onClose(),
        error: (socket, error) => {
          this.log.debug("socket_error", { error: error.message });
          socket.data?.onClose();
        },
      },
    }));
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

  private onOpen(socket: Socket<Connection>): void {
    if (this.draining || this.connections.size >= this.config.connectionsMax) {
      this.stats.connectionsRefused++;
      if (!this.draining) this.refusals.note(`${socket.remoteAddress}:${socket.remotePort}`, this.connections.size, this.config.connectionsMax);
      socket.terminate();
      return;
    }
    const conn = new Connection(socket, this);
    socket.data = conn;
    socket.setNoDelay(true);
    this.connections.add(conn);
    this.stats.connectionsAccepted++;
    this.stats.connectionsOpen = this.connections.size;
    if (this.sweeper === null) this.startSweeper();
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
    this.connections.delete(conn);
    this.stats.connectionsOpen = this.connections.size;
    if (this.connections.size === 0) {
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

  private allTrackedDone(): Promise<void> {
    if (this.trackedWork === 0) return Promise.resolve();
    return new Promise<void>((resolve) => (this.trackedIdle = resolve));
  }

  /**
   * Closes connections silent for idleTimeoutMs. It runs only while connections exist, so an idle
   * server has no timer at all; its period (a quarter of the timeout, at most 1 s) bounds how late
   * a timeout fires.
   */
  private startSweeper(): void {
    const timeoutMs = this.config.idleTimeoutMs;
    const periodMs = Math.max(10, Math.min(1000, Math.floor(timeoutMs / 4)));
    this.sweeper = setInterval(() => {
      const now = Date.now();
      for (const conn of this.connections) {
        if (now - conn.lastActiveMs > timeoutMs && !conn.waitingOnServer) {
          this.stats.idleTimeouts++;
          this.log.info("idle_timeout", { remote: conn.remote, state: conn.state, idleMs: now - conn.lastActiveMs });
          conn.close("idle timeout");
        }
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
      for (const conn of [...this.connections]) if (conn.betweenExchanges) conn.close("server shutting down");
      if (this.connections.size > 0) {
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
          conn.close("server shutting down");
        }
        if (left.length > 0) this.log.warn("shutdown_cut", { connections: left.length, exchangesCut: cut, graceMs: this.config.shutdownGraceMs });
      }
      this.listener?.stop(true);
      this.stopSweeper();
      await this.allTrackedDone();
      await this.options.engine.shutdown();
      this.log.info("stopped", {});
    })();
    return this.stopping;
  }
}
