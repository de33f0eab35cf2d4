// Test helpers for real server processes; the implementation is shared with the benchmarks.
import { benchExchange } from "../../src/client/exchanges";
import { WireConn } from "../../src/client/wire-conn";
export { eventually, eventuallyAsync, freePort, startServer, tempDir, WITH_FAULTS, type TestServer } from "../../scripts/lib/server-process";

/**
 * A connection the server admits, once it has seen a close that frees a slot (of connectionsMax or
 * connectionsPerIpMax): until then a new connection is refused, maybe reset before the client sees
 * it open, so each attempt is proved by a BENCH exchange. Fails after `ms`.
 */
export async function connectWhenAdmitted(port: number, ms = 5000): Promise<WireConn> {
  const deadline = Date.now() + ms;
  for (;;) {
    const candidate = await WireConn.connect({ host: "127.0.0.1", port }).catch(() => null);
    if (candidate !== null) {
      const admitted = await benchExchange(candidate, "admitted?").then(
        () => true,
        () => false,
      );
      if (admitted) return candidate;
      candidate.destroy();
    }
    if (Date.now() > deadline) throw new Error(`no connection admitted within ${ms} ms`);
    await Bun.sleep(20);
  }
}
