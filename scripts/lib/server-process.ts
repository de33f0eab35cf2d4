// Starts a real fsgw server as a child process (`bun src/main.ts serve`) on 127.0.0.1 with an
// ephemeral port and a fresh data directory, exactly as a user would run it. Used by the tests and
// by the benchmark scripts.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { ALLOCATOR_PURGE_ENV, withAllocatorDefaults } from "../../src/util/allocator";

const root = resolve(import.meta.dir, "../..");

export interface TestServer {
  port: number;
  pid: number;
  dataDir: string;
  /** Every line the server has written to stdout and stderr so far. */
  lines: string[];
  /**
   * The first line that contains `text` (or matches it), once the server has written it: an event
   * logged by an event loop's thread reaches the log a moment after the event itself. Rejects
   * after `ms`.
   */
  line(text: string | RegExp, ms?: number): Promise<string>;
  /** Sends SIGTERM and waits for the exit code. */
  stop(): Promise<number>;
  proc: Subprocess;
}

/** How long a stop may take before the server's last lines are printed (stop()). */
const SLOW_STOP_MS = 4000;

/** How long a server may take to listen (a benchmark of start-ups with millions of keys sets it higher). */
let startTimeoutMs = 15_000;
export function setStartTimeout(ms: number): void {
  startTimeoutMs = ms;
}

const tempDirs: string[] = [];
let cleanupRegistered = false;

/**
 * A fresh directory under the system temp dir, removed when this process exits, or by
 * removeTempDirs() (tests upload gigabytes; left behind, repeated runs fill the disk).
 */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `fsgw-${prefix}-`));
  tempDirs.push(dir);
  if (!cleanupRegistered) {
    cleanupRegistered = true;
    process.on("exit", removeTempDirs);
  }
  return dir;
}

/**
 * Removes every directory tempDir() made. `bun test` does not run process exit handlers, so the
 * suite calls this after each file (test/helpers/cleanup.ts, preloaded by bunfig.toml).
 */
export function removeTempDirs(): void {
  for (const d of tempDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

/**
 * Field flags are passed as `{ idleTimeoutMs: 500 }` -> `--idle-timeout-ms 500`. `wrapper` runs the
 * server through a command that execs it (e.g. `prlimit --nofile=256:20000 --`), so the pid stays.
 */
export async function startServer(
  fields: Record<string, string | number | boolean> = {},
  env: Record<string, string> = {},
  wrapper: string[] = [],
  /** Another checkout of fsgw to run instead of this one (benchmarks compare before and after). */
  projectRoot = root,
  /**
   * The script that runs `serve` (test/entry/serve-with-faults.ts: a server whose loops can fail
   * on demand), and flags for Bun itself (--inspect, --cpu-prof).
   */
  entry: { script: string; serveArg: boolean; bunArgs?: string[] } = { script: "src/main.ts", serveArg: true },
): Promise<TestServer> {
  const dataDir = (fields.dataDir as string | undefined) ?? join(tempDir("data"), "d");
  const host = (fields.host as string | undefined) ?? "127.0.0.1";
  // The admin endpoint is off unless a test asks for it (its default port would collide).
  // The HTTP front door too (its default port would collide), unless a test gives it one.
  const args = [...(entry.serveArg ? ["serve"] : []), "--host", host, "--port", "0", "--data-dir", dataDir, "--admin-port", String(fields.adminPort ?? 0), "--http-port", String(fields.httpPort ?? 0)];
  for (const [k, v] of Object.entries(fields)) {
    if (k === "dataDir" || k === "host" || k === "adminPort" || k === "httpPort") continue;
    args.push("--" + k.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase()), String(v));
  }
  // The checkout's own pinned Bun when it has one (a copy made for another user must not point back
  // into a directory that user cannot enter); else the Bun running this.
  const ownBun = join(projectRoot, "node_modules/bun/bin/bun.exe");
  const bun = projectRoot !== root && existsSync(ownBun) ? ownBun : process.execPath;
  // As `npm start` runs it, its allocator setting included; a benchmark measures mimalloc's own
  // default by passing the variable as "".
  const childEnv = withAllocatorDefaults({ ...process.env, ...env });
  if (childEnv[ALLOCATOR_PURGE_ENV] === "") delete childEnv[ALLOCATOR_PURGE_ENV];
  const proc = Bun.spawn([...wrapper, bun, ...(entry.bunArgs ?? []), join(projectRoot, entry.script), ...args], {
    cwd: projectRoot,
    stdout: "pipe",
    stderr: "pipe",
    env: childEnv,
  });
  const lines: string[] = [];
  let onLine: ((line: string) => void) | null = null;
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of stream) {
      pending += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        lines.push(line);
        onLine?.(line);
      }
    }
  };
  void pump(proc.stdout as ReadableStream<Uint8Array>);
  void pump(proc.stderr as ReadableStream<Uint8Array>);

  const port = await new Promise<number>((resolvePort, reject) => {
    // A server that never says it listens is killed, not left running behind the failure.
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`server did not start:\n${lines.join("\n")}`));
    }, startTimeoutMs);
    // With the admin endpoint on, the server is ready once that listens too.
    let port = 0;
    let adminReady = !fields.adminPort;
    const check = (line: string) => {
      const m = /event=listening .*port=(\d+)/.exec(line);
      if (m) port = Number(m[1]);
      if (line.includes("event=admin_listening")) adminReady = true;
      if (port !== 0 && adminReady) {
        clearTimeout(timer);
        resolvePort(port);
      }
    };
    lines.forEach(check);
    onLine = check;
    void proc.exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${lines.join("\n")}`));
    });
  });
  return {
    port,
    pid: proc.pid,
    dataDir,
    lines,
    async line(text: string | RegExp, ms = 5000): Promise<string> {
      const matches = (l: string) => (typeof text === "string" ? l.includes(text) : text.test(l));
      await eventually(() => lines.some(matches), ms, `a log line with ${String(text)}`);
      return lines.find(matches)!;
    },
    proc,
    async stop() {
      proc.kill("SIGTERM");
      // A stop that nears a test hook's 5 s says what the server was still doing (an exchange in
      // flight waits out shutdownGraceMs): its last lines, so that the hook's timeout is not all
      // a run shows.
      const slow = setTimeout(() => console.error(`fsgw server ${proc.pid} still stopping after ${SLOW_STOP_MS} ms; its last lines:\n${lines.slice(-20).join("\n")}`), SLOW_STOP_MS);
      try {
        return await proc.exited;
      } finally {
        clearTimeout(slow);
      }
    },
  };
}

/** The test entry (test/entry/serve-with-faults.ts): a server with the faults its environment asks for. */
export const WITH_FAULTS = { script: "test/entry/serve-with-faults.ts", serveArg: false };

/** Waits until `predicate` holds, checking every 10 ms, or fails after `ms`. */
export async function eventually(predicate: () => boolean, ms = 5000, what = "condition"): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}

/** Waits until the asynchronous `predicate` holds, checking every 20 ms, or fails after `ms`. */
export async function eventuallyAsync(predicate: () => Promise<boolean>, ms = 5000, what = "condition"): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

/** A TCP port that was free a moment ago (for endpoints that take 0 to mean "off"). */
export function freePort(): number {
  // Below the kernel's ephemeral range: a port the kernel hands out itself (port 0) may be given
  // again, between this probe and the server's bind, as the local port of some client's outgoing
  // connection (tests run side by side), and the server then finds it in use. Random, so that
  // test files picking at once rarely pick alike; checked free by a bind.
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = PORT_LOW + Math.floor(Math.random() * (ephemeralLow() - PORT_LOW));
    try {
      Bun.listen({ hostname: "127.0.0.1", port, socket: { data() {} } }).stop(true);
      return port;
    } catch {} // taken: another
  }
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}
/** The lowest port freePort picks. */
const PORT_LOW = 10_000;
/** The first port of the kernel's ephemeral range (32768 when it cannot be read). */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > PORT_LOW + 1000 ? low : 32_768;
  } catch {
    return 32_768;
  }
}
