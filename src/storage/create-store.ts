// Builds the store the config names: the file store over dataDir, or the S3 store (with its read
// cache over cacheDir when one is set). The server knows only the Store interface.
import type { Config } from "../config";
import type { IoEngine } from "../engine/io-engine";
import { FileStore } from "./file-store";
import { ReadCache } from "./read-cache";
import { S3Store } from "./s3-store";
import type { Store } from "./store";

export function createStore(config: Config, engine: IoEngine): Store {
  if (config.store === "s3") return s3Store(config, engine);
  return fileStore(config, engine, config.dataDir, true);
}

function fileStore(config: Config, engine: IoEngine, dataDir: string, resumable: boolean): FileStore {
  return new FileStore(engine, {
    dataDir,
    shards: config.shards,
    fsyncOnCommit: resumable && config.fsyncOnCommit, // a cache copy needs no flush: the store has the object
    ioChunkBytes: config.ioChunkBytes,
    uploadWritesInFlightMax: config.uploadWritesInFlightMax,
    resumable: resumable ? { uploadsMax: config.resumableUploadsMax, bytesMax: config.resumableBytesMax, ttlMs: config.resumableTtlMs } : undefined,
  });
}

function s3Store(config: Config, engine: IoEngine): S3Store {
  const cache =
    config.cacheDir === ""
      ? null
      : new ReadCache(fileStore(config, engine, config.cacheDir, false), {
          bytesMax: config.cacheBytesMax,
          entriesMax: config.cacheEntriesMax,
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
    cache,
  });
}
