// The command that started this process, and whether it is still there.
//
// A server started in the foreground (`npm start`, `npx fsgw serve`, `fsgw serve` in a terminal)
// must end when that command ends or its terminal goes, or it is an orphan holding the port. The
// kernel's parent-death signal does not reach far enough: `npx fsgw serve` is npm → sh → node
// (bin/fsgw.js) → bun, and killing npm leaves sh waiting, so our parent never changes. Instead the
// chain of ancestors (from /proc, as it was at start) is checked once a second: when any of them
// has ended, its child has a new parent, and the chain no longer reads the same.
//
// Not for a process meant to outlive its starter: one whose SIGHUP was ignored at start (nohup,
// a daemonizing wrapper), one started by init or a service manager (parent pid 1: systemd,
// docker), or a server asked to with `serve --detached`.
import { openSync, closeSync, readFileSync } from "node:fs";

/** How often the ancestors are checked: a stopped command's server ends within this and its grace. */
export const STARTER_CHECK_MS = 1000;
/** Ancestors followed at most (a chain deeper than this is watched up to here). */
const ANCESTORS_MAX = 32;

interface ProcStat {
  ppid: number;
  /** The controlling terminal's device number; 0 for none. */
  ttyNr: number;
}

/** /proc/<pid>/stat's ppid and tty, or null when the process is gone (or there is no /proc). */
function procStat(pid: number | "self"): ProcStat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // "pid (comm) state ppid pgrp session tty_nr ...": comm may hold spaces and parentheses.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return { ppid: Number(fields[1]), ttyNr: Number(fields[4]) };
}

/** A process's command line (its first 80 characters), or "" when it cannot be read. */
function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim().slice(0, 80);
  } catch {
    return "";
  }
}

/** Our ancestors, nearest first, up to (not including) init. */
export function ancestors(): number[] {
  const chain: number[] = [];
  let pid = process.ppid;
  while (pid > 1 && chain.length < ANCESTORS_MAX) {
    chain.push(pid);
    const st = procStat(pid);
    if (st === null) break;
    pid = st.ppid;
  }
  return chain;
}

/** Whether the chain read at start still stands: each ancestor is still the parent of the one before. */
function chainStands(chain: number[]): boolean {
  if (chain.length === 0) return true;
  if (process.ppid !== chain[0]) return false;
  for (let i = 1; i < chain.length; i++) {
    if (procStat(chain[i - 1]!)?.ppid !== chain[i]) return false;
  }
  return true;
}

/**
 * Why this process must not end with its starter, or null. Read before any SIGHUP handler is
 * installed: a SIGHUP ignored at start is nohup's (or a daemonizing wrapper's) request.
 */
export function meantToOutlive(detachedFlag: boolean): string | null {
  if (detachedFlag) return "detached";
  try {
    const ignored = /^SigIgn:\s*([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1];
    if (ignored !== undefined && (BigInt(`0x${ignored}`) & 1n) === 1n) return "SIGHUP ignored at start (nohup)";
  } catch {}
  if (process.ppid <= 1) return "started by init";
  return null;
}

/** Whether this process had a controlling terminal (at the time of the call). */
export function hasTerminal(): boolean {
  return (procStat("self")?.ttyNr ?? 0) !== 0;
}

/**
 * Whether the controlling terminal this process had is gone (hung up: its window closed, its ssh
 * session ended). A hung-up terminal cannot be opened any more; a live one can.
 */
export function terminalGone(): boolean {
  try {
    closeSync(openSync("/dev/tty", "r"));
    return false;
  } catch {
    return true;
  }
}

/**
 * Calls `onGone` once, with the ancestor that ended, when the chain of ancestors read now no
 * longer stands. Returns a function that stops the watch. The timer does not keep the process up.
 */
export function watchStarter(onGone: (starter: { pid: number; command: string }) => void, everyMs = STARTER_CHECK_MS): () => void {
  const chain = ancestors();
  if (chain.length === 0) return () => {};
  // Read now: once a process has ended, its command line is gone with it.
  const commands = new Map(chain.map((pid) => [pid, commandOf(pid)]));
  const timer = setInterval(() => {
    if (chainStands(chain)) return;
    clearInterval(timer);
    // The first link that broke: the ancestor whose child lost it.
    let gone = chain[0]!;
    if (process.ppid === chain[0]) {
      for (let i = 1; i < chain.length; i++) {
        if (procStat(chain[i - 1]!)?.ppid !== chain[i]) {
          gone = chain[i]!;
          break;
        }
      }
    }
    onGone({ pid: gone, command: commands.get(gone) ?? "" });
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
