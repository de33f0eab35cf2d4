// Sharded, atomic storage on one data directory.
//
// Layout: <dataDir>/<shard>/<key>, where <shard> is the key's FNV-1a hash modulo `shards`, in hex.
// A temporary file lives in the same shard directory as its final name, so committing it is a
// rename inside one directory: readers see the old file or the new one, never a partial one, and
// concurrent commits spread over `shards` directory locks instead of contending on one.
// Temporary names contain a backslash, which no key may contain, so the two can never collide and
// the start-up sweep can tell stale temporaries from stored files by name alone.
import { existsSync, mkdirSync, readFileSync, readdirSync, unlinkSync, writeFileSync } from "node:fs";
import { constants } from "node:os";
import { resolve } from "node:path";
import { modeOf, WOULD_BLOCK, type InlineOps, type IoEngine, type IoTarget } from "../engine/io-engine";
import { IoError, ioErrorFromErrno } from "../engine/io-error";
import { fsIsLocal, lockFileForProcess } from "../ffi/pool-binding";
import type { Logger } from "../log";

const LAYOUT_FILE = "fsgw-layout.json";
const LOCK_FILE = "fsgw.lock";
const TEMP_MARK = "\\";
const EIO = constants.errno.EIO;

/** A promise engine's failure as the number a callback-form target takes. */
function negErrnoOf(e: unknown): number {
  return e instanceof IoError ? -e.errno : -EIO;
}

export class StoreError extends Error {}

export interface ReadHandle {
  fd: number;
  size: number;
}

export class Store {
  readonly dataDir: string;
  /** Paths of the shard directories, built once: every request needs one. */
  private readonly shardDirs: string[];
  private readonly tempPrefix = `.fsgw-tmp${TEMP_MARK}${process.pid}.`;
  private tempSeq = 0;
  /**
   * The engine's inline operations, once init() has found the data directory on a local file
   * system: on a network file system the kernel's cached attributes may be stale, so every
   * operation goes through the engine there.
   */
  private inline: InlineOps | null = null;

  constructor(
    readonly engine: IoEngine,
    dataDir: string,
    readonly shards: number,
    readonly fsyncOnCommit: boolean,
  ) {
    this.dataDir = resolve(dataDir);
    const width = Math.max(2, (shards - 1).toString(16).length);
    this.shardDirs = Array.from({ length: shards }, (_, i) => `${this.dataDir}/${i.toString(16).padStart(width, "0")}`);
  }

  /**
   * Prepares the data directory before the server accepts anything: creates it and its shard
   * directories, checks that it was laid out with the same shard count, and removes temporary
   * files a crash left behind. Start-up only, so it uses synchronous fs directly.
   */
  init(log: Logger): void {
    mkdirSync(this.dataDir, { recursive: true, mode: 0o755 });
    // One server per data directory: a second one would sweep the first one's temporary files.
    const lock = lockFileForProcess(`${this.dataDir}/${LOCK_FILE}`);
    if (lock === -constants.errno.EWOULDBLOCK) {
      throw new StoreError(`${this.dataDir} is in use by another fsgw server (${LOCK_FILE} is locked); stop it or choose another dataDir`);
    }
    if (lock < 0) throw ioErrorFromErrno(lock, `lock ${this.dataDir}/${LOCK_FILE}`);
    const layoutPath = `${this.dataDir}/${LAYOUT_FILE}`;
    if (existsSync(layoutPath)) {
      let layout: { shards?: unknown; hash?: unknown };
      try {
        layout = JSON.parse(readFileSync(layoutPath, "utf8"));
      } catch (e) {
        throw new StoreError(`${layoutPath} is unreadable (${(e as Error).message}); fix or remove it`);
      }
      if (layout.shards !== this.shards || layout.hash !== "fnv1a32") {
        throw new StoreError(
          `${this.dataDir} was laid out with shards=${String(layout.shards)}; start with --shards ${String(layout.shards)} or use another dataDir (moving files between layouts is not supported)`,
        );
      }
    } else {
      writeFileSync(layoutPath, JSON.stringify({ shards: this.shards, hash: "fnv1a32" }) + "\n");
    }
    let swept = 0;
    for (let shard = 0; shard < this.shards; shard++) {
      const dir = this.shardDirs[shard]!;
      mkdirSync(dir, { recursive: true, mode: 0o755 });
      for (const name of readdirSync(dir)) {
        if (!name.includes(TEMP_MARK)) continue;
        try {
          unlinkSync(`${dir}/${name}`);
          swept++;
        } catch (e) {
          log.warn("sweep_failed", { path: `${dir}/${name}`, error: (e as Error).message });
        }
      }
    }
    if (this.engine.inline !== null) {
      const local = fsIsLocal(this.dataDir);
      this.inline = local === 1 ? this.engine.inline : null;
      if (local !== 1) log.info("inline_io_off", { dataDir: this.dataDir, reason: local === 0 ? "not a local file system: cached attributes may be stale" : `statfs failed: errno ${-local}` });
    }
    log.info("store_ready", { dataDir: this.dataDir, shards: this.shards, staleTempFilesRemoved: swept, inlineIo: this.inline !== null });
  }

  /** The final path of a key already validated by checkKey (its hash comes from there). */
  finalPath(key: string, hash: number): string {
    return `${this.shardDirs[hash % this.shards]}/${key}`;
  }

  /** A fresh temporary path in the key's shard directory. */
  tempPath(hash: number): string {
    return `${this.shardDirs[hash % this.shards]}/${this.tempPrefix}${++this.tempSeq}`;
  }

  /**
   * Inline: the key's size from the kernel's caches (st_mode in `lastMode`), -errno, or
   * WOULD_BLOCK (also when inline operations are off): then ask statTo().
   */
  statNow(key: string, hash: number): number {
    return this.inline === null ? WOULD_BLOCK : this.inline.statCached(this.finalPath(key, hash));
  }

  get lastMode(): number {
    return this.inline?.lastMode ?? 0;
  }

  /** Inline: reads the key whole into `into` when it fits and is cached; as readWhole, or WOULD_BLOCK. */
  readNow(key: string, hash: number, into: Uint8Array): number {
    return this.inline === null ? WOULD_BLOCK : this.inline.readCached(this.finalPath(key, hash), into);
  }

  // stat, remove and commit, in callback form: the engine's own where it has them (no promise,
  // failures as -errno), else its promises adapted.

  /** The key's size, and its st_mode as `aux`, or -errno. */
  statTo(key: string, hash: number, target: IoTarget): void {
    const path = this.finalPath(key, hash);
    const native = this.engine.callbacks;
    if (native !== null) return native.statTo(path, target);
    this.engine.stat(path).then(
      (st) => target.onIoDone(st.size, modeOf(st)),
      (e) => target.onIoDone(negErrnoOf(e), 0),
    );
  }

  /** 0, or -errno. */
  removeTo(key: string, hash: number, target: IoTarget): void {
    const path = this.finalPath(key, hash);
    const native = this.engine.callbacks;
    if (native !== null) return native.unlinkTo(path, target);
    this.engine.unlink(path).then(
      () => target.onIoDone(0, 0),
      (e) => target.onIoDone(negErrnoOf(e), 0),
    );
  }

  /** Stores a body already whole in memory in one engine call; the body's length, or -errno. */
  commitWholeTo(key: string, hash: number, data: Uint8Array, target: IoTarget): void {
    const tmp = this.tempPath(hash);
    const path = this.finalPath(key, hash);
    const native = this.engine.callbacks;
    if (native !== null) return native.commitFileTo(tmp, path, data, this.fsyncOnCommit, target);
    this.engine.commitFile(tmp, path, data, this.fsyncOnCommit).then(
      () => target.onIoDone(data.length, 0),
      (e) => target.onIoDone(negErrnoOf(e), 0),
    );
  }

  async openForRead(key: string, hash: number): Promise<ReadHandle> {
    const fd = await this.engine.open(this.finalPath(key, hash), "read");
    try {
      const st = await this.engine.fstat(fd);
      if (!st.isFile) throw ioErrorFromErrno(constants.errno.EISDIR, "open");
      return { fd, size: st.size };
    } catch (e) {
      await this.engine.close(fd).catch(() => {});
      throw e;
    }
  }
}
