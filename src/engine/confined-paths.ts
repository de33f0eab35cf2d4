// Confinement for the engines without the C library (bun, sync): node:fs has no openat2, so a path
// beneath a confined directory is handed to node:fs as "/proc/self/fd/<D>/<name>", where D is a
// descriptor of the file's directory held open by this table. The kernel follows that magic link
// to exactly the directory D names, walking no path; each directory was opened with O_NOFOLLOW
// component by component from the confined one, and the last component is opened with O_NOFOLLOW
// (stat: lstat): a symbolic link anywhere beneath the confined directory is refused with ELOOP.
//
// A directory is opened on its first use and held for the life of the process (the store's are its
// shard directories: at most `shards`, a bound the store sets with DIRECTORIES_MAX). A directory
// replaced by a link after that first use is not followed either: the held one is used.
// (The C pool instead resolves every path afresh with openat2: ffi/fsgw_pool.h, "Confinement".)
import fs from "node:fs";
import { constants } from "node:os";
import { ioErrorFromErrno } from "./io-error";

const ELOOP = constants.errno.ELOOP;
/** The most directories held open for all confined directories together (4096 shards and some). */
export const DIRECTORIES_MAX = 8192;
/** Files created outside every confined directory. */
const UNCONFINED_FILE_MODE = 0o644;

interface Confined {
  /** The directory and '/'. */
  prefix: string;
  fileMode: number;
}

export class ConfinedPaths {
  private readonly dirs: Confined[] = [];
  /** Held directory descriptors, by the directory's path. */
  private readonly held = new Map<string, number>();

  /** 0, or -errno: -ENOENT when /proc is not mounted (nothing could be promised without it). */
  confine(dir: string, fileMode: number): number {
    if (!fs.existsSync("/proc/self/fd")) return -constants.errno.ENOENT;
    const prefix = dir.endsWith("/") ? dir : dir + "/";
    if (!this.dirs.some((d) => d.prefix === prefix)) this.dirs.push({ prefix, fileMode });
    return 0;
  }

  private confinedOf(path: string): Confined | null {
    let best: Confined | null = null;
    for (const d of this.dirs) if (path.startsWith(d.prefix) && path.length > d.prefix.length && (best === null || d.prefix.length > best.prefix.length)) best = d;
    return best;
  }

  /** Mode for a file created at `path`. */
  fileModeOf(path: string): number {
    return this.confinedOf(path)?.fileMode ?? UNCONFINED_FILE_MODE;
  }

  /**
   * The path to hand node:fs for `path`, and whether it is confined (then the caller must not
   * follow its last component: O_NOFOLLOW, lstat). Throws an IoError ELOOP when a directory on the
   * way is a link.
   */
  map(path: string): string {
    const c = this.confinedOf(path);
    if (c === null) return path;
    const rel = path.slice(c.prefix.length);
    const slash = rel.lastIndexOf("/");
    const dirPath = slash < 0 ? c.prefix.slice(0, -1) : c.prefix + rel.slice(0, slash);
    return `/proc/self/fd/${this.dirFd(c, dirPath)}/${rel.slice(slash + 1)}`;
  }

  isConfined(path: string): boolean {
    return this.confinedOf(path) !== null;
  }

  /** The held descriptor of `dirPath` (the confined directory or one beneath it), opened component by component without following links. */
  private dirFd(c: Confined, dirPath: string): number {
    const have = this.held.get(dirPath);
    if (have !== undefined) return have;
    const root = c.prefix.slice(0, -1);
    let fd: number;
    if (dirPath === root) {
      fd = fs.openSync(root, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    } else {
      const parent = dirPath.slice(0, dirPath.lastIndexOf("/"));
      const parentFd = this.dirFd(c, parent);
      try {
        fd = fs.openSync(`/proc/self/fd/${parentFd}/${dirPath.slice(parent.length + 1)}`, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
      } catch (e) {
        // A link where a directory should be: O_NOFOLLOW | O_DIRECTORY says ELOOP or ENOTDIR.
        const code = (e as NodeJS.ErrnoException).code;
        if (code === "ELOOP" || code === "ENOTDIR") throw ioErrorFromErrno(-ELOOP, "open");
        throw e;
      }
    }
    if (this.held.size >= DIRECTORIES_MAX) {
      fs.closeSync(fd);
      throw ioErrorFromErrno(-constants.errno.EMFILE, "open");
    }
    this.held.set(dirPath, fd);
    return fd;
  }
}
