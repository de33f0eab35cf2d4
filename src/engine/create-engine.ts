// Picks the engine named by config.ioEngine.
import type { Config } from "../config";
import { BunEngine } from "./bun-engine";
import { CPoolEngine } from "./cpool-engine";
import type { IoEngine } from "./io-engine";
import { SyncEngine } from "./sync-engine";

/** `joinPool`: share the C pool workers of another loop's engine (its CPoolEngine.poolAddress). */
export function createEngine(config: Config, joinPool?: number): IoEngine {
  switch (config.ioEngine) {
    case "cpool":
      return createCPool(config, joinPool);
    case "bun":
      return new BunEngine();
    case "sync":
      return new SyncEngine();
  }
}

/** The C pool engine (ioEngine "cpool"): its own pool, or a share of another loop's (`joinPool`). */
export function createCPool(config: Config, joinPool?: number): CPoolEngine {
  return new CPoolEngine({
    threads: config.ioThreads,
    capacity: config.waitingQueueLen,
    priorThreads: config.priorIoThreads,
    cpuAffinity: config.cpuAffinity,
    workerNice: config.ioThreadNice,
    submitMode: config.ioSubmitMode,
    batchMax: config.submitBatchMax,
    drainBatchMax: config.drainBatchMax,
    inline: config.ioInline,
    jobsPerWake: config.ioJobsPerWake,
    spinUs: config.ioSpinUs,
    digestCacheEntries: config.digestCacheEntries,
    joinPool,
  });
}
