// `fsgw serve`: load the config, open the engine and the store, listen, and stop cleanly on signals.
import { ConfigError, configHelp, loadConfig, loopCount, type Config } from "./config";
import { LoopGroup } from "./server/loop-group";
import { CPoolEngine, PoolStat } from "./engine/cpool-engine";
import { nativeLibraryProblem } from "./ffi/pool-binding";
import { BUILD_COMMAND } from "./ffi/build";
import { createEngine } from "./engine/create-engine";
import { Logger } from "./log";
import { raiseOpenFiles } from "./platform";
import { AdminServer } from "./observe/admin";
import { ListenError } from "./server/listen";
import { SecurityError } from "./server/security";
import { Server } from "./server/server";
import { unlinkSync, writeFileSync } from "node:fs";
import { StoreError } from "./storage/store";

export const serveUsage = `usage: fsgw serve [--config file.json] [--<field> value ...]

Starts the file gateway. Every field below can be set in the config file, by its FSGW_* environment
variable, or by its flag; flags win over the environment, which wins over the file.

examples:
  fsgw serve                                  # 0.0.0.0:9999, files under ./data
  fsgw serve --port 7000 --data-dir /srv/fsgw
  FSGW_LOG_LEVEL=debug fsgw serve --config /etc/fsgw.json

fields:
${configHelp()}`;

export async function serve(argv: string[]): Promise<number> {
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
  const loops = loopCount(config);
  const noLibrary = () => {
    log.error("start_failed", { error: libraryProblem, advice: `the ${config.ioEngine} engine needs the C library, which npm install builds with gcc: install gcc and run \`${BUILD_COMMAND}\`, or start with --io-engine bun` });
    log.close();
    return 1;
  };
  // The C pool's library did not build or load (no gcc, a compiler error, an ABI mismatch): said
  // once, here, before any loop starts.
  let libraryProblem = config.ioEngine === "cpool" ? nativeLibraryProblem() : null;
  if (libraryProblem !== null) return noLibrary();
  if (loops > 1) return serveLoops(config, log, loops);
  let engine;
  try {
    engine = createEngine(config);
  } catch (e) {
    libraryProblem = String((e as Error)?.message ?? e).split("\n")[0]!;
    return noLibrary();
  }
  if (engine instanceof CPoolEngine) reportPool(engine, config, log);
  const server = new Server({ config, engine, log });
  const admin = new AdminServer(server, log, config.adminToken, { connectionsMax: config.adminConnectionsMax, requestTimeoutMs: config.adminTimeoutMs });
  // Signal handlers go in before the port opens: a SIGTERM that arrives the moment the server is
  // listening still shuts it down cleanly instead of killing it mid-start.
  const stop = (signal: string) => {
    log.info("shutdown", { signal, graceMs: config.shutdownGraceMs });
    // /healthz answers 503 while connections drain; the admin endpoint goes last.
    void server.stop().then(() => {
      admin.stop();
      removePidFile(config.pidFile);
      log.close();
      process.exit(0);
    });
  };
  // The last net: every continuation of an exchange is guarded by its connection, so these fire
  // only for a bug outside any connection. Say so loudly and keep serving the other clients.
  process.on("unhandledRejection", (reason) => {
    server.stats.uncaughtErrors++;
    log.error("unhandled_rejection", { error: String((reason as Error)?.stack ?? reason) });
  });
  process.on("uncaughtException", (error) => {
    server.stats.uncaughtErrors++;
    log.error("uncaught_exception", { error: String(error?.stack ?? error) });
  });
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
  // SIGHUP: read the TLS certificate, key and client CA and the token secrets again (rotation
  // without a restart); open connections are untouched.
  process.on("SIGHUP", () => {
    log.info("reload", { signal: "SIGHUP" });
    server.reload();
  });
  try {
    await server.start();
    if (config.adminPort !== 0) admin.start(config.adminHost, config.adminPort);
    if (config.pidFile !== "") writeFileSync(config.pidFile, `${process.pid}\n`);
  } catch (e) {
    const message = e instanceof StoreError || e instanceof ListenError || e instanceof SecurityError ? e.message : String((e as Error)?.message ?? e);
    log.error("start_failed", { error: message });
    await server.stop();
    admin.stop();
    log.close();
    return 1;
  }
  // Ready only once every listener is up (and the pid file written): scripts wait for this line.
  server.logListening(admin.port);
  return new Promise<number>(() => {}); // runs until a signal stops it
}

/**
 * `loops` > 1: the same life as serve()'s (signals, the admin endpoint, the pid file, the
 * "listening" line scripts wait for), over a group of event-loop threads.
 */
async function serveLoops(config: Config, log: Logger, loops: number): Promise<number> {
  const group = new LoopGroup(config, log, loops);
  const admin = new AdminServer(group, log, config.adminToken, { connectionsMax: config.adminConnectionsMax, requestTimeoutMs: config.adminTimeoutMs });
  const finish = (code: number) =>
    void group.stop().then(() => {
      admin.stop();
      removePidFile(config.pidFile);
      log.close();
      process.exit(code);
    });
  process.on("unhandledRejection", (reason) => log.error("unhandled_rejection", { error: String((reason as Error)?.stack ?? reason) }));
  process.on("uncaughtException", (error) => log.error("uncaught_exception", { error: String(error?.stack ?? error) }));
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      log.info("shutdown", { signal, graceMs: config.shutdownGraceMs, loops });
      finish(0);
    });
  }
  process.on("SIGHUP", () => {
    log.info("reload", { signal: "SIGHUP", loops });
    group.reload();
  });
  try {
    await group.start((reason) => {
      log.error("server_failed", { error: reason });
      finish(1);
    });
    if (config.adminPort !== 0) admin.start(config.adminHost, config.adminPort);
    if (config.pidFile !== "") writeFileSync(config.pidFile, `${process.pid}\n`);
  } catch (e) {
    const message = e instanceof StoreError || e instanceof ListenError ? e.message : String((e as Error)?.message ?? e);
    log.error("start_failed", { error: message });
    await group.stop();
    admin.stop();
    log.close();
    return 1;
  }
  log.info("listening", { host: config.host, port: group.port, adminPort: admin.port, loops, engine: config.ioEngine, wire: config.wire, store: config.store, pid: process.pid });
  return new Promise<number>(() => {});
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

/** One clear line each when the system refused worker priority or CPU pinning. */
export function reportPool(engine: CPoolEngine, config: Config, log: Logger): void {
  const stats = engine.nativeStats();
  const prioFailed = stats[PoolStat.PRIO_FAILED]!;
  const affinityFailed = stats[PoolStat.AFFINITY_FAILED]!;
  if (prioFailed > 0) {
    log.warn("io_priority_refused", { workers: prioFailed, of: config.priorIoThreads, effect: "those workers run at normal priority (SCHED_RR needs CAP_SYS_NICE)" });
  }
  if (stats[PoolStat.NICE_FAILED]! > 0) {
    log.warn("io_nice_refused", { workers: stats[PoolStat.NICE_FAILED]!, nice: config.ioThreadNice, effect: "those workers run at normal priority" });
  }
  if (affinityFailed > 0) {
    log.warn("cpu_affinity_refused", { workers: affinityFailed, of: config.ioThreads, effect: "those workers run unpinned" });
  }
  log.info("io_pool", { threads: stats[PoolStat.THREADS]!, waitingQueueLen: config.waitingQueueLen, submitMode: config.ioSubmitMode });
}

/** Removes the pid file written at start (a clean stop); one that is already gone is fine. */
function removePidFile(path: string): void {
  if (path === "") return;
  try {
    unlinkSync(path);
  } catch {}
}
