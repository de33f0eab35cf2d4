// Proves a 256 MiB upload streams through the server: its memory grows by a small fraction of the
// file, and the bytes on disk and downloaded back are the bytes sent (SHA-256).
import { afterAll, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { downloadExchange, uploadExchange } from "../../src/client/exchanges";
import { WireConn } from "../../src/client/wire-conn";
import { payload, sha256File } from "../helpers/data";
import { startServer, type TestServer } from "../helpers/server";
import { checkKey } from "../../src/storage/keys";
import { engineNames } from "../../src/config";

const MiB = 1024 * 1024;
let server: TestServer | null = null;
afterAll(async () => {
  await server?.stop();
});

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m![1]) * 1024;
}

test.each(engineNames.map((e) => [e]))("engine %s: a 256 MiB upload grows the server's RSS by well under the file size; SHA-256 equal both ways", async (engine) => {
  server = await startServer({ ioEngine: engine });
  const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
  const pieces = Array.from({ length: 8 }, (_, i) => payload(MiB, i)); // 8 distinct MiB, repeated
  const size = 256 * MiB;
  // Warm up: the first streamed upload allocates the server's steady-state buffers.
  await uploadExchange(conn, "warmup", 8 * MiB, async (c) => {
    for (const p of pieces) await c.write(p);
  });
  Bun.gc(true);
  await Bun.sleep(200);
  const baseline = rssBytes(server.pid);
  let peak = baseline;
  const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(server!.pid))), 20);

  const sent = createHash("sha256");
  await uploadExchange(conn, "big", size, async (c) => {
    for (let i = 0; i < 256; i++) {
      const p = pieces[i % pieces.length]!;
      sent.update(p);
      await c.write(p);
    }
  });
  clearInterval(sampler);
  const growth = peak - baseline;
  expect(growth).toBeLessThan(64 * MiB);

  const sentHash = sent.digest("hex");
  const { hash } = checkKey("big") as { hash: number };
  const shard = (hash % 256).toString(16).padStart(2, "0");
  expect(await sha256File(join(server.dataDir, shard, "big"))).toBe(sentHash);

  const got = createHash("sha256");
  const n = await downloadExchange(conn, "big", (part) => void got.update(part));
  expect(n).toBe(size);
  expect(got.digest("hex")).toBe(sentHash);
  conn.close();
  await server.stop();
  server = null;
}, 120_000);
