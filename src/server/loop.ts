// One event loop of the server: its engine (its own slots on the C pool's workers), its store
// instance, its listener on the shared port and its connections. A loop runs on a thread of its own
// (loop-worker.ts), or on the main thread when a debugger or profiler is attached (so that
// breakpoints and profiles see the exchanges); either way the supervisor (loop-group.ts) speaks to
// it through one message port, with the messages below.
//
// A loop that meets a bug outside any connection (an uncaught exception, an unhandled rejection)
// fails: it says so with the stack, cuts its connections (so that every count they hold in the
// shared tables is given back and their temporary files go), discards its resumable uploads,
// stops its engine, reports "failed", and its host ends it. The supervisor starts a fresh loop in
// its place on the same port, while the other loops serve on.
//
//   starting ──listening──▶ serving ──stop──▶ stopping ──▶ stopped
//      │                       │
//      └──────── a bug ────────┴──▶ failing ──▶ failed
import type { Config } from "../config";
import { createCPool, createEngine } from "../engine/create-engine";
import { PoolStat, type CPoolEngine } from "../engine/cpool-engine";
import type { IoEngine } from "../engine/io-engine";
import { Logger } from "../log";
import { ProfileBusyError, Profiler } from "../observe/profiler";
import { statsFigures, type StatsFigures } from "../observe/stats";
import { createStore } from "../storage/create-store";
import type { HandedOver } from "../storage/partials";
import { Server } from "./server";
import { SharedIpGuard } from "./shared-ip-guard";
import { SharedCounters } from "./shared-counters";

/** What a loop is started with (structured-clone safe: it crosses to a worker thread). */
export interface LoopInit {
  config: Config;
  index: number;
  loops: number;
  /** Shared memory of the whole server (see shared-counters.ts and shared-ip-guard.ts). */
  counters: SharedArrayBuffer;
  addresses: SharedArrayBuffer;
  /** A live loop's C pool, whose workers this loop shares (loopPools "shared"); absent: make one. */
  joinPool?: number;
  /** The file store's listing index (a C pointer) that the supervisor built for every loop; 0: none. */
  keyIndex: number;
  /** The volumes' shared sequence and volume numbers (volumes.ts, VolumeCounters); null: volumes off. */
  volumes: SharedArrayBuffer | null;
}

/** From the supervisor to a loop. */
export type ToLoop =
  | { t: "figures"; id: number }
  /** A .cpuprofile of this loop's thread. */
  | { t: "profile"; id: number; seconds: number }
  /** The profile's requester went away: stop sampling now (its answer is an error). */
  | { t: "profile-cancel" }
  | { t: "reload" }
  | { t: "stop" }
  /** Another loop's RESUME: hand this parked upload over (answer: HandedOver, null or "busy"). */
  | { t: "handover"; id: number; upload: string; keyName: string }
  /** The answer to this loop's "take". */
  | { t: "taken"; id: number; value: HandedOver | null | "busy" };

/** From a loop to the supervisor. */
export type FromLoop =
  | { t: "log"; line: string }
  | { t: "listening"; port: number; httpPort: number; pool?: number }
  /** The loop could not start, or failed later; its host ends it. */
  | { t: "failed"; error: string; cleaned: boolean }
  | { t: "answer"; id: number; value: unknown; error?: string }
  | { t: "stopped" }
  /** A RESUME reached this loop for an upload it does not hold: the supervisor asks the one that does. */
  | { t: "take"; id: number; upload: string; keyName: string };

/** The transport to the supervisor: a worker's parentPort, or one end of a MessageChannel. */
export interface LoopPort {
  postMessage(message: FromLoop): void;
  on(event: "message", listener: (message: ToLoop) => void): unknown;
}

/** A loop's numbers, as the supervisor sums them (see observe/stats.ts). */
export interface LoopFigures {
  stats: StatsFigures;
  engine: Record<string, unknown>;
}

type LoopState = "starting" | "serving" | "stopping" | "stopped" | "failing" | "failed";

const LEGAL: Record<LoopState, readonly LoopState[]> = {
  starting: ["serving", "failing"],
  serving: ["stopping", "failing"],
  stopping: ["stopped", "failing"],
  stopped: [],
  failing: ["failed"],
  failed: [],
};

/** How long a failing loop may take to give back what it holds before it reports anyway. */
const CLEANUP_MS_MAX = 2000;

export class Loop {
  private state: LoopState = "starting";
  private readonly log: Logger;
  private server: Server | null = null;
  private engine: IoEngine | null = null;
  private readonly profiler = new Profiler();
  /** The profile being taken, to stop early if its requester goes away. */
  private profiling: AbortController | null = null;
  /** Takes that wait for the supervisor's answer, by request id. */
  private readonly takes = new Map<number, (value: HandedOver | null | "busy") => void>();
  private nextTake = 1;

  constructor(
    private readonly port: LoopPort,
    private readonly init: LoopInit,
    /** Ends the loop's thread (a worker) or its turn (on the main thread), once it has reported. */
    private readonly end: (code: number) => void,
  ) {
    // Every line goes to the supervisor's logger (one stream, one log file), tagged with its loop.
    this.log = new Logger(init.config.logLevel, (line) => port.postMessage({ t: "log", line: `${line} loop=${init.index}` }));
    port.on("message", (m) => void this.onMessage(m).catch((e) => this.fail(e)));
  }

  private move(to: LoopState): void {
    if (!LEGAL[this.state].includes(to)) throw new Error(`loop ${this.init.index}: illegal move ${this.state} -> ${to}`);
    this.state = to;
  }

  private post(m: FromLoop): void {
    this.port.postMessage(m);
  }

  async start(): Promise<void> {
    const { config, index, loops } = this.init;
    try {
      // Shared: the first loop's pool has every worker, the others join it; per loop: a share each.
      const ioThreads = config.loopPools === "shared" ? config.ioThreads : Math.max(1, Math.ceil(config.ioThreads / loops));
      const engineConfig = { ...config, ioThreads, priorIoThreads: Math.min(config.priorIoThreads, ioThreads) };
      // The C pool is named as such: its address lets other loops join it, and it reports itself.
      const pool = config.ioEngine === "cpool" ? createCPool(engineConfig, this.init.joinPool) : null;
      const engine = pool ?? createEngine(engineConfig);
      this.engine = engine;
      const counters = new SharedCounters(this.init.counters);
      const clients = new SharedIpGuard(config, this.init.addresses);
      const store = createStore(config, engine, clients, { index, of: loops, takeFromLoop: (id, keyName) => this.takeFromLoop(id, keyName), counters, keyIndex: this.init.keyIndex, volumes: this.init.volumes });
      // A pool's own report (threads, refused priority or pinning), once per pool.
      if (pool !== null && this.init.joinPool === undefined) reportPool(pool, engineConfig, this.log);
      const server = new Server({ config, engine, log: this.log, store, clients, loop: { index, of: loops, counters } });
      this.server = server;
      await server.start();
      if (this.state !== "starting") return; // failed meanwhile
      this.move("serving");
      this.post({ t: "listening", port: server.port, httpPort: server.httpPort, pool: pool?.poolAddress });
    } catch (e) {
      this.fail(e);
    }
  }

  /**
   * A bug outside any connection: say so, give back everything this loop holds in the server's
   * shared tables (by cutting its connections and discarding its uploads), stop the engine, report,
   * and end. Bounded: past CLEANUP_MS_MAX the report goes anyway, saying the cleanup did not finish.
   */
  fail(error: unknown): void {
    if (this.state === "failing" || this.state === "failed") return;
    const starting = this.state === "starting";
    this.state = "failing";
    const text = String((error as Error)?.stack ?? error);
    if (!starting) this.log.error("loop_failed", { error: text, effect: "its connections are cut; the supervisor starts a fresh loop in its place" });
    let reported = false;
    const report = (cleaned: boolean) => {
      if (reported) return;
      reported = true;
      this.move("failed");
      this.post({ t: "failed", error: String((error as Error)?.message ?? error), cleaned });
      this.end(1);
    };
    const timer = setTimeout(() => report(false), CLEANUP_MS_MAX);
    void (async () => {
      try {
        await this.server?.abandon();
        await this.engine?.shutdown();
        clearTimeout(timer);
        report(true);
      } catch (e) {
        this.log.error("loop_cleanup_failed", { error: String((e as Error)?.stack ?? e) });
        clearTimeout(timer);
        report(false);
      }
    })();
  }

  private takeFromLoop(upload: string, keyName: string): Promise<HandedOver | null | "busy"> {
    const id = this.nextTake++;
    return new Promise((resolve) => {
      this.takes.set(id, resolve);
      this.post({ t: "take", id, upload, keyName });
    });
  }

  private async onMessage(m: ToLoop): Promise<void> {
    const server = this.server;
    switch (m.t) {
      case "figures":
        return this.post({ t: "answer", id: m.id, value: server === null ? null : ({ stats: statsFigures(server.stats), engine: { ...server.engine.stats() } } satisfies LoopFigures) });
      case "profile-cancel":
        this.profiling?.abort();
        return;
      case "profile":
        try {
          const controller = new AbortController();
          this.profiling = controller;
          const profile = await this.profiler.profile(m.seconds, controller.signal);
          return this.post({ t: "answer", id: m.id, value: profile });
        } catch (e) {
          if (!(e instanceof Error)) throw e;
          return this.post({ t: "answer", id: m.id, value: null, error: e instanceof ProfileBusyError ? e.message : `profiling failed: ${e.message}` });
        } finally {
          this.profiling = null;
        }
      case "reload":
        server?.reload();
        return;
      case "handover":
        return this.post({ t: "answer", id: m.id, value: server?.store.resumable?.handOver(m.upload, m.keyName) ?? null });
      case "taken": {
        const resolve = this.takes.get(m.id);
        this.takes.delete(m.id);
        resolve?.(m.value);
        return;
      }
      case "stop":
        if (this.state !== "serving") return;
        this.move("stopping");
        await server?.stop();
        this.move("stopped");
        this.post({ t: "stopped" });
        this.end(0);
        return;
    }
  }
}

/** One clear line each when the system refused worker priority or CPU pinning, and the pool's size. */
export function reportPool(engine: CPoolEngine, config: Config, log: Logger): void {
  const stats = engine.nativeStats();
  const prioFailed = stats[PoolStat.PRIO_FAILED]!;
  const affinityFailed = stats[PoolStat.AFFINITY_FAILED]!;
  if (prioFailed > 0) {
    log.warn("io_priority_refused", { workers: prioFailed, of: config.priorIoThreads, effect: "those workers run at normal priority (SCHED_RR needs CAP_SYS_NICE)" });
  }
  if (stats[PoolStat.NICE_FAILED]! > 0) {
    log.warn("io_nice_refused", { workers: stats[PoolStat.NICE_FAILED]!, nice: config.ioThreadNice, effect: "those workers run at normal priority" });
  }
  if (affinityFailed > 0) {
    log.warn("cpu_affinity_refused", { workers: affinityFailed, of: config.ioThreads, effect: "those workers run unpinned" });
  }
  log.info("io_pool", { threads: stats[PoolStat.THREADS]!, waitingQueueLen: config.waitingQueueLen, submitMode: config.ioSubmitMode });
}
