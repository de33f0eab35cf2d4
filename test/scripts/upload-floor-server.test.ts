// Proves the benchmark's floor server (scripts/lib/upload-floor-server.ts) does the work it stands
// for: it answers bench and upload exchanges as fsgw does, reads each body whole (in one write or
// in pieces, several exchanges per connection) and hashes it, so that what fsgw costs beyond it in
// bench-exchanges.ts --variants floor is storing and bookkeeping, not a floor that skips the body.
import { afterAll, expect, test } from "bun:test";
import { benchExchange, uploadExchange } from "../../src/client/exchanges";
import { WireConn } from "../../src/client/wire-conn";
import { payload, sha256 } from "../helpers/data";
import { startServer, type TestServer } from "../helpers/server";

let server: TestServer | null = null;
afterAll(async () => {
  await server?.stop();
});

test("bench and uploads through the floor server: each END carries the SHA-256 of the whole body", async () => {
  server = await startServer({}, {}, [], undefined, { script: "scripts/lib/upload-floor-server.ts", serveArg: false });
  const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
  await benchExchange(conn, "b");
  for (const [size, piece] of [[5120, 5120], [65_536, 4096], [1, 1], [300_001, 65_536]] as const) {
    const body = payload(size, size);
    const digest = await uploadExchange(conn, `k${size}`, size, async (c) => {
      for (let at = 0; at < size; at += piece) await c.write(body.subarray(at, Math.min(size, at + piece)));
    });
    expect(digest).toBe(sha256(body));
  }
  await benchExchange(conn, "b2");
  conn.close();
});
