// Picks the engine named by config.ioEngine.
import type { Config } from "../config";
import type { Logger } from "../log";
import { BunEngine } from "./bun-engine";
import type { IoEngine } from "./io-engine";

export function createEngine(config: Config, _log: Logger): IoEngine {
  switch (config.ioEngine) {
    case "bun":
      return new BunEngine();
  }
}
