// Engine "sync": every operation is a blocking system call on the JS thread (node:fs *Sync), with
// the result handed back as a settled promise. No pool at all: the baseline that shows what the
// pools buy (and what blocking the event loop costs under concurrency).
import fs from "node:fs";
import { BunHasher, bunDigestOf, callbacksFromPromises, commitFileFromPrimitives, type CallbackOps, readWholeFromPrimitives, type Hasher, type EngineStats, type FileStat, type IoEngine, type OpenMode } from "./io-engine";
import { constants } from "node:os";
import { ConfinedPaths } from "./confined-paths";
import { ioErrorFromErrno, ioErrorFromNode } from "./io-error";

const CREATE_FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL;
const FLAGS: Record<OpenMode, number> = {
  create: CREATE_FLAGS,
  write: fs.constants.O_RDWR,
  read: fs.constants.O_RDONLY,
  directory: fs.constants.O_RDONLY | fs.constants.O_DIRECTORY,
};
const ELOOP = constants.errno.ELOOP;

function attempt<T>(op: string, fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (e) {
    return Promise.reject(ioErrorFromNode(e, op));
  }
}

function statOf(s: fs.Stats): FileStat {
  return { size: s.size, isFile: s.isFile(), isDir: s.isDirectory() };
}

function writeAll(fd: number, data: Uint8Array, position: number): void {
  let done = 0;
  while (done < data.length) done += fs.writeSync(fd, data, done, data.length - done, position + done);
}

export class SyncEngine implements IoEngine {
  readonly name = "sync";
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

  open(path: string, mode: OpenMode): Promise<number> {
    return attempt("open", () => {
      const nofollow = this.confined.isConfined(path) ? fs.constants.O_NOFOLLOW : 0;
      return fs.openSync(this.confined.map(path), FLAGS[mode] | nofollow, this.confined.fileModeOf(path));
    });
  }
  write(fd: number, data: Uint8Array, position: number): Promise<void> {
    return attempt("write", () => writeAll(fd, data, position));
  }
  read(fd: number, into: Uint8Array, position: number): Promise<number> {
    return attempt("read", () => fs.readSync(fd, into, 0, into.length, position));
  }
  fstat(fd: number): Promise<FileStat> {
    return attempt("fstat", () => statOf(fs.fstatSync(fd)));
  }
  stat(path: string): Promise<FileStat> {
    return attempt("stat", () => {
      if (!this.confined.isConfined(path)) return statOf(fs.statSync(path));
      const st = fs.lstatSync(this.confined.map(path));
      if (st.isSymbolicLink()) throw ioErrorFromErrno(-ELOOP, "stat");
      return statOf(st);
    });
  }
  close(fd: number): Promise<void> {
    return attempt("close", () => fs.closeSync(fd));
  }
  fsync(fd: number): Promise<void> {
    return attempt("fsync", () => {
      fs.fsyncSync(fd);
      this.fsyncs++;
    });
  }
  rename(from: string, to: string): Promise<void> {
    return attempt("rename", () => fs.renameSync(this.confined.map(from), this.confined.map(to)));
  }
  unlink(path: string): Promise<void> {
    return attempt("unlink", () => fs.unlinkSync(this.confined.map(path)));
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
    return { name: this.name, operationsInFlight: 0, fsyncs: this.fsyncs }; // every operation completes before it returns
  }

  async shutdown(): Promise<void> {}
}
