// What the server needs from the operating system besides file I/O: the data directory's lock and
// the open-file limit. Through the C library (src/ffi/pool-binding.ts) when it loads; otherwise
// through plain node:fs, so that `--io-engine bun` or `sync` runs on a machine without gcc, with
// what it loses said in the log.
import { closeSync, constants as fsConstants, ftruncateSync, openSync, readFileSync, writeSync } from "node:fs";
import { constants } from "node:os";
import { lockFileForProcess, nativeLibraryProblem, raiseOpenFileLimit, socketCheck } from "./ffi/pool-binding";

export type LockResult = { ok: true; how: string; release(): void } | { ok: false; error: string; inUse: boolean };

/**
 * Takes `path` as this process's lock for the rest of its life, and writes our pid into it.
 * With the C library: flock (released by the kernel when the process dies, however it dies).
 * Without: the pid already in the file is checked for a living process; a stale one is taken
 * over. That fallback cannot close the race of two servers starting in the same instant.
 */
export function lockForProcess(path: string, fileMode: number): LockResult {
  const problem = nativeLibraryProblem();
  if (problem === null) {
    const fd = lockFileForProcess(path);
    if (fd === -constants.errno.EWOULDBLOCK) return { ok: false, inUse: true, error: `locked by pid ${readPid(path) ?? "unknown"}` };
    if (fd === -constants.errno.ELOOP) return { ok: false, inUse: false, error: "it is a symbolic link (fsgw never follows links in its data directory): remove it" };
    if (fd < 0) return { ok: false, inUse: false, error: `errno ${-fd}` };
    // Through the locked descriptor: the name might be a link planted since it was opened.
    writePid(fd);
    return { ok: true, how: "flock", release: () => closeSync(fd) };
  }
  const holder = readPid(path);
  if (holder !== null && holder !== process.pid && processAlive(holder)) {
    return { ok: false, inUse: true, error: `pid ${holder} holds it` };
  }
  let fd: number;
  try {
    fd = openSync(path, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_NOFOLLOW, fileMode);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return { ok: false, inUse: false, error: code === "ELOOP" ? "it is a symbolic link (fsgw never follows links in its data directory): remove it" : String((e as Error).message) };
  }
  writePid(fd);
  closeSync(fd);
  return { ok: true, how: `pid file (no flock: ${problem})`, release: () => {} };
}

function writePid(fd: number): void {
  ftruncateSync(fd, 0);
  writeSync(fd, `${process.pid}\n`, 0);
}

/** The pid in a lock file, read without following a link. */
function readPid(path: string): number | null {
  try {
    const fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
    try {
      const pid = Number.parseInt(readFileSync(fd, "utf8"), 10);
      return Number.isInteger(pid) && pid > 0 ? pid : null;
    } finally {
      closeSync(fd);
    }
  } catch {
    return null;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"; // alive, someone else's
  }
}

export interface OpenFileLimit {
  /** The soft limit in effect now (-1: unknown). */
  effective: number;
  /** Why it could not be raised, when it could not be asked for at all. */
  problem: string | null;
}

/** Raises the soft RLIMIT_NOFILE toward `want` (capped by the hard limit). */
export function raiseOpenFiles(want: number): OpenFileLimit {
  const problem = nativeLibraryProblem();
  if (problem === null) {
    const effective = raiseOpenFileLimit(want);
    return effective < 0 ? { effective: -1, problem: `getrlimit/setrlimit failed: errno ${-effective}` } : { effective, problem: null };
  }
  return { effective: softOpenFileLimit(), problem: `cannot raise without the C library (${problem})` };
}

function softOpenFileLimit(): number {
  try {
    const m = /Max open files\s+(\d+)/.exec(readFileSync("/proc/self/limits", "utf8"));
    return m ? Number(m[1]) : -1;
  } catch {
    return -1;
  }
}

/**
 * 0 when `fd` is a TCP socket with these local and peer ports: an independent check that a
 * descriptor the runtime reports (Bun's `socket.fd`) is this connection's, before bytes are sent
 * to it behind the runtime's back. -errno otherwise (-ENOSYS: no C library to check with).
 */
export function checkSocket(fd: number, localPort: number, peerPort: number): number {
  if (nativeLibraryProblem() !== null) return -constants.errno.ENOSYS;
  return socketCheck(fd, localPort, peerPort);
}
