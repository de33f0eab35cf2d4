// One event loop's Server in the test's own process (no supervisor, no thread), for tests that
// wrap its engine to inject faults: made as the supervisor makes a loop's (src/server/loop.ts), with
// the store prepared first as the supervisor prepares it.
import type { Config } from "../../src/config";
import type { IoEngine } from "../../src/engine/io-engine";
import type { Logger } from "../../src/log";
import { IpGuard } from "../../src/server/ip-guard";
import { Server } from "../../src/server/server";
import { SharedCounters, sharedCountersMemory } from "../../src/server/shared-counters";
import { createStore } from "../../src/storage/create-store";

export async function inProcessServer(config: Config, engine: IoEngine, log: Logger): Promise<Server> {
  const clients = new IpGuard(config);
  const counters = new SharedCounters(sharedCountersMemory(1));
  const store = createStore(config, engine, clients, { index: 0, of: 1, takeFromLoop: async () => null, counters });
  store.init(log, true);
  await store.open?.();
  const server = new Server({ config, engine, log, store, clients, loop: { index: 0, of: 1, counters } });
  await server.start();
  return server;
}
