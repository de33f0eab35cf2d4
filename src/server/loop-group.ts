// Several event loops on one port (`loops` > 1): one thread each (loop-worker.ts), each with its
// own listener (SO_REUSEPORT: the kernel spreads connections), connections, engine and store
// instance, over one set of C pool workers (each loop its own completion ring and doorbell; or a
// pool per loop: loopPools); nothing else shared on the hot path but one counter (connectionsMax
// is a whole-server bound).
// To its operators it is one server: this thread holds the data directory's lock and runs the
// start-up sweep (or reaches the bucket) once, writes the one log stream, answers the admin endpoint
// with the loops' figures summed (and per loop), and stops every loop gracefully on a signal. A
// loop that fails takes the whole server down with a message, never leaving a port half served.
import type { Config } from "../config";
import { SyncEngine } from "../engine/sync-engine";
import type { Logger } from "../log";
import { createStore } from "../storage/create-store";
import type { Store } from "../storage/store";
import { listenOrExplain } from "./listen";
import { sharedAddressTable } from "./shared-ip-guard";
import { IpGuard } from "./ip-guard";
import type { FromLoop, LoopInit, ToLoop } from "./loop-worker";
import type { HandedOver } from "../storage/partials";

/** Keys of stats whose values are percentiles or maxima: over loops, the largest is kept, not the sum. */
const LARGEST = new Set(["p50", "p90", "p99", "max"]);

/**
 * Sums the numbers of several stats snapshots of the same shape. Percentiles: their largest.
 * `once`: keys whose value is the same for every loop (the process's, or the shared pool's
 * workers and queue): the first loop's.
 */
export function sumSnapshots(snapshots: unknown[], once: ReadonlySet<string>): unknown {
  const first = snapshots[0];
  if (typeof first === "number") return snapshots.reduce((a: number, b) => a + (typeof b === "number" ? b : 0), 0);
  if (typeof first !== "object" || first === null || Array.isArray(first)) return first;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(first)) {
    const values = snapshots.map((s) => (s as Record<string, unknown>)[key]);
    if (once.has(key)) out[key] = values[0];
    else if (LARGEST.has(key) && typeof values[0] === "number") out[key] = Math.max(...(values as number[]));
    else out[key] = sumSnapshots(values, once);
  }
  return out;
}

/** The sample lines of a Prometheus text by their name and labels (the line up to its value). */
function samplesOf(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

/**
 * One Prometheus text of several loops' texts, in the single loop's shape: each sample the sum over
 * loops (a family in `once`, the same for every loop, the first loop's value), so dashboards read
 * the same with one loop or many; then per-loop families for what differs between loops.
 */
export function mergeMetrics(texts: string[], once: ReadonlySet<string>): string {
  const perLoop = texts.map(samplesOf);
  const lines: string[] = [];
  for (const line of texts[0]!.split("\n")) {
    if (line === "") continue;
    if (line.startsWith("#")) {
      lines.push(line);
      continue;
    }
    const at = line.lastIndexOf(" ");
    const key = line.slice(0, at);
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(key)![0];
    const value = once.has(name) || [...once].some((p) => p.endsWith("*") && name.startsWith(p.slice(0, -1))) ? perLoop[0]!.get(key)! : perLoop.reduce((sum, m) => sum + (m.get(key) ?? 0), 0);
    lines.push(`${key} ${value}`);
  }
  lines.push("# HELP fsgw_loop_connections_open Client connections open now, by event loop.", "# TYPE fsgw_loop_connections_open gauge");
  perLoop.forEach((m, loop) => lines.push(`fsgw_loop_connections_open{loop="${loop}"} ${m.get("fsgw_connections_open") ?? 0}`));
  lines.push("# HELP fsgw_loop_exchanges_total Exchanges completed, by event loop (all ops).", "# TYPE fsgw_loop_exchanges_total counter");
  perLoop.forEach((m, loop) => {
    let total = 0;
    for (const [k, v] of m) if (k.startsWith("fsgw_exchanges_total{")) total += v;
    lines.push(`fsgw_loop_exchanges_total{loop="${loop}"} ${total}`);
  });
  return lines.join("\n") + "\n";
}

export class LoopGroup {
  private readonly workers: Worker[] = [];
  private readonly waiting = new Map<number, (m: FromLoop & { t: "answer" }) => void>();
  private nextId = 1;
  /** Parked uploads handed from loop to loop: where each is now (its id names where it began). */
  private readonly where = new Map<string, number>();
  private store: Store | null = null;
  private stopping: Promise<void> | null = null;
  private failed: ((reason: string) => void) | null = null;
  draining = false;
  port = 0;

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
    readonly loops: number,
  ) {}

  /**
   * Prepares the store for the whole server, then starts the loops one by one (the first binds the
   * port, maybe a free one, the others join it). Rejects when one cannot start.
   * `onFailure` hears a loop that fails later (the group is then stopped).
   */
  async start(onFailure: (reason: string) => void): Promise<void> {
    this.failed = onFailure;
    const { config } = this;
    // The lock, the layout, the sweep of temporary files, the bucket: once, here, on the blocking
    // engine (this thread runs no pool). The loops' read caches are their own.
    this.store = createStore({ ...config, cacheDir: "" }, new SyncEngine(), new IpGuard(config));
    this.store.init(this.log, true);
    await this.store.open?.();
    // With SO_REUSEPORT on both, two servers would share a port silently: a plain bind first
    // proves no other process holds it.
    if (config.port !== 0) listenOrExplain("the file protocol (host, port)", config.host, config.port, () => Bun.listen({ hostname: config.host, port: config.port, socket: { data() {} } })).stop(true);
    const openConnections = new SharedArrayBuffer(4);
    const addresses = sharedAddressTable(config);
    const resumable = new SharedArrayBuffer(16);
    let port = config.port;
    let joinPool: number | undefined;
    for (let index = 0; index < this.loops; index++) {
      const started = await this.startLoop({ config: { ...config, port }, index, loops: this.loops, openConnections, addresses, resumable, joinPool });
      port = started.port;
      if (index === 0 && config.loopPools === "shared") joinPool = started.pool;
    }
    this.port = port;
    const pools = config.ioEngine !== "cpool" ? "none" : config.loopPools === "shared" ? `one, ${config.ioThreads} workers` : `one per loop, ${Math.max(1, Math.ceil(config.ioThreads / this.loops))} workers each`;
    this.log.info("loops", { loops: this.loops, pools, port });
  }

  private startLoop(init: LoopInit): Promise<{ port: number; pool?: number }> {
    const worker = new Worker(new URL("./loop-worker.ts", import.meta.url).href, { workerData: init } as WorkerOptions);
    this.workers.push(worker);
    return new Promise<{ port: number; pool?: number }>((resolve, reject) => {
      let listening = false;
      worker.addEventListener("message", (event: MessageEvent<FromLoop>) => {
        const m = event.data;
        switch (m.t) {
          case "log":
            return this.log.line(m.line);
          case "listening":
            listening = true;
            return resolve({ port: m.port, pool: m.pool });
          case "failed":
            return listening ? this.loopFailed(init.index, m.error) : reject(new Error(`loop ${init.index}: ${m.error}`));
          case "answer":
            this.waiting.get(m.id)?.(m);
            return;
          case "stopped":
            return;
          case "take":
            return void this.relayTake(init.index, m.id, m.upload, m.keyName);
        }
      });
      worker.addEventListener("error", (event: ErrorEvent) => {
        const error = String(event.message ?? event.error ?? "error");
        if (listening) this.loopFailed(init.index, error);
        else reject(new Error(`loop ${init.index}: ${error}`));
      });
      worker.addEventListener("close", () => {
        if (this.stopping === null && listening) this.loopFailed(init.index, "its thread ended");
      });
    });
  }

  private loopFailed(index: number, error: string): void {
    if (this.stopping !== null) return;
    this.log.error("loop_failed", { loop: index, error, effect: "the server stops: no port is left half served" });
    this.failed?.(`loop ${index} failed: ${error}`);
  }

  /** Asks every loop one question; resolves with their answers in loop order. */
  private ask(question: (id: number) => ToLoop, timeoutMs = 10_000): Promise<(FromLoop & { t: "answer" })[]> {
    return Promise.all(this.workers.map((_, loop) => this.askOne(loop, question, timeoutMs)));
  }

  /** Stats keys that are the same for every loop: the process's, and a shared pool's workers and queue. */
  private get onceKeys(): ReadonlySet<string> {
    // The C library counts fsyncs for the whole process; the other engines, each its own.
    // keptBytes: every loop reports the server-wide figure (shared counters).
    const keys = ["uptimeSeconds", "startedMs", "process", "keptBytes", ...(this.config.ioEngine === "cpool" ? ["fsyncs"] : [])];
    if (this.config.loopPools === "shared") keys.push("threads", "queueDepth", "queueDepthHigh");
    return new Set(keys);
  }

  /** /debug/stats: every loop's figures summed (percentiles: the largest), and each loop's. */
  async statsJson(): Promise<unknown> {
    const answers = await this.ask((id) => ({ t: "stats", id }));
    const perLoop = answers.map((a) => a.value);
    return { loops: this.loops, ...(sumSnapshots(perLoop, this.onceKeys) as object), perLoop };
  }

  /** /metrics: the single loop's families, summed over loops, and per-loop connections and exchanges. */
  async metricsText(): Promise<string> {
    const answers = await this.ask((id) => ({ t: "metrics", id }));
    const once = ["fsgw_uptime_seconds", "fsgw_process_*", "fsgw_io_engine_info", "fsgw_resumable_kept_bytes"];
    if (this.config.loopPools === "shared") once.push("fsgw_io_threads", "fsgw_io_queue_depth", "fsgw_io_queue_depth_high");
    return mergeMetrics(answers.map((a) => String(a.value ?? "")), new Set(once));
  }

  /**
   * /debug/profile: a profile of loop `loop`'s thread; without one, of every loop at once, and the
   * busiest one's (most samples) is answered.
   */
  async profile(loop: number | null, seconds: number, signal: AbortSignal): Promise<{ value: unknown; error?: string; loop: number }> {
    const asked = loop === null ? this.workers.map((_, i) => i) : [loop];
    // The requester went away: the loops stop sampling now, not when the seconds are up.
    const cancel = () => {
      for (const i of asked) this.workers[i]?.postMessage({ t: "profile-cancel" } satisfies ToLoop);
    };
    signal.addEventListener("abort", cancel, { once: true });
    const ask = (i: number) => this.askOne(i, (id) => ({ t: "profile", id, seconds }), seconds * 1000 + 10_000);
    try {
      if (loop !== null) return { ...(await ask(loop)), loop };
      return this.busiest(await Promise.all(asked.map((i) => ask(i))));
    } finally {
      signal.removeEventListener("abort", cancel);
    }
  }

  /** The answer with the most samples, and its loop. */
  private busiest(answers: (FromLoop & { t: "answer" })[]): { value: unknown; error?: string; loop: number } {
    const samples = (a: { value: unknown }) => ((a.value as { samples?: unknown[] } | null)?.samples?.length ?? -1);
    let best = 0;
    answers.forEach((a, i) => (samples(a) > samples(answers[best]!) ? (best = i) : 0));
    return { ...answers[best]!, loop: best };
  }

  /**
   * A RESUME reached loop `from` for an upload it does not hold: asks the loop that holds it (the
   * last one it was handed to, else the one its id names) to hand it over, and answers `from`.
   */
  private async relayTake(from: number, request: number, upload: string, keyName: string): Promise<void> {
    const named = Number(upload.slice(0, upload.indexOf(".")));
    const holder = this.where.get(upload) ?? named;
    let value: HandedOver | null | "busy" = null;
    if (Number.isInteger(holder) && holder >= 0 && holder < this.workers.length && holder !== from) {
      const answer = await this.askOne(holder, (id) => ({ t: "handover", id, upload, keyName }));
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
    this.workers[from]?.postMessage({ t: "taken", id: request, value } satisfies ToLoop);
  }

  /** Asks one loop one question. */
  private askOne(loop: number, question: (id: number) => ToLoop, timeoutMs = 10_000): Promise<FromLoop & { t: "answer" }> {
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
      this.workers[loop]!.postMessage(question(id));
    });
  }

  reload(): void {
    for (const w of this.workers) w.postMessage({ t: "reload" } satisfies ToLoop);
  }

  /** Stops every loop gracefully (each drains its connections within shutdownGraceMs), then the threads. */
  stop(): Promise<void> {
    if (this.stopping !== null) return this.stopping;
    this.draining = true;
    this.stopping = (async () => {
      const deadline = this.config.shutdownGraceMs + 10_000;
      await Promise.all(
        this.workers.map(
          (worker) =>
            new Promise<void>((resolve) => {
              const timer = setTimeout(resolve, deadline);
              worker.addEventListener("message", (event: MessageEvent<FromLoop>) => {
                if (event.data.t !== "stopped") return;
                clearTimeout(timer);
                resolve();
              });
              worker.addEventListener("close", () => {
                clearTimeout(timer);
                resolve();
              });
              worker.postMessage({ t: "stop" } satisfies ToLoop);
            }),
        ),
      );
      for (const w of this.workers) w.terminate();
      this.store?.close?.();
      this.log.info("stopped", { loops: this.loops });
    })();
    return this.stopping;
  }
}
