// The S3 store's optional local read cache: copies of objects in a directory of the local disk,
// served by the file store's machinery (the C pool, inline calls from the kernel's caches,
// sendfile), so that a cached download is the file store's fast path plus a table lookup.
//
// Each copy is a file of its own name (c<n>, never the key's), filled by a download that missed
// (tee'd from the store's body while it streams to the client) or by an upload up to s3PartBytes
// (write-through); it enters the table only once whole, with the object's ETag. A copy is served
// while its ETag was confirmed within cacheFreshMs; past that, a HEAD confirms it (or drops it).
// So an overwrite or delete through this gateway is seen at once, and through another gateway
// after at most cacheFreshMs (0: a HEAD before every cached download). Least recently used copies
// go first when cacheBytesMax or cacheEntriesMax is reached. The table lives in memory: a restart
// empties the directory and starts cold.
import { lstatSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../log";
import { FileStore } from "./file-store";
import { checkKey, type StoreKey } from "./keys";
import { S3Reader, report, type BodyTee, type S3Store } from "./s3-store";
import { Failure, type BodyReader, type FailureCause, type FailureKind, type StoreTarget, type UploadOwner, type UploadSink } from "./store";

export interface ReadCacheOptions {
  bytesMax: number;
  entriesMax: number;
  freshMs: number;
  /** Bytes a fill may hold in memory waiting for the disk; past it its download waits. */
  fillBacklogBytesMax: number;
}

interface Entry {
  /** The cache file's key in `files`. */
  file: StoreKey;
  etag: string;
  size: number;
  /** When the store last confirmed the ETag. */
  checkedMs: number;
}

export class ReadCache {
  private store!: S3Store;
  private readonly table = new Map<string, Entry>();
  private bytes = 0;
  private seq = 0;
  /** Counts forget() calls: a fill that saw one happen meanwhile enters the table unconfirmed. */
  private forgets = 0;
  hits = 0;
  misses = 0;
  revalidations = 0;
  evictions = 0;
  fillsAbandoned = 0;

  constructor(
    readonly files: FileStore,
    private readonly options: ReadCacheOptions,
  ) {}

  get description(): string {
    return `${this.files.dataDir} (${this.options.bytesMax} bytes, fresh ${this.options.freshMs} ms)`;
  }

  attach(store: S3Store): void {
    this.store = store;
  }

  /** Empties the directory (copies of a previous run are not trusted: the table is gone), then prepares it. */
  init(log: Logger): void {
    const dir = this.files.dataDir;
    let removed = 0;
    try {
      for (const name of readdirSync(dir)) {
        const path = join(dir, name);
        if (!lstatSync(path).isDirectory()) continue;
        for (const file of readdirSync(path)) {
          rmSync(join(path, file), { force: true });
          removed++;
        }
      }
    } catch {}
    this.files.init(log);
    if (removed > 0) log.info("cache_emptied", { cacheDir: dir, files: removed });
  }

  get sendsFramed(): boolean {
    return this.files.sendsFramed;
  }

  stats(): Record<string, number> {
    return { cacheHits: this.hits, cacheMisses: this.misses, cacheRevalidations: this.revalidations, cacheEvictions: this.evictions, cacheFillsAbandoned: this.fillsAbandoned, cacheEntries: this.table.size, cacheBytes: this.bytes };
  }

  /** The key's copy is no longer the object (an upload or delete through this gateway). */
  forget(name: string): void {
    this.forgets++;
    const entry = this.table.get(name);
    if (entry !== undefined) this.drop(name, entry);
  }

  private drop(name: string, entry: Entry): void {
    this.table.delete(name);
    this.bytes -= entry.size;
    this.files.remove(entry.file, IGNORE);
  }

  private newFileKey(): StoreKey {
    return checkKey(`c${++this.seq}`) as StoreKey;
  }

  /** Whether a copy of `size` bytes may be made at all. */
  private fits(size: number): boolean {
    return size <= this.options.bytesMax && this.options.entriesMax > 0;
  }

  /** A whole copy is on disk: it enters the table (evicting the least recently used past the bounds). */
  private insert(name: string, file: StoreKey, etag: string, size: number, confirmed: boolean): void {
    const old = this.table.get(name);
    if (old !== undefined) this.drop(name, old);
    this.table.set(name, { file, etag, size, checkedMs: confirmed ? Date.now() : 0 });
    this.bytes += size;
    for (const [victim, entry] of this.table) {
      if (this.bytes <= this.options.bytesMax && this.table.size <= this.options.entriesMax) break;
      this.drop(victim, entry);
      this.evictions++;
    }
  }

  /**
   * Writes a whole body as the key's copy: copied now (the caller may reuse it) unless `owned`.
   * Its SHA-256, when the caller knows it, is recorded without hashing the body again.
   */
  fillWhole(key: StoreKey, etag: string | null, body: Uint8Array, digest: Uint8Array | null, owned = false): void {
    if (etag === null || !this.fits(body.length)) return;
    const file = this.newFileKey();
    const forgets = this.forgets;
    const copy = owned ? body : body.slice();
    const done: StoreTarget = {
      onStoreDone: () => this.insert(key.name, file, etag, copy.length, forgets === this.forgets),
      onStoreFailed: () => void this.fillsAbandoned++,
      onStoreBug: () => void this.fillsAbandoned++,
    };
    if (digest !== null) this.files.putHashed(file, copy, digest, done);
    else this.files.putWhole(file, copy, done);
  }

  /**
   * Finds a usable copy: `use(entry)` at once when confirmed within freshMs, after a HEAD that
   * confirms it otherwise; `miss()` when there is none (or the HEAD says it changed); `failed` when
   * the HEAD itself failed (the store is down: its failure is the answer).
   */
  private lookup(key: StoreKey, use: (entry: Entry) => void, miss: () => void, failed: (e: unknown) => void): void {
    const entry = this.table.get(key.name);
    if (entry === undefined) {
      this.misses++;
      return miss();
    }
    // Most recently used last: Map keeps insertion order.
    this.table.delete(key.name);
    this.table.set(key.name, entry);
    const now = Date.now();
    if (now - entry.checkedMs <= this.options.freshMs) {
      this.hits++;
      return use(entry);
    }
    this.revalidations++;
    this.store.client.request("HEAD", this.store.objectOf(key)).then(
      (a) => {
        if (this.table.get(key.name) !== entry) return this.lookup(key, use, miss, failed);
        if (a.headers.get("etag") === entry.etag) {
          entry.checkedMs = now;
          this.hits++;
          return use(entry);
        }
        this.drop(key.name, entry);
        this.misses++;
        miss();
      },
      (e) => {
        if (this.table.get(key.name) === entry) this.drop(key.name, entry);
        failed(e);
      },
    );
  }

  /** A small download: true when the cache answers it (a hit, or a HEAD on the way); false: ask the store. */
  readWhole(key: StoreKey, into: Uint8Array, target: StoreTarget, digest?: Uint8Array): boolean {
    if (!this.table.has(key.name)) {
      this.misses++;
      return false;
    }
    this.lookup(
      key,
      (entry) => this.files.readWhole(entry.file, into, new FallBack(target, () => this.store.getFirst(key, into, target, digest)), digest),
      () => this.store.getFirst(key, into, target, digest),
      (e) => report(target, e),
    );
    return true;
  }

  openReader(key: StoreKey, digest?: Uint8Array): BodyReader {
    return new CachedReader(this, this.store, key, digest);
  }

  /** Serves `key` from its copy or the store; the reader's members follow the one chosen. */
  openFor(reader: CachedReader, key: StoreKey, digest: Uint8Array | undefined, target: StoreTarget): void {
    const fromStore = () => reader.use(new S3Reader(this.store, key, digest, new Fill(this, key)), target);
    this.lookup(
      key,
      (entry) => reader.use(this.files.openReader(entry.file, digest), new FallBack(target, fromStore)),
      fromStore,
      (e) => report(target, e),
    );
  }

  /** A fill's body is whole on disk under `file`. */
  filled(name: string, file: StoreKey, etag: string, size: number, forgetsAtStart: number): void {
    this.insert(name, file, etag, size, forgetsAtStart === this.forgets);
  }

  get forgetCount(): number {
    return this.forgets;
  }

  /** Starts writing a copy of `size` bytes, or returns null when it may not be made. */
  startFill(size: number, owner: UploadOwner): { file: StoreKey; sink: UploadSink } | null {
    if (!this.fits(size) || size === 0) return null;
    const file = this.newFileKey();
    return { file, sink: this.files.beginUpload(file, size, owner) };
  }

  get fillBacklogBytesMax(): number {
    return this.options.fillBacklogBytesMax;
  }
}

const IGNORE: StoreTarget = { onStoreDone() {}, onStoreFailed() {}, onStoreBug() {} };

/**
 * A target that turns a cache file gone missing (evicted between the lookup and the open, or
 * removed by hand) into a trip to the store instead of `no such key`.
 */
class FallBack implements StoreTarget {
  private first = true;
  constructor(
    private readonly target: StoreTarget,
    private readonly fromStore: () => void,
  ) {}
  onStoreDone(value: number): void {
    this.first = false;
    this.target.onStoreDone(value);
  }
  onStoreFailed(failure: FailureKind, cause: FailureCause): void {
    const first = this.first;
    this.first = false;
    if (first && failure === Failure.NOT_FOUND) return this.fromStore();
    this.target.onStoreFailed(failure, cause);
  }
  onStoreBug(error: unknown): void {
    this.target.onStoreBug(error);
  }
}

/**
 * The download reader of the S3 store with a cache: after open() it is the cache file's reader
 * (with sendTo and sendFramedNow where the file store has them) or the store's (filling a copy).
 */
export class CachedReader implements BodyReader {
  private inner: BodyReader | null = null;
  private closed = false;
  sendTo?: (socket: number, target: StoreTarget) => void;
  sendFramedNow?: (socket: number, head: Uint8Array, tail: Uint8Array) => number;

  constructor(
    private readonly cache: ReadCache,
    private readonly store: S3Store,
    private readonly key: StoreKey,
    private readonly digest: Uint8Array | undefined,
  ) {}

  get size(): number {
    return this.inner?.size ?? 0;
  }

  open(target: StoreTarget): void {
    this.cache.openFor(this, this.key, this.digest, target);
  }

  /** The reader chosen by the lookup: opened now, with `target` hearing its size. */
  use(inner: BodyReader, target: StoreTarget): void {
    if (this.closed) return;
    const previous = this.inner;
    if (previous !== null) void previous.close(); // a cache file that went missing
    this.inner = inner;
    this.sendTo = inner.sendTo?.bind(inner);
    this.sendFramedNow = inner.sendFramedNow?.bind(inner);
    inner.open(target);
  }

  range(offset: number, length: number): void {
    this.inner!.range(offset, length);
  }

  read(into: Uint8Array, target: StoreTarget): void {
    this.inner!.read(into, target);
  }

  close(): Promise<void> {
    this.closed = true;
    return this.inner?.close() ?? Promise.resolve();
  }
}

/**
 * Copies a download's body to a cache file as it streams from the store. Chunks wait in memory
 * until the file is open, then the file store writes them; while the copy is more than
 * fillBacklogBytesMax behind, the download reads no more from the store (the disk sets the pace,
 * memory stays bounded). A fill whose download ends short, takes a range, or is closed early is
 * given up and its file removed.
 */
class Fill implements UploadOwner, BodyTee {
  private sink: UploadSink | null = null;
  private file: StoreKey | null = null;
  private etag: string | null = null;
  private size = 0;
  private done = false;
  private waiter: (() => void) | null = null;
  private readonly forgets: number;

  constructor(
    private readonly cache: ReadCache,
    private readonly key: StoreKey,
  ) {
    this.forgets = cache.forgetCount;
  }

  /** The store's reader opened: the object's size and ETag. */
  begin(size: number, etag: string | null): void {
    if (etag === null) return this.giveUp(false);
    const started = this.cache.startFill(size, this);
    if (started === null) return this.giveUp(false);
    this.sink = started.sink;
    this.file = started.file;
    this.etag = etag;
    this.size = size;
  }

  bytes(chunk: Uint8Array): void {
    if (this.sink === null || this.done) return;
    this.sink.push(chunk);
  }

  /** The download waits while the copy is more than fillBacklogBytesMax behind (disk slower than the store). */
  room(): Promise<void> | null {
    if (this.sink === null || this.done || this.sink.backlogBytes <= this.cache.fillBacklogBytesMax) return null;
    return new Promise<void>((resolve) => (this.waiter = resolve));
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.();
  }

  ended(complete: boolean): void {
    if (this.sink === null || this.done) return;
    if (!complete) return this.giveUp(true);
    this.done = true;
    this.sink.end();
  }

  private giveUp(counted: boolean): void {
    this.wake();
    if (this.done) return;
    this.done = true;
    if (counted) this.cache.fillsAbandoned++;
    const sink = this.sink;
    this.sink = null;
    if (sink !== null) void sink.abort();
  }

  onStoreDone(): void {}
  onStoreFailed(): void {
    this.giveUp(true);
  }
  onStoreBug(): void {
    this.giveUp(true);
  }
  onUploadProgress(): void {
    if (this.sink !== null && this.sink.backlogBytes <= this.cache.fillBacklogBytesMax / 2) this.wake();
  }
  onUploadDone(): void {
    this.wake();
    if (this.file !== null && this.etag !== null) this.cache.filled(this.key.name, this.file, this.etag, this.size, this.forgets);
    else this.cache.fillsAbandoned++;
  }
  onUploadFailed(): void {
    this.wake();
    this.cache.fillsAbandoned++;
  }
}
