// `fsgw volumes stats | verify | compact` on a data directory a real server wrote: the figures
// match what was stored, verify names a damaged record (and passes an intact directory), compact
// refuses while a server holds the directory and afterwards gives space back with every key intact.
import { afterEach, expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect } from "../../src/client/client";
import { payload, sha256 } from "../helpers/data";
import { runFsgw } from "../helpers/proc";
import { startServer, type TestServer } from "../helpers/server";

let server: TestServer | null = null;
afterEach(async () => {
  if (server !== null && server.proc.exitCode === null) await server.stop();
  server = null;
});

const fsgw = runFsgw;

test("stats, verify and compact on a data directory with volumes", async () => {
  server = await startServer({ volumes: true, volumeCompactLivePercent: 0 });
  const { dataDir } = server;
  const client = connect({ port: server.port, poolSize: 8 });
  for (let i = 0; i < 100; i++) await client.upload(`v/${i}`, payload(4000, i));
  for (let i = 0; i < 60; i++) await client.delete(`v/${i}`);
  client.close();

  // While the server runs: compact refuses (the directory is locked).
  const refused = fsgw("volumes", "compact", "--data-dir", dataDir);
  expect(refused.code).toBe(1);
  expect(refused.err).toContain("stop its server first");
  await server.stop();
  server = null;

  const stats = JSON.parse(fsgw("volumes", "stats", "--data-dir", dataDir, "--json").out) as { volumes: { bytes: number; liveBytes: number }[]; totals: { keys: number; bodyRecords: number; tombstones: number } };
  expect(stats.totals).toMatchObject({ keys: 40, bodyRecords: 100, tombstones: 60 });
  const liveShare = stats.volumes[0]!.liveBytes / stats.volumes[0]!.bytes;
  expect(liveShare).toBeGreaterThan(0.3);
  expect(liveShare).toBeLessThan(0.45);

  expect(fsgw("volumes", "verify", "--data-dir", dataDir).code).toBe(0);

  // Compact at 50%: the one volume goes, its 40 live records are copied. The 60 tombstones are
  // dropped: the records they delete were in that volume only, and go with it.
  const before = readdirSync(join(dataDir, "volumes")).filter((n) => n.endsWith(".fsv"));
  const compacted = JSON.parse(fsgw("volumes", "compact", "--data-dir", dataDir, "--live-percent", "50", "--json").out) as { compacted: string[]; recordsCopied: number; bytesReclaimed: number; tombstonesDropped: number };
  expect(compacted.compacted).toEqual(before);
  expect(compacted.recordsCopied).toBe(40);
  expect(compacted.tombstonesDropped).toBe(60);
  expect(compacted.bytesReclaimed).toBeGreaterThan(60 * 4000);
  expect(fsgw("volumes", "verify", "--data-dir", dataDir).code).toBe(0);
  server = await startServer({ volumes: true, dataDir });
  const again = connect({ port: server.port });
  for (let i = 0; i < 100; i++) {
    if (i < 60) await expect(again.download(`v/${i}`)).rejects.toThrow(/no such/);
    else expect(sha256(await again.download(`v/${i}`))).toBe(sha256(payload(4000, i)));
  }
  again.close();
  await server.stop();
  server = null;

  // One byte of a body changed: verify names the record and exits 1.
  const [volume] = readdirSync(join(dataDir, "volumes")).filter((n) => n.endsWith(".fsv")).sort().slice(-1);
  const path = join(dataDir, "volumes", volume!);
  const bytes = new Uint8Array(readFileSync(path));
  const at = statSync(path).size - 1000;
  bytes[at] = bytes[at]! ^ 0xff;
  writeFileSync(path, bytes);
  const verify = fsgw("volumes", "verify", "--data-dir", dataDir);
  expect(verify.code).toBe(1);
  expect(verify.out).toMatch(/fails its CRC-32C/);
});
