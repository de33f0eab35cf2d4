// Builds the store the config names: the file store over dataDir, or the S3 store (with its read
// cache over cacheDir when one is set). The server knows only the Store interface.
import type { Config } from "../config";
import type { IoEngine } from "../engine/io-engine";
import { FileStore } from "./file-store";
import { ReadCache } from "./read-cache";
import type { NativeIndex } from "../ffi/pool-binding";
import { S3Store } from "./s3-store";
import { VolumeCounters } from "./volumes";
import type { Store } from "./store";
import type { ClientBudget, HandedOver } from "./partials";
import type { SharedCounters } from "../server/shared-counters";

/** One event loop of several, as its store sees it. */
export interface StoreLoop {
  index: number;
  of: number;
  /** Takes over an upload another loop parked (through the loop group), for a RESUME. */
  takeFromLoop: (id: string, keyName: string) => Promise<HandedOver | null | "busy">;
  /** Every loop's resumable uploads and their kept bytes, each loop in its own cells. */
  counters: SharedCounters;
  /** The listing index of the data directory (a C pointer, shared by the loops); 0: none. */
  keyIndex?: number;
  /** The volumes' shared counters (volumes.ts), when the data directory has volumes; null: none. */
  volumes?: SharedArrayBuffer | null;
}

/**
 * `budget`: the server's per-client bounds on resumable uploads (its address table).
 * `loop`: this store serves one event loop of `loops` (> 1): the resumable-upload bounds counted
 * with every loop's (a parked upload moves to the loop its RESUME reaches: the C library's hash state moves
 * with it, so only on the cpool engine; elsewhere resumable uploads are off with several loops),
 * and the read cache split into one directory and one share of the bounds per loop.
 */
export function createStore(config: Config, engine: IoEngine, budget: ClientBudget, loop?: StoreLoop, forSupervisor = false): Store {
  if (config.store === "s3") return s3Store(config, engine, loop, forSupervisor);
  if (loop === undefined) return fileStore(config, engine, config.dataDir, "resumable", budget);
  // A parked upload moves between loops with the C library's hash state: other engines keep
  // resumable uploads only when there is one loop.
  const resumable = config.ioEngine === "cpool" || loop.of === 1;
  return fileStore(config, engine, config.dataDir, resumable ? "resumable" : "plain", budget, loop);
}

/** The index the supervisor opened, by its pointer (loaded lazily: the C library is then loadable). */
function attachIndex(handle: number): NativeIndex {
  const { NativeIndex: Index } = require("../ffi/pool-binding") as typeof import("../ffi/pool-binding");
  return Index.attach(handle);
}

function fileStore(config: Config, engine: IoEngine, dataDir: string, kind: "resumable" | "plain" | "cache", budget: ClientBudget | null, loop?: StoreLoop): FileStore {
  return new FileStore(engine, {
    dataDir,
    shards: config.shards,
    fsyncOnCommit: kind !== "cache" && config.fsyncOnCommit, // a cache copy needs no flush: the store has the object
    diskFreeBytesMin: kind !== "cache" ? config.diskFreeBytesMin : 0, // a cache is bounded by cacheBytesMax
    // Permission bits in octal ("0600"), as the configuration checked them.
    fileMode: Number.parseInt(config.fileMode, 8),
    dirMode: Number.parseInt(config.dirMode, 8),
    ioChunkBytes: config.ioChunkBytes,
    uploadWritesInFlightMax: config.uploadWritesInFlightMax,
    resumable: kind === "resumable" && budget !== null ? { uploadsMax: config.resumableUploadsMax, bytesMax: config.resumableBytesMax, ttlMs: config.resumableTtlMs, budget } : null,
    loop: kind === "resumable" && loop !== undefined ? { index: loop.index, takeFromLoop: loop.takeFromLoop, counters: loop.counters } : undefined,
    // A read cache is not listed; the data directory's stores share the supervisor's index.
    index: kind !== "cache" && loop?.keyIndex ? attachIndex(loop.keyIndex) : null,
    // New small bodies go to volumes with `volumes` on; without it, the records a data directory
    // has in volumes stay readable and deletable (-1: no body is appended).
    volumes:
      kind !== "cache" && loop?.volumes
        ? {
            counters: new VolumeCounters(loop.volumes),
            bodyBytesMax: config.volumes ? config.volumeBytesMax : -1,
            fileBytesMax: config.volumeFileBytesMax,
            batchBytesMax: config.volumeBatchBytesMax,
            fsync: config.fsyncOnCommit,
            fileMode: Number.parseInt(config.fileMode, 8),
            loop: loop.index,
            filesOpenMax: config.volumeFilesOpenMax,
            // One loop compacts for all (its copies go to its own volume).
            compact: loop.index === 0 ? { liveRatio: config.volumeCompactLivePercent / 100, bytesPerSecond: config.volumeCompactBytesPerSecond, checkMs: config.volumeCompactCheckMs } : null,
          }
        : null,
  });
}

/** `forSupervisor`: the store that checks the bucket at start; the loops hold the read caches. */
function s3Store(config: Config, engine: IoEngine, loop: StoreLoop | undefined, forSupervisor: boolean): S3Store {
  const share = loop?.of ?? 1;
  const cache =
    config.cacheDir === "" || forSupervisor
      ? null
      : new ReadCache(fileStore(config, engine, loop === undefined ? config.cacheDir : `${config.cacheDir}/loop-${loop.index}`, "cache", null), {
          bytesMax: Math.floor(config.cacheBytesMax / share),
          entriesMax: Math.floor(config.cacheEntriesMax / share),
          freshMs: config.cacheFreshMs,
          fillBacklogBytesMax: config.connectionBufferBytesMax,
        });
  return new S3Store({
    s3: {
      endpoint: config.s3Endpoint !== "" ? config.s3Endpoint : `https://s3.${config.s3Region}.amazonaws.com`,
      bucket: config.s3Bucket,
      region: config.s3Region,
      accessKeyId: config.s3AccessKeyId,
      secretAccessKey: config.s3SecretAccessKey,
      sessionToken: config.s3SessionToken,
      timeoutMs: config.s3TimeoutMs,
      requestsMax: config.s3ConcurrentRequestsMax,
    },
    prefix: config.s3Prefix,
    partBytes: config.s3PartBytes,
    partsInFlightMax: config.uploadWritesInFlightMax,
    staleUploadMs: config.s3StaleUploadMs,
    pendingAbortsMax: config.s3PendingAbortsMax,
    newHasher: () => engine.newHasher(),
    cacheElsewhere: forSupervisor && config.cacheDir !== "" ? `${config.cacheDir}, one directory per event loop (${config.cacheBytesMax} bytes in all, fresh ${config.cacheFreshMs} ms)` : undefined,
    cache,
  });
}
