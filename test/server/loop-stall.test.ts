// Proves a stall of the event loop (a long pause of the collector, a slow synchronous step) does not
// make the server drop clients as idle whose requests arrived during it: after the stall their
// requests are read and answered, and a client that truly stays silent still times out.
import { afterAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { benchExchange } from "../../src/client/exchanges";
import { WireConn } from "../../src/client/wire-conn";
import { eventually, startServer, tempDir, WITH_FAULTS, type TestServer } from "../helpers/server";

const dir = tempDir("loop-stall");
let server: TestServer | null = null;
afterAll(async () => {
  await server?.stop();
});

test("requests that arrive while the loop stalls past idleTimeoutMs are answered, not cut as idle", async () => {
  const trigger = join(dir, "stall");
  server = await startServer({ idleTimeoutMs: 400 }, { TEST_STALL_TRIGGER: trigger, TEST_STALL_MS: "1500" }, [], undefined, WITH_FAULTS);
  const busy = await WireConn.connect({ host: "127.0.0.1", port: server.port });
  await benchExchange(busy, "before"); // the connection is known and active
  writeFileSync(trigger, "stall\n");
  await Bun.sleep(200); // the loop is blocked now (it polls for the trigger every 10 ms)
  // Sent during the stall: it waits in the socket until the loop runs again.
  await benchExchange(busy, "during");
  await benchExchange(busy, "after");
  expect(server.lines.some((l) => l.includes("event=idle_timeout"))).toBe(false);
  busy.close();
  // A connection that says nothing is still closed by the idle timeout.
  const silent = await WireConn.connect({ host: "127.0.0.1", port: server.port });
  await eventually(() => server!.lines.some((l) => l.includes("event=idle_timeout")), 5000, "the silent connection timed out");
  expect(server.lines.filter((l) => l.includes("event=idle_timeout"))).toHaveLength(1);
  silent.close();
});
