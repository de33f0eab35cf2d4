// Engine "bun": Bun's own asynchronous node:fs, which runs each call on Bun's internal thread pool.
// It is the baseline every claim about the C pool is measured against.
import fs from "node:fs";
import { BunHasher, bunDigestOf, callbacksFromPromises, commitFileFromPrimitives, type CallbackOps, readWholeFromPrimitives, type Hasher, type EngineStats, type FileStat, type IoEngine, type OpenMode } from "./io-engine";
import { constants } from "node:os";
import { ConfinedPaths } from "./confined-paths";
import { ioErrorFromErrno, ioErrorFromNode } from "./io-error";

const FLAGS: Record<OpenMode, number> = {
  create: fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL,
  write: fs.constants.O_RDWR,
  read: fs.constants.O_RDONLY,
  directory: fs.constants.O_RDONLY | fs.constants.O_DIRECTORY,
};
const ELOOP = constants.errno.ELOOP;

function statOf(s: fs.Stats): FileStat {
  return { size: s.size, isFile: s.isFile(), isDir: s.isDirectory() };
}

let inFlight = 0;

/** Adapts a node-style callback to a promise that rejects with an IoError. */
function call<T>(op: string, start: (cb: (err: NodeJS.ErrnoException | null, value: T) => void) => void): Promise<T> {
  inFlight++;
  return new Promise<T>((resolve, reject) => {
    start((err, value) => {
      inFlight--;
      if (err) reject(ioErrorFromNode(err, op));
      else resolve(value);
    });
  });
}

export class BunEngine implements IoEngine {
  readonly name = "bun";
  /** No inline operations: only the C library has the non-blocking system calls they need. */
  readonly inline = null;
  /** The one-call operations in callback form, adapted from the promise forms. */
  readonly callbacks: CallbackOps = callbacksFromPromises(this);
  /** No sendfile without the C library. */
  readonly zeroCopy = null;
  private fsyncs = 0;
  private readonly confined = new ConfinedPaths();

  confine(dir: string, fileMode: number): number {
    return this.confined.confine(dir, fileMode);
  }

  /** A confined path's node:fs form (see ConfinedPaths), or the rejection that says why there is none. */
  private mapped(path: string, op: string): string | Promise<never> {
    try {
      return this.confined.map(path);
    } catch (e) {
      return Promise.reject(ioErrorFromNode(e, op));
    }
  }

  open(path: string, mode: OpenMode): Promise<number> {
    const at = this.mapped(path, "open");
    if (typeof at !== "string") return at;
    const nofollow = this.confined.isConfined(path) ? fs.constants.O_NOFOLLOW : 0;
    return call("open", (cb) => fs.open(at, FLAGS[mode] | nofollow, this.confined.fileModeOf(path), cb));
  }

  async write(fd: number, data: Uint8Array, position: number): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const n = await call<number>("write", (cb) => fs.write(fd, data, done, data.length - done, position + done, cb));
      done += n;
    }
  }

  read(fd: number, into: Uint8Array, position: number): Promise<number> {
    return call("read", (cb) => fs.read(fd, into, 0, into.length, position, cb));
  }

  async fstat(fd: number): Promise<FileStat> {
    return statOf(await call<fs.Stats>("fstat", (cb) => fs.fstat(fd, cb)));
  }

  async stat(path: string): Promise<FileStat> {
    if (!this.confined.isConfined(path)) return statOf(await call<fs.Stats>("stat", (cb) => fs.stat(path, cb)));
    const at = await this.mapped(path, "stat");
    const st = await call<fs.Stats>("stat", (cb) => fs.lstat(at, cb));
    if (st.isSymbolicLink()) throw ioErrorFromErrno(-ELOOP, "stat");
    return statOf(st);
  }

  close(fd: number): Promise<void> {
    return call("close", (cb) => fs.close(fd, (err) => cb(err, undefined)));
  }

  async fsync(fd: number): Promise<void> {
    await call("fsync", (cb) => fs.fsync(fd, (err) => cb(err, undefined)));
    this.fsyncs++;
  }

  rename(from: string, to: string): Promise<void> {
    const a = this.mapped(from, "rename");
    const b = this.mapped(to, "rename");
    if (typeof a !== "string") return a;
    if (typeof b !== "string") return b;
    return call("rename", (cb) => fs.rename(a, b, (err) => cb(err, undefined)));
  }

  unlink(path: string): Promise<void> {
    const at = this.mapped(path, "unlink");
    if (typeof at !== "string") return at;
    return call("unlink", (cb) => fs.unlink(at, (err) => cb(err, undefined)));
  }

  commitFile(tmpPath: string, finalPath: string, data: Uint8Array, fsync: boolean): Promise<void> {
    return commitFileFromPrimitives(this, tmpPath, finalPath, data, fsync);
  }

  readWhole(path: string, into: Uint8Array): Promise<number> {
    return readWholeFromPrimitives(this, path, into);
  }

  /** Digests are computed (Bun's SHA-256) and checked, but not recorded: node:fs has no xattrs. */
  newHasher(): Hasher {
    return new BunHasher();
  }
  digestOf(bytes: Uint8Array, out: Uint8Array): void {
    bunDigestOf(bytes, out);
  }

  stats(): EngineStats {
    return { name: this.name, operationsInFlight: inFlight, fsyncs: this.fsyncs };
  }

  async shutdown(): Promise<void> {}
}
