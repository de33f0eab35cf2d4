// `fsgw serve`: load the config, open the engine and the store, listen, and stop cleanly on signals.
import { ConfigError, configHelp, loadConfig } from "./config";
import { createEngine } from "./engine/create-engine";
import { Logger } from "./log";
import { Server } from "./server/server";
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
  try {
    config = loadConfig({ argv, env: process.env });
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    console.error(`fsgw: ${e.message}`);
    return 2;
  }
  const log = new Logger(config.logLevel);
  const engine = createEngine(config, log);
  const server = new Server({ config, engine, log });
  try {
    server.start();
  } catch (e) {
    const message = e instanceof StoreError ? e.message : String((e as Error)?.message ?? e);
    log.error("start_failed", { error: message });
    await engine.shutdown();
    return 1;
  }
  const stop = (signal: string) => {
    log.info("shutdown", { signal, graceMs: config.shutdownGraceMs });
    void server.stop().then(() => process.exit(0));
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
  return new Promise<number>(() => {}); // runs until a signal stops it
}
