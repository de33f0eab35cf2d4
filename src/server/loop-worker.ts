// One event loop of several (`loops` > 1): a thread with its own engine (over the first loop's
// C pool workers, or a pool of its own: loopPools), its own store instance, its own listener on the shared port and its own connections. The group
// (loop-group.ts) prepared the store for the whole server before starting it; this thread only
// serves. It speaks to the group by messages: its log lines, "listening", answers to stats,
// metrics and profile requests, and "stopped" after a graceful stop.
import { parentPort, workerData } from "node:worker_threads";
import type { Config } from "../config";
import { createEngine } from "../engine/create-engine";
import { CPoolEngine } from "../engine/cpool-engine";
import { Logger } from "../log";
import { Profiler } from "../observe/profiler";
import { renderMetrics } from "../observe/prometheus";
import { processStats, statsSnapshot } from "../observe/stats";
import { createStore } from "../storage/create-store";
import { FileStore } from "../storage/file-store";
import type { HandedOver } from "../storage/partials";
import { Server } from "./server";
import { SharedIpGuard } from "./shared-ip-guard";
import { reportPool } from "../serve";

export interface LoopInit {
  config: Config;
  index: number;
  loops: number;
  /** Element 0: open connections of every loop (connectionsMax is a whole-server bound). */
  openConnections: SharedArrayBuffer;
  /** The per-address limits' table, shared by every loop (shared-ip-guard.ts). */
  addresses: SharedArrayBuffer;
  /** Every loop's resumable uploads (Int32 at 0) and the bytes their parked files keep (BigInt64 at 8). */
  resumable: SharedArrayBuffer;
  /** loopPools "shared", loops after the first: the first loop's C pool, whose workers this one shares. */
  joinPool?: number;
}

/** From the group to a loop. */
export type ToLoop =
  | { t: "stats"; id: number }
  | { t: "metrics"; id: number }
  /** A .cpuprofile of this loop's thread (the admin endpoint formats it). */
  | { t: "profile"; id: number; seconds: number }
  /** The profile's requester went away: stop sampling now (its answer is an error). */
  | { t: "profile-cancel" }
  | { t: "reload" }
  | { t: "stop" }
  /** Another loop's RESUME: hand this parked upload over (answer: HandedOver, null or "busy"). */
  | { t: "handover"; id: number; upload: string; keyName: string }
  /** The answer to this loop's "take". */
  | { t: "taken"; id: number; value: HandedOver | null | "busy" };

/** From a loop to the group. */
export type FromLoop =
  | { t: "log"; line: string }
  | { t: "listening"; port: number; pool?: number }
  | { t: "failed"; error: string }
  | { t: "answer"; id: number; value: unknown; error?: string }
  | { t: "stopped" }
  /** A RESUME reached this loop for an upload it does not hold: the group asks the one that does. */
  | { t: "take"; id: number; upload: string; keyName: string };

const port = parentPort!;
const post = (m: FromLoop) => port.postMessage(m);
const init = workerData as LoopInit;
const { config, index } = init;
// Every line goes to the group's logger (one stream, one log file), tagged with its loop.
const log = new Logger(config.logLevel, (line) => post({ t: "log", line: `${line} loop=${index}` }));

/** Takes that wait for the group's answer, by request id. */
const takes = new Map<number, (value: HandedOver | null | "busy") => void>();
let nextTake = 1;
function takeFromLoop(upload: string, keyName: string): Promise<HandedOver | null | "busy"> {
  const id = nextTake++;
  return new Promise((resolve) => {
    takes.set(id, resolve);
    post({ t: "take", id, upload, keyName });
  });
}

let server: Server;
try {
  // Shared: the first loop's pool has every worker, the others join it; per loop: a share each.
  const ioThreads = config.loopPools === "shared" ? config.ioThreads : Math.max(1, Math.ceil(config.ioThreads / init.loops));
  const engine = createEngine({ ...config, ioThreads, priorIoThreads: Math.min(config.priorIoThreads, ioThreads) }, init.joinPool);
  const resumableCounts = { uploads: new Int32Array(init.resumable, 0, 1), bytes: new BigInt64Array(init.resumable, 8, 1) };
  const clients = new SharedIpGuard(config, init.addresses);
  const store = createStore(config, engine, clients, { index, of: init.loops, takeFromLoop, resumableCounts });
  // The pool's own report (threads, refused priority or pinning), once per pool.
  if (engine instanceof CPoolEngine && (index === 0 || config.loopPools === "per-loop")) reportPool(engine, { ...config, ioThreads, priorIoThreads: Math.min(config.priorIoThreads, ioThreads) }, log);
  server = new Server({ config, engine, log, store, clients, loop: { index, of: init.loops, openConnections: new Int32Array(init.openConnections), addresses: init.addresses } });
  await server.start();
  post({ t: "listening", port: server.port, pool: engine instanceof CPoolEngine ? engine.poolAddress : undefined });
} catch (e) {
  post({ t: "failed", error: String((e as Error)?.message ?? e) });
  process.exit(1);
}

// Tests prove that a loop dying takes the server down cleanly: this makes loop N throw on its thread.
if (process.env.FSGW_TEST_CRASH_LOOP === String(index)) {
  setTimeout(() => {
    throw new Error("deliberate crash (FSGW_TEST_CRASH_LOOP)");
  }, Number(process.env.FSGW_TEST_CRASH_AFTER_MS ?? "300"));
}

// As in a single loop: a bug outside any connection is logged and counted, and the loop serves on
// (every continuation of an exchange is guarded by its connection; these fire only for the rest).
process.on("unhandledRejection", (reason) => {
  server.stats.uncaughtErrors++;
  log.error("unhandled_rejection", { error: String((reason as Error)?.stack ?? reason) });
});

const profiler = new Profiler();
/** The profile being taken, to stop early if its requester goes away. */
let profiling: AbortController | null = null;
port.on("message", async (m: ToLoop) => {
  switch (m.t) {
    case "profile-cancel":
      profiling?.abort();
      return;
    case "stats":
      return post({ t: "answer", id: m.id, value: statsSnapshot(server.stats, server.engine.stats()) });
    case "metrics":
      return post({ t: "answer", id: m.id, value: renderMetrics(server.stats, server.engine.stats(), processStats()) });
    case "profile":
      try {
        const controller = new AbortController();
        profiling = controller;
        const profile = await profiler.profile(m.seconds, controller.signal);
        return post({ t: "answer", id: m.id, value: profile });
      } catch (e) {
        return post({ t: "answer", id: m.id, value: null, error: (e as Error).message });
      } finally {
        profiling = null;
      }
    case "reload":
      server.reload();
      return;
    case "handover": {
      const store = server.store;
      return post({ t: "answer", id: m.id, value: store instanceof FileStore ? store.handOverPartial(m.upload, m.keyName) : null });
    }
    case "taken": {
      const resolve = takes.get(m.id);
      takes.delete(m.id);
      resolve?.(m.value);
      return;
    }
    case "stop":
      await server.stop();
      post({ t: "stopped" });
      return;
  }
});
