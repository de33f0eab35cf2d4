// Proves what the README says of a stop: SIGTERM removes partial uploads. An upload whose body is
// still arriving when the grace is over is answered why it ends (instead of a dropped connection),
// its partial file is removed before the process exits (not at the next start), and `fsgw put`
// says "upload interrupted by server shutdown", waits for a server on that port and sends the file
// again, whole, to the next one.
import { afterAll, expect, test } from "bun:test";
import { readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { root } from "../../src/ffi/build";
import { Msg, Op, SHUTDOWN_TEXT } from "../../src/protocol/message";
import { WireConn } from "../../src/client/wire-conn";
import { connect } from "../../src/client/client";
import { payload, sha256 } from "../helpers/data";
import { eventually, freePort, startServer, tempDir, type TestServer } from "../helpers/server";

const dir = tempDir("shutdown-upload");
const servers: TestServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.stop();
});

/** Every file under the data directory whose name marks an upload in progress, with its size. */
function partials(dataDir: string): { path: string; size: number }[] {
  const found: { path: string; size: number }[] = [];
  for (const shard of readdirSync(dataDir, { withFileTypes: true })) {
    if (!shard.isDirectory()) continue;
    for (const name of readdirSync(join(dataDir, shard.name))) {
      if (name.includes(".fsgw-tmp")) found.push({ path: join(dataDir, shard.name, name), size: statSync(join(dataDir, shard.name, name)).size });
    }
  }
  return found;
}

test("a body still arriving at the end of the grace gets the shutdown's answer, and its partial file goes with the server", async () => {
  const server = await startServer({ shutdownGraceMs: 0 });
  const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
  await conn.sendFrame({ operation: Op.UPLOAD, key: "cut.bin", size: 10_000_000, resumable: true });
  expect((await conn.readFrame()).message).toBe(Msg.START);
  await conn.write(payload(3_000_000, 1));
  await eventually(() => partials(server.dataDir).some((p) => p.size === 3_000_000), 10_000, "3 MB of the body on disk");
  expect(await server.stop()).toBe(0);
  const answer = await conn.readFrame();
  expect([answer.operation, answer.key, answer.message]).toEqual([Op.UPLOAD, "cut.bin", SHUTDOWN_TEXT]);
  expect(partials(server.dataDir)).toEqual([]);
  expect(server.lines.join("\n")).toMatch(/event=partial_uploads_removed uploads=1 /);
  expect(server.lines.join("\n")).toContain("event=exchange_cut");
});

test("fsgw put across a restart: says the upload was interrupted by the shutdown, sends it again to the next server, whole", async () => {
  const port = freePort();
  const dataDir = join(tempDir("shutdown-put"), "d");
  // A server that takes the body slowly (4 KiB writes, one at a time, through memory): the client
  // is surely still sending when the test holds it.
  const first = await startServer({ port, dataDir, shutdownGraceMs: 0, zeroCopy: false, ioChunkBytes: 4096, uploadWritesInFlightMax: 1 });
  const file = join(dir, "big.bin");
  const body = payload(16 * 1024 * 1024, 7);
  writeFileSync(file, body);
  const put = Bun.spawn([process.execPath, join(root, "src/main.ts"), "put", file, "--key", "big.bin", "--port", String(port), "--timeout-ms", "20000"], { stdout: "pipe", stderr: "pipe" });
  // Hold the client in the middle of its body (SIGSTOP): the server is stopped under it.
  await eventually(() => partials(dataDir).some((p) => p.size > 0), 15_000, "part of the body on disk");
  put.kill("SIGSTOP");
  const held = partials(dataDir)[0]!.size;
  expect(held).toBeLessThan(body.length); // held mid-body
  expect(await first.stop()).toBe(0);
  expect(partials(dataDir)).toEqual([]);
  const second = await startServer({ port, dataDir });
  servers.push(second);
  put.kill("SIGCONT");
  expect(await put.exited).toBe(0);
  const err = await new Response(put.stderr).text();
  expect(err).toContain("put big.bin: upload interrupted by server shutdown (it kept nothing); sending it again once a server listens");
  expect(await new Response(put.stdout).text()).toContain("as big.bin: 16.0 MiB");
  const client = connect({ port });
  const stored = await client.download("big.bin");
  client.close();
  expect(sha256(stored)).toBe(sha256(body));
}, 60_000);
