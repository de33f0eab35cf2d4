// What the server needs from the operating system besides file I/O: the data directory's lock and
// the open-file limit. Through the C library (src/ffi/pool-binding.ts) when it loads; otherwise
// through plain node:fs, so that `--io-engine bun` or `sync` runs on a machine without gcc, with
// what it loses said in the log.
import { readFileSync, writeFileSync } from "node:fs";
import { constants } from "node:os";
import { lockFileForProcess, nativeLibraryProblem, raiseOpenFileLimit, socketCheck } from "./ffi/pool-binding";

export type LockResult = { ok: true; how: string } | { ok: false; error: string; inUse: boolean };

/**
 * Takes `path` as this process's lock for the rest of its life, and writes our pid into it.
 * With the C library: flock (released by the kernel when the process dies, however it dies).
 * Without: the pid already in the file is checked for a living process; a stale one is taken
 * over. That fallback cannot close the race of two servers starting in the same instant.
 */
export function lockForProcess(path: string): LockResult {
  const problem = nativeLibraryProblem();
  if (problem === null) {
    const rc = lockFileForProcess(path);
    if (rc === -constants.errno.EWOULDBLOCK) return { ok: false, inUse: true, error: `locked by pid ${readPid(path) ?? "unknown"}` };
    if (rc < 0) return { ok: false, inUse: false, error: `errno ${-rc}` };
    writeFileSync(path, `${process.pid}\n`);
    return { ok: true, how: "flock" };
  }
  const holder = readPid(path);
  if (holder !== null && holder !== process.pid && processAlive(holder)) {
    return { ok: false, inUse: true, error: `pid ${holder} holds it` };
  }
  writeFileSync(path, `${process.pid}\n`);
  return { ok: true, how: `pid file (no flock: ${problem})` };
}

function readPid(path: string): number | null {
  try {
    const pid = Number.parseInt(readFileSync(path, "utf8"), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
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
