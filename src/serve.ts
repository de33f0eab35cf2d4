// `fsgw serve`: load the config, start the event loops under their supervisor, listen, and stop
// cleanly on signals.
import { ConfigError, configHelp, loadConfig, loopCount, type Config } from "./config";
import { LoopGroup } from "./server/loop-group";
import { nativeLibraryProblem } from "./ffi/pool-binding";
import { BUILD_COMMAND } from "./ffi/build";
import { Logger } from "./log";
import { raiseOpenFiles } from "./platform";
import { AdminServer } from "./observe/admin";
import { ListenError } from "./server/listen";
import { SecurityError } from "./server/security";
import { unlinkSync, writeFileSync } from "node:fs";
import { StoreError } from "./storage/store";
import { ALLOCATOR_PURGE_DELAY_MS, ALLOCATOR_PURGE_ENV } from "./util/allocator";
import { hasTerminal, meantToOutlive, terminalGone, watchStarter } from "./util/starter";

export const serveUsage = `usage: fsgw serve [--config file.json] [--<field> value ...]

Starts the file gateway. Every field below can be set in the config file, by its FSGW_* environment
variable, or by its flag; flags win over the environment, which wins over the file.

Started in the foreground (npm start, npx fsgw serve, a terminal), it stops when the command that
started it ends or its terminal closes; --detached (or nohup, or a service manager) keeps it
serving, and SIGHUP then only reloads certificates and secrets. SIGINT or SIGTERM stop it: exchanges
in flight get shutdownGraceMs, and uploads still arriving after that are removed.

examples:
  fsgw serve                                  # 0.0.0.0:9999, files under ./data
  fsgw serve --port 7000 --data-dir /srv/fsgw
  FSGW_LOG_LEVEL=debug fsgw serve --config /etc/fsgw.json

fields:
${configHelp()}`;

/** How long past shutdownGraceMs (and the loops' own margin) a stop may take before the process exits anyway. */
const EXIT_MARGIN_MS = 10_000;

/**
 * Why this process must run its event loop on the main thread, or null: a debugger or profiler
 * attached to Bun (bun --inspect, --inspect-brk, --inspect-wait, --cpu-prof, or BUN_INSPECT from an
 * editor) sees only the main thread, so the exchanges run there, where its breakpoints and
 * samples reach them.
 */
export function inspectedBy(execArgv: readonly string[], env: Record<string, string | undefined>): string | null {
  const flag = execArgv.find((a) => /^--(inspect|inspect-brk|inspect-wait|cpu-prof)(=|$)/.test(a));
  if (flag !== undefined) return flag.split("=")[0]!;
  return (env.BUN_INSPECT ?? "") !== "" ? "BUN_INSPECT" : null;
}

export interface ServeHooks {
  /** The script each event loop's thread runs (a test entry wraps loop-worker.ts with its faults). */
  loopWorker?: URL;
}

/**
 * `fsgw serve`: every configuration takes this one path: config, log, the loops under their
 * supervisor, the admin endpoint, signals, the pid file. Returns only when the start fails; once
 * serving, the process exits on a signal (or when loops keep failing), always within
 * shutdownGraceMs and a margin.
 */
export async function serve(argv: string[], hooks: ServeHooks = {}): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(serveUsage);
    return 0;
  }
  let config;
  const warnings: string[] = [];
  try {
    config = loadConfig({ argv, env: process.env, warnings });
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    console.error(`fsgw: ${e.message}`);
    return 2;
  }
  const log = new Logger(config.logLevel);
  if (config.logFile !== "") {
    try {
      log.toFile(config.logFile, config.logLinesPerFile, config.logFilesKept);
    } catch (e) {
      console.error(`fsgw: cannot open logFile ${config.logFile}: ${(e as Error).message}`);
      return 1;
    }
  }
  for (const warning of warnings) log.warn("config_warning", { warning });
  checkOpenFileLimit(config, log);
  checkAllocator(log);
  // The C pool's library is not there or not loadable (not built, an ABI mismatch): said once, here.
  const libraryProblem = config.ioEngine === "cpool" ? nativeLibraryProblem() : null;
  if (libraryProblem !== null) {
    log.error("start_failed", { error: libraryProblem, advice: `the ${config.ioEngine} engine needs the C library, which npm install builds with gcc: install gcc and run \`${BUILD_COMMAND}\`, or start with --io-engine bun` });
    log.close();
    return 1;
  }
  const inspector = inspectedBy(process.execArgv, process.env);
  const loops = inspector !== null ? 1 : loopCount(config);
  if (inspector !== null) {
    log.info("inspector", { attached: inspector, loops: 1, configuredLoops: loopCount(config), effect: "one event loop, on the main thread, where breakpoints and profiles see the exchanges" });
  }
  const group = new LoopGroup(config, log, loops, { inline: inspector !== null, workerUrl: hooks.loopWorker });
  const profilerHeld = process.execArgv.some((a) => a.startsWith("--cpu-prof")) ? "bun --cpu-prof holds the profiler for the whole run (its profile is written when the server stops): /debug/profile is off meanwhile" : null;
  const admin = new AdminServer(group, log, config.adminToken, { connectionsMax: config.adminConnectionsMax, requestTimeoutMs: config.adminTimeoutMs }, profilerHeld);
  let exiting = false;
  const finish = (code: number) => {
    if (exiting) return;
    exiting = true;
    // Whatever the stop meets, the process ends: a stop that hangs or throws is cut at the margin.
    setTimeout(() => process.exit(code), config.shutdownGraceMs + EXIT_MARGIN_MS).unref();
    group
      .stop()
      .catch((e) => log.error("stop_failed", { error: String((e as Error)?.stack ?? e) }))
      .finally(() => {
        admin.stop();
        removePidFile(config.pidFile);
        log.close();
        process.exit(code);
      });
  };
  // A bug outside any exchange: the loop's (on this thread) or the supervisor's (see LoopGroup).
  process.on("uncaughtException", (error) => group.processError("uncaught_exception", error));
  process.on("unhandledRejection", (reason) => group.processError("unhandled_rejection", reason));
  // Signal handlers go in before the port opens: a SIGTERM that arrives the moment the server is
  // listening still shuts it down cleanly instead of killing it mid-start.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      log.info("shutdown", { signal, graceMs: config.shutdownGraceMs, loops });
      finish(0);
    });
  }
  // Read before the SIGHUP handler goes in: nohup's request shows as a SIGHUP ignored at start.
  const outlives = meantToOutlive(config.detached);
  const hadTerminal = hasTerminal();
  // SIGHUP: read the TLS certificate, key and client CA and the token secrets again (rotation
  // without a restart) in every loop. Unless it is the terminal going away (its window closed):
  // then a server started in the foreground ends with it, as any foreground command does.
  process.on("SIGHUP", () => {
    if (outlives === null && hadTerminal && terminalGone()) {
      log.info("shutdown", { signal: "SIGHUP", reason: "the terminal that started the server is gone (serve --detached keeps serving)", graceMs: config.shutdownGraceMs, loops });
      finish(0);
      return;
    }
    log.info("reload", { signal: "SIGHUP", loops });
    group.reload();
  });
  // The command that started the server (npm start, npx fsgw serve, a shell) ended: so does the
  // server, instead of holding the port as an orphan.
  if (outlives === null) {
    watchStarter(({ pid, command }) => {
      log.info("shutdown", { reason: "the command that started the server ended (serve --detached keeps serving)", starter: pid, command, graceMs: config.shutdownGraceMs, loops });
      finish(0);
    });
  } else if (config.detached || outlives !== "started by init") {
    log.info("detached", { reason: outlives, effect: "serves on when the command that started it ends; SIGHUP reloads" });
  }
  try {
    await group.start((reason) => {
      log.error("server_failed", { error: reason });
      finish(1);
    });
    if (config.adminPort !== 0) admin.start(config.adminHost, config.adminPort);
    if (config.pidFile !== "") writeFileSync(config.pidFile, `${process.pid}\n`);
  } catch (e) {
    const message = e instanceof StoreError || e instanceof ListenError || e instanceof SecurityError ? e.message : String((e as Error)?.message ?? e);
    log.error("start_failed", { error: message.replace(/^loop \d+: /, "") });
    await group.stop();
    admin.stop();
    log.close();
    return 1;
  }
  // Ready only once every listener is up (and the pid file written): scripts wait for this line.
  log.info("listening", { host: config.host, port: group.port, httpPort: group.httpPort, adminPort: admin.port, loops, engine: config.ioEngine, wire: config.wire, store: config.store, pid: process.pid });
  return new Promise<number>(() => {}); // runs until a signal stops it
}

/**
 * Asks for maxOpenFiles descriptors. Where the hard limit is lower the server still starts, with a
 * warning that says what it means: each connection holds a socket and, mid-exchange, a file.
 */
function checkOpenFileLimit(config: Config, log: Logger): void {
  const { effective, problem } = raiseOpenFiles(config.maxOpenFiles);
  if (problem !== null) {
    log.warn("open_file_limit", { wanted: config.maxOpenFiles, effective, error: problem });
    if (effective < 0) return;
  } else if (effective < config.maxOpenFiles) {
    log.warn("open_file_limit", { wanted: config.maxOpenFiles, effective, reason: "capped by the hard limit (ulimit -Hn)" });
  } else {
    log.info("open_file_limit", { effective });
  }
  // Each connection holds a socket, and mid-exchange a file too. Below connectionsMax sockets the
  // bound cannot be reached at all; between that and twice as many, busy moments answer some
  // exchanges "server busy: too many open files" instead of failing harder.
  if (effective < config.connectionsMax + 64) {
    log.warn("open_file_limit_low", {
      effective,
      connectionsMax: config.connectionsMax,
      advice: `lower connectionsMax below ${Math.max(1, effective - 64)} or raise the hard limit; past the limit connections and files fail`,
    });
  }
}

/**
 * Says so when Bun's allocator runs with its own purge delay (10 ms), as under a bare
 * `bun src/main.ts serve`: every small upload then costs more CPU (util/allocator.ts).
 */
function checkAllocator(log: Logger): void {
  const value = process.env[ALLOCATOR_PURGE_ENV];
  if (value !== undefined) return log.info("allocator", { [ALLOCATOR_PURGE_ENV]: value });
  log.info("allocator", {
    [ALLOCATOR_PURGE_ENV]: "unset (mimalloc's 10 ms)",
    advice: `npm start, bun start and bin/fsgw.js set ${ALLOCATOR_PURGE_ENV}=${ALLOCATOR_PURGE_DELAY_MS}: freed memory is kept 10 s instead of being faulted back in, ~10% less CPU per small upload`,
  });
}

/** Removes the pid file written at start (a clean stop); one that is already gone is fine. */
function removePidFile(path: string): void {
  if (path === "") return;
  try {
    unlinkSync(path);
  } catch {}
}
