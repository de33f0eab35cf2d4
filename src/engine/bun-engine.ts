// Engine "bun": Bun's own asynchronous node:fs, which runs each call on Bun's internal thread pool.
// It is the baseline every claim about the C pool is measured against.
import fs from "node:fs";
import { BunHasher, commitFileFromPrimitives, readWholeFromPrimitives, type Hasher, type EngineStats, type FileStat, type IoEngine, type OpenMode } from "./io-engine";
import { ioErrorFromNode } from "./io-error";

const CREATE_FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL;
const READ_FLAGS = fs.constants.O_RDONLY;

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
  /** Promises only: the store adapts them where a callback form is wanted. */
  readonly callbacks = null;
  /** No sendfile without the C library. */
  readonly zeroCopy = null;
  private fsyncs = 0;

  open(path: string, mode: OpenMode): Promise<number> {
    return call("open", (cb) => fs.open(path, mode === "create" ? CREATE_FLAGS : mode === "write" ? fs.constants.O_RDWR : READ_FLAGS, 0o644, cb));
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
    return statOf(await call<fs.Stats>("stat", (cb) => fs.stat(path, cb)));
  }

  close(fd: number): Promise<void> {
    return call("close", (cb) => fs.close(fd, (err) => cb(err, undefined)));
  }

  async fsync(fd: number): Promise<void> {
    await call("fsync", (cb) => fs.fsync(fd, (err) => cb(err, undefined)));
    this.fsyncs++;
  }

  rename(from: string, to: string): Promise<void> {
    return call("rename", (cb) => fs.rename(from, to, (err) => cb(err, undefined)));
  }

  unlink(path: string): Promise<void> {
    return call("unlink", (cb) => fs.unlink(path, (err) => cb(err, undefined)));
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

  stats(): EngineStats {
    return { name: this.name, operationsInFlight: inFlight, fsyncs: this.fsyncs };
  }

  async shutdown(): Promise<void> {}
}
