// The supervisor of the server's event loops, as nginx's master is of its workers. Every
// configuration runs through it: `loops` event loops on one port (SO_REUSEPORT: the kernel spreads
// connections), each on a thread of its own (loop-worker.ts), or, when a debugger or profiler is
// attached to the process, one loop on the main thread where the tool can see it.
//
// To its operators it is one server: the supervisor holds the data directory's lock and runs the
// start-up sweep (or reaches the bucket) once, writes the one log stream, answers the admin
// endpoint with every loop's numbers summed (and per loop), and stops every loop gracefully on a
// signal. A loop that fails (a bug outside any connection: its connections are cut) is replaced by
// a fresh one on the same port while the others serve on; loopRestartsMax failures within
// loopRestartWindowMs stop the server with a message instead of restarting for ever.
//
//   loop:  starting ──listening──▶ serving ──failed / thread ended──▶ gone ──▶ (a fresh loop: starting)
//                                     └──stop──▶ stopped
import { MessageChannel } from "node:worker_threads";
import type { Config } from "../config";
import type { EngineStats } from "../engine/io-engine";
import { SyncEngine } from "../engine/sync-engine";
import type { Logger } from "../log";
import { renderMetrics, type LoopMetrics } from "../observe/prometheus";
import { processStats, statsSnapshot, sumFigures } from "../observe/stats";
import { createStore } from "../storage/create-store";
import type { HandedOver } from "../storage/partials";
import { StoreError, type Store } from "../storage/store";
import { NativeIndex, nativeLibraryProblem } from "../ffi/pool-binding";
import { existsSync } from "node:fs";
import type { FileStore } from "../storage/file-store";
import { checkKey, type StoreKey } from "../storage/keys";
import { VOLUME_DIR, VolumeCounters, recoverVolumes, saveCheckpoint } from "../storage/volumes";
import { IpGuard } from "./ip-guard";
import { listenOrExplain } from "./listen";
import type { FromLoop, Loop, LoopFigures, LoopInit, LoopPort, ToLoop } from "./loop";
import { SharedCounters, sharedCountersMemory } from "./shared-counters";
import { sharedAddressTable } from "./shared-ip-guard";

type HostState = "starting" | "serving" | "gone" | "stopped";

/** How long past shutdownGraceMs a stop waits for the loops to end before it ends them. */
const STOP_MARGIN_MS = 5_000;

/** One loop as the supervisor holds it: on a thread of its own, or on this one. */
class Host {
  state: HostState = "starting";
  /** Its C pool, once listening (another loop may join it). */
  pool?: number;
  /** Resolves once the loop is gone (its thread ended, or it ended on this one). */
  readonly ended: Promise<void>;
  private markEnded!: () => void;

  constructor(
    readonly index: number,
    readonly post: (m: ToLoop) => void,
    /** Ends its thread now (a stop past its deadline). */
    readonly terminate: () => void,
  ) {
    this.ended = new Promise<void>((resolve) => (this.markEnded = resolve));
  }

  /** The loop is gone; true the first time. */
  end(): boolean {
    if (this.state === "stopped") return false;
    this.state = "stopped";
    this.markEnded();
    return true;
  }
}

export interface GroupOptions {
  /** Run the one loop on this thread (a debugger or profiler is attached): see serve.ts. */
  inline: boolean;
  /** The script a loop's thread runs (default loop-worker.ts; a test entry may wrap it). */
  workerUrl?: URL;
}

/** Engine stats that are the same for every loop (the process's, or one shared pool's): taken once. */
function mergeEngineStats(all: Record<string, unknown>[], once: ReadonlySet<string>): EngineStats {
  const out: Record<string, unknown> = {};
  for (const s of all) {
    for (const [k, v] of Object.entries(s)) {
      if (typeof v !== "number" || once.has(k)) out[k] ??= v;
      else out[k] = ((out[k] as number | undefined) ?? 0) + v;
    }
  }
  // Ratios are recomputed from the summed counts, not summed.
  const n = (k: string) => (out[k] as number | undefined) ?? 0;
  if ("recordsPerDrain" in out) out.recordsPerDrain = n("drains") > 0 ? n("drainedRecords") / n("drains") : 0;
  if ("operationsPerBatch" in out) out.operationsPerBatch = 0;
  return out as unknown as EngineStats;
}

export class LoopGroup {
  private readonly hosts: Host[] = [];
  private readonly waiting = new Map<number, (m: FromLoop & { t: "answer" }) => void>();
  private nextId = 1;
  /** Parked uploads handed from loop to loop: where each is now (its id names where it began). */
  private readonly where = new Map<string, number>();
  private store: Store | null = null;
  /** The file store's listing index, built here for every loop (see openKeyIndex). */
  private keyIndex: NativeIndex | null = null;
  private counters: SharedCounters | null = null;
  private init: Omit<LoopInit, "index" | "joinPool"> | null = null;
  private stopping: Promise<void> | null = null;
  private fatal: ((reason: string) => void) | null = null;
  /** When loops failed recently (for loopRestartsMax), and how many were replaced in all. */
  private readonly failures: number[] = [];
  loopsRestarted = 0;
  /** Bugs outside any loop (the supervisor's own code): logged and counted, never fatal. */
  supervisorErrors = 0;
  /** The loop on this thread, when there is one (options.inline). */
  private inlineLoop: Loop | null = null;
  /**
   * The loop's code, loaded on this thread only for an inline loop: the supervisor of loops on
   * threads of their own does not pay for loading what only they run (each loads its own).
   */
  private loopCode: typeof import("./loop") | null = null;
  draining = false;
  port = 0;
  /** The HTTP front door's port (the first loop's, when configured as 0), 0 when it is off. */
  httpPort = 0;

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
    readonly loops: number,
    private readonly options: GroupOptions,
  ) {}

  /**
   * Prepares the store for the whole server, then starts the loops one by one (the first binds the
   * port, maybe a free one, the others join it). Rejects when one cannot start.
   * `onFatal` hears that the server must stop (loops failing too often).
   */
  async start(onFatal: (reason: string) => void): Promise<void> {
    this.fatal = onFatal;
    const { config } = this;
    // The lock, the layout, the sweep of temporary files, the bucket: once, here, on the blocking
    // engine (this thread runs no pool). The loops' read caches are their own.
    this.store = createStore(config, new SyncEngine(), new IpGuard(config), undefined, true);
    this.store.init(this.log, true);
    await this.store.open?.();
    // With SO_REUSEPORT on both, two servers would share a port silently: a plain bind first
    // proves no other process holds it.
    if (config.port !== 0) listenOrExplain("the file protocol (host, port)", config.host, config.port, () => Bun.listen({ hostname: config.host, port: config.port, socket: { data() {} } })).stop(true);
    const httpHost = config.httpHost === "" ? config.host : config.httpHost;
    if (config.httpPort !== 0) listenOrExplain("the HTTP front door (httpHost, httpPort)", httpHost, config.httpPort, () => Bun.listen({ hostname: httpHost, port: config.httpPort, socket: { data() {} } })).stop(true);
    const counters = sharedCountersMemory(this.loops);
    this.counters = new SharedCounters(counters);
    this.keyIndex = config.store === "file" ? openKeyIndex(config, this.store, this.log) : null;
    const volumes = this.keyIndex === null ? null : openVolumes(config, this.store as FileStore, this.keyIndex, this.log);
    this.init = { config, loops: this.loops, counters, addresses: sharedAddressTable(config), keyIndex: this.keyIndex === null ? 0 : Number(this.keyIndex.handle), volumes };
    this.port = config.port;
    this.httpPort = config.httpPort;
    if (this.options.inline) this.loopCode = await import("./loop");
    for (let index = 0; index < this.loops; index++) await this.startLoop(index);
    const pools = config.ioEngine !== "cpool" ? "none" : config.loopPools === "shared" ? `one, ${config.ioThreads} workers` : `one per loop, ${Math.max(1, Math.ceil(config.ioThreads / this.loops))} workers each`;
    this.log.info("loops", { loops: this.loops, pools, port: this.port, where: this.options.inline ? "the main thread" : "a thread each" });
  }

  /** Starts loop `index` (first, or in a failed one's place); resolves once it listens. */
  private startLoop(index: number): Promise<void> {
    const joinPool = this.config.loopPools === "shared" ? this.hosts.find((h) => h !== undefined && h.state === "serving" && h.pool !== undefined)?.pool : undefined;
    const init: LoopInit = { ...this.init!, config: { ...this.config, port: this.port, httpPort: this.httpPort }, index, joinPool };
    return new Promise<void>((resolve, reject) => {
      const onMessage = (host: Host, m: FromLoop) => {
        if (m.t === "listening") {
          host.state = "serving";
          host.pool = m.pool;
          if (this.port === 0) this.port = m.port;
          if (this.httpPort === 0) this.httpPort = m.httpPort;
          resolve();
          return;
        }
        if (m.t === "failed" && host.state === "starting") reject(new Error(`loop ${index}: ${m.error}`));
        this.onLoopMessage(host, m);
      };
      const host = this.options.inline ? this.inlineHost(init, onMessage) : this.workerHost(init, onMessage, reject);
      this.hosts[index] = host;
    });
  }

  private workerHost(init: LoopInit, onMessage: (host: Host, m: FromLoop) => void, reject: (e: Error) => void): Host {
    const worker = new Worker((this.options.workerUrl ?? new URL("./loop-worker.ts", import.meta.url)).href, { workerData: init } as WorkerOptions);
    const host = new Host(
      init.index,
      (m) => worker.postMessage(m),
      () => worker.terminate(),
    );
    worker.addEventListener("message", (event: MessageEvent<FromLoop>) => onMessage(host, event.data));
    const ended = (why: string) => {
      if (host.state === "starting") reject(new Error(`loop ${init.index}: ${why}`));
      this.loopEnded(host, why);
    };
    worker.addEventListener("error", (event: ErrorEvent) => ended(String(event.message ?? event.error ?? "error")));
    worker.addEventListener("close", () => ended("its thread ended"));
    return host;
  }

  /** The one loop on this thread: the same messages, through a channel instead of a thread. */
  private inlineHost(init: LoopInit, onMessage: (host: Host, m: FromLoop) => void): Host {
    const channel = new MessageChannel();
    const host = new Host(
      init.index,
      (m) => channel.port1.postMessage(m),
      () => channel.port1.close(),
    );
    channel.port1.on("message", (m: FromLoop) => onMessage(host, m));
    const loop = new this.loopCode!.Loop(channel.port2 as unknown as LoopPort, init, () => {
      // Its last report may still be in the channel: the loop is gone once that is read.
      setTimeout(() => {
        channel.port1.close();
        channel.port2.close();
        if (this.inlineLoop === loop) this.inlineLoop = null;
        this.loopEnded(host, "it ended");
      }, 0);
    });
    this.inlineLoop = loop;
    void loop.start();
    return host;
  }

  /**
   * A bug outside any loop's exchanges, caught by the process: with the loop on this thread it is
   * that loop's (it fails, and a fresh one takes its place); otherwise the supervisor's own, logged
   * and counted.
   */
  processError(kind: string, error: unknown): void {
    if (this.inlineLoop !== null) return this.inlineLoop.fail(error);
    this.supervisorErrors++;
    this.log.error(kind, { error: String((error as Error)?.stack ?? error) });
  }

  private onLoopMessage(host: Host, m: FromLoop): void {
    switch (m.t) {
      case "log":
        return this.log.line(m.line);
      case "answer":
        this.waiting.get(m.id)?.(m);
        return;
      case "take":
        return void this.relayTake(host.index, m.id, m.upload, m.keyName);
      case "failed":
        // Its thread ends next (loopEnded replaces it). A loop whose cleanup did not finish leaves
        // its counts to be reset there.
        if (!m.cleaned) this.log.warn("loop_cleanup_unfinished", { loop: host.index, effect: "its counts are reset when its thread ends; its temporary files stay until the next start" });
        if (host.state === "serving") host.state = "gone";
        return;
      case "listening":
      case "stopped":
        return;
    }
  }

  /**
   * A loop's thread ended. Stopping, that is expected; otherwise the loop failed: what it counted is
   * reset (a thread that died before its cleanup gave nothing back), and a fresh loop takes its
   * place, unless loops failed loopRestartsMax times within loopRestartWindowMs.
   */
  private loopEnded(host: Host, why: string): void {
    if (this.hosts[host.index] !== host) return;
    const wasStarting = host.state === "starting";
    if (!host.end()) return;
    this.counters?.resetLoop(host.index);
    for (const [upload, loop] of this.where) if (loop === host.index) this.where.delete(upload);
    if (this.stopping !== null || wasStarting) return; // a start that fails is the starter's to report
    this.restart(host.index, why);
  }

  /** Starts a fresh loop in a failed one's place, unless loops fail too often (then the server stops). */
  private restart(index: number, why: string): void {
    if (this.stopping !== null) return;
    const now = Date.now();
    this.failures.push(now);
    while (this.failures.length > 0 && now - this.failures[0]! > this.config.loopRestartWindowMs) this.failures.shift();
    if (this.failures.length > this.config.loopRestartsMax) {
      const reason = `event loops failed ${this.failures.length} times within ${this.config.loopRestartWindowMs} ms (loopRestartsMax ${this.config.loopRestartsMax}); the last, loop ${index}: ${why}`;
      this.log.error("loops_failing", { reason, effect: "the server stops rather than restart them for ever" });
      this.fatal?.(reason);
      return;
    }
    this.loopsRestarted++;
    this.log.warn("loop_restarting", { loop: index, why, restartsInWindow: this.failures.length });
    this.startLoop(index).then(
      () => this.log.info("loop_restarted", { loop: index, port: this.port }),
      (e) => {
        const error = String((e as Error)?.message ?? e);
        this.log.error("loop_restart_failed", { loop: index, error });
        this.restart(index, error); // another failure: the window decides whether to try again
      },
    );
  }

  private get serving(): Host[] {
    return this.hosts.filter((h) => h.state === "serving");
  }

  /** Stats keys that are the same for every loop: the process's, and a shared pool's workers and queue. */
  private get onceEngineKeys(): ReadonlySet<string> {
    // The C library counts fsyncs for the whole process; the other engines, each its own.
    const keys = ["name", "submitMode", ...(this.config.ioEngine === "cpool" ? ["fsyncs"] : [])];
    if (this.config.loopPools === "shared") keys.push("threads", "queueDepth", "queueDepthHigh");
    return new Set(keys);
  }

  /** Every serving loop's figures, in loop order (a loop that does not answer in time is left out). */
  private async figures(): Promise<{ index: number; figures: LoopFigures }[]> {
    const hosts = this.serving;
    const answers = await Promise.all(hosts.map((h) => this.askOne(h, (id) => ({ t: "figures", id }))));
    return answers.flatMap((a, i) => (a.value === null ? [] : [{ index: hosts[i]!.index, figures: a.value as LoopFigures }]));
  }

  /** /debug/stats: every loop's numbers summed (histograms merged), and each loop's. */
  async statsJson(): Promise<unknown> {
    const all = await this.figures();
    if (all.length === 0) return { loops: this.loops, loopsRestarted: this.loopsRestarted, serving: 0 };
    const stats = sumFigures(all.map((f) => f.figures.stats));
    stats.uncaughtErrors += this.supervisorErrors;
    const engine = mergeEngineStats(all.map((f) => f.figures.engine), this.onceEngineKeys);
    const perLoop = all.map((f) => ({ loop: f.index, ...statsSnapshot(sumFigures([f.figures.stats]), f.figures.engine as unknown as EngineStats) }));
    return { loops: this.loops, loopsRestarted: this.loopsRestarted, ...statsSnapshot(stats, engine), perLoop };
  }

  /** /metrics: the same numbers in the Prometheus text format, plus each loop's connections and exchanges. */
  async metricsText(): Promise<string> {
    const all = await this.figures();
    const stats = sumFigures(all.map((f) => f.figures.stats));
    stats.uncaughtErrors += this.supervisorErrors;
    const engine = mergeEngineStats(all.map((f) => f.figures.engine), this.onceEngineKeys);
    const loops: LoopMetrics = {
      restarted: this.loopsRestarted,
      perLoop: all.map((f) => ({
        loop: f.index,
        connectionsOpen: f.figures.stats.counters.connectionsOpen ?? 0,
        exchanges: Object.values(f.figures.stats.ops).reduce((n, o) => n + o.count, 0),
      })),
    };
    return renderMetrics(stats, engine, processStats(), loops);
  }

  /**
   * /debug/profile: a profile of loop `loop`'s thread; without one, of every loop at once, and the
   * busiest one's (most samples) is answered. When `signal` aborts, the loops stop sampling.
   */
  async profile(loop: number | null, seconds: number, signal: AbortSignal): Promise<{ value: unknown; error?: string; loop: number }> {
    const asked = loop === null ? this.serving : this.serving.filter((h) => h.index === loop);
    if (asked.length === 0) return { value: null, error: `loop ${loop} is not serving`, loop: loop ?? 0 };
    const cancel = () => {
      for (const h of asked) h.post({ t: "profile-cancel" });
    };
    signal.addEventListener("abort", cancel, { once: true });
    try {
      const answers = await Promise.all(asked.map((h) => this.askOne(h, (id) => ({ t: "profile", id, seconds }), seconds * 1000 + 10_000)));
      const samples = (a: { value: unknown }) => (a.value as { samples?: unknown[] } | null)?.samples?.length ?? -1;
      let best = 0;
      answers.forEach((a, i) => (samples(a) > samples(answers[best]!) ? (best = i) : 0));
      return { ...answers[best]!, loop: asked[best]!.index };
    } finally {
      signal.removeEventListener("abort", cancel);
    }
  }

  /**
   * A RESUME reached loop `from` for an upload it does not hold: asks the loop that holds it (the
   * last one it was handed to, else the one its id names) to hand it over, and answers `from`.
   */
  private async relayTake(from: number, request: number, upload: string, keyName: string): Promise<void> {
    const named = Number(upload.slice(0, upload.indexOf(".")));
    const holder = this.where.get(upload) ?? named;
    let value: HandedOver | null | "busy" = null;
    const host = this.hosts[holder];
    if (Number.isInteger(holder) && host !== undefined && host.state === "serving" && holder !== from) {
      const answer = await this.askOne(host, (id) => ({ t: "handover", id, upload, keyName }));
      value = (answer.value as HandedOver | null | "busy") ?? null;
    }
    if (value !== null && value !== "busy") {
      this.log.info("upload_moved", { upload, fromLoop: holder, toLoop: from, onDisk: value.onDisk });
      this.where.delete(upload);
      this.where.set(upload, from);
      // Bounded like the uploads it tracks; the oldest moves are forgotten first (their ids then
      // name a loop that no longer holds them, and a RESUME answers "no such upload").
      for (const oldest of this.where.keys()) {
        if (this.where.size <= this.config.resumableUploadsMax) break;
        this.where.delete(oldest);
      }
    }
    this.hosts[from]?.post({ t: "taken", id: request, value });
  }

  /** Asks one loop one question; a loop that does not answer in time is answered for. */
  private askOne(host: Host, question: (id: number) => ToLoop, timeoutMs = 10_000): Promise<FromLoop & { t: "answer" }> {
    return new Promise((resolve) => {
      const id = this.nextId++;
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        resolve({ t: "answer", id, value: null, error: "the loop did not answer" });
      }, timeoutMs);
      this.waiting.set(id, (m) => {
        clearTimeout(timer);
        this.waiting.delete(id);
        resolve(m);
      });
      host.post(question(id));
    });
  }

  reload(): void {
    for (const h of this.serving) h.post({ t: "reload" });
  }

  /**
   * Stops every loop gracefully (each drains its connections within shutdownGraceMs and ends), then
   * ends what is left. Always resolves, within shutdownGraceMs and a margin.
   */
  stop(): Promise<void> {
    if (this.stopping !== null) return this.stopping;
    this.draining = true;
    this.stopping = (async () => {
      const live = this.hosts.filter((h) => h !== undefined && h.state !== "stopped");
      for (const host of live) host.post({ t: "stop" });
      // Each loop drains within shutdownGraceMs and bounds its cleanups; past a margin, what is
      // left is ended (a loop stuck in a bug must not hold the process).
      let timer: ReturnType<typeof setTimeout> | undefined;
      const margin = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.config.shutdownGraceMs + STOP_MARGIN_MS)));
      await Promise.race([Promise.all(live.map((h) => h.ended)), margin]);
      clearTimeout(timer);
      const clean = live.every((h) => h.state === "stopped");
      for (const h of live) if (h.state !== "stopped") h.terminate();
      this.store?.close?.();
      // Every loop ended by itself: nothing is in flight, and the index is what the volumes hold.
      // (A loop ended from here may have been mid-write: then the next start reads the volumes.)
      if (clean && this.keyIndex !== null && this.init?.volumes) {
        try {
          saveCheckpoint((this.store as FileStore).dataDir, this.keyIndex, new VolumeCounters(this.init.volumes), this.log);
        } catch (e) {
          this.log.warn("volume_checkpoint_failed", { error: (e as Error).message, effect: "the next start reads every volume whole" });
        }
      }
      // No loop uses the index any more (each has ended or been ended above).
      this.keyIndex?.close();
      this.keyIndex = null;
      // A start that failed before any loop ran has nothing to report stopped.
      if (live.length > 0) this.log.info("stopped", { loops: live.length });
    })();
    return this.stopping;
  }
}

/**
 * With volumes on: every volume scanned into the index before any loop serves (volumes.ts,
 * recoverVolumes), and the counters the loops take sequence and volume numbers from. Also with
 * volumes off, when the data directory has volumes: their records stay readable (null: no volumes).
 */
function openVolumes(config: Config, store: FileStore, index: NativeIndex, log: Logger): SharedArrayBuffer | null {
  if (!config.volumes && !existsSync(`${store.dataDir}/${VOLUME_DIR}`)) return null;
  const dirMode = Number.parseInt(config.dirMode, 8);
  const fileMode = Number.parseInt(config.fileMode, 8);
  index.limitDead(config.volumeDeadRecordsMax);
  const found = recoverVolumes(store.dataDir, index, log, { dirMode, fileMode, pathOf: (key) => store.pathOf(checkedKey(key)) });
  return VolumeCounters.create(found.nextSeq, found.nextVolume).memory;
}

/** A key a volume holds, as the store addresses it (it was checked when it was stored). */
function checkedKey(name: string): StoreKey {
  const key = checkKey(name);
  if (typeof key === "string") throw new StoreError(`a volume holds the key ${JSON.stringify(name)}, which is not valid (${key})`);
  return key;
}

/** Threads that read the shard directories at start: enough to keep a disk's queue busy. */
const INDEX_LOAD_THREADS = 8;

/**
 * The file store's ordered index of keys, for LIST: opened over the data directory's shards and
 * built from them now, before any loop serves (so a listing never misses a stored file). Without
 * the C library (--io-engine bun on a machine that did not build it) there is none, and LIST is
 * answered "listing unavailable" (said once here).
 */
function openKeyIndex(config: Config, store: Store, log: Logger): NativeIndex | null {
  const problem = nativeLibraryProblem();
  if (problem !== null) {
    log.warn("listing_unavailable", { reason: problem, effect: "LIST is answered 'listing unavailable'" });
    return null;
  }
  const dataDir = (store as { dataDir?: string }).dataDir ?? config.dataDir;
  const width = Math.max(2, (config.shards - 1).toString(16).length);
  const t0 = performance.now();
  const index = NativeIndex.open(dataDir, config.shards, width);
  const keys = index.load(INDEX_LOAD_THREADS);
  if (keys < 0) {
    index.close();
    throw new StoreError(`cannot read the data directory ${dataDir} to list it: errno ${-keys}`);
  }
  log.info("index_ready", { keys, ms: Math.round(performance.now() - t0), bytes: index.bytes });
  return index;
}
