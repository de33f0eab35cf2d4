// Several event loops on one port (`loops` > 1): connections spread over every loop (seen in their
// stats), a whole-server connectionsMax, overwrites and downloads of one key racing across loops,
// a graceful stop with uploads in flight on every loop, a loop killed by a bug replaced while the
// other serves on, and loops failing over and over stopping the server with a message. The whole protocol suite
// also runs on 2 and 4 loops: test/server/e2e.test.ts.
import { afterAll, expect, test } from "bun:test";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { benchExchange, downloadExchange, uploadExchange } from "../../src/client/exchanges";
import { WireConn } from "../../src/client/wire-conn";
import { payload, sha256 } from "../helpers/data";
import { tempFiles } from "../helpers/fs";
import { connectWhenAdmitted, eventually, freePort, startServer, tempDir, WITH_FAULTS, type TestServer } from "../helpers/server";

const servers: TestServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.stop();
});

async function start(fields: Record<string, string | number>, env: Record<string, string> = {}): Promise<TestServer> {
  const s = await startServer(fields, env);
  servers.push(s);
  return s;
}

type PerLoop = { connections: { total: number; open: number; refused: number }; exchanges: { upload: { count: number } } };
async function stats(adminPort: number): Promise<{ loops: number; loopsRestarted: number; connections: { total: number; open: number }; perLoop: PerLoop[] }> {
  return (await fetch(`http://127.0.0.1:${adminPort}/debug/stats`)).json() as never;
}

test("connections spread over every loop; /debug/stats sums them and shows each loop; /metrics labels each", async () => {
  const admin = freePort();
  const server = await start({ loops: 4, adminPort: admin });
  const conns = await Promise.all(Array.from({ length: 64 }, () => WireConn.connect({ host: "127.0.0.1", port: server.port })));
  for (const [i, c] of conns.entries()) await benchExchange(c, `b${i}`);
  const s = await stats(admin);
  expect(s.loops).toBe(4);
  expect(s.connections.total).toBe(64);
  expect(s.perLoop.map((l) => l.connections.total).reduce((a, b) => a + b, 0)).toBe(64);
  for (const l of s.perLoop) expect(l.connections.total).toBeGreaterThan(0); // 64 over 4: each gets some
  const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
  // The single loop's families, summed; then per-loop ones.
  expect(metrics).toContain("fsgw_connections_accepted_total 64\n");
  for (const loop of [0, 1, 2, 3]) expect(metrics).toMatch(new RegExp(`fsgw_loop_exchanges_total\\{loop="${loop}"\\} [1-9]`));
  expect(metrics.match(/^# TYPE fsgw_connections_accepted_total /gm)).toHaveLength(1);
  const profile = await (await fetch(`http://127.0.0.1:${admin}/debug/profile?seconds=1&format=top&loop=3`)).text();
  expect(profile).toMatch(/JavaScript thread|No samples/);
  expect((await fetch(`http://127.0.0.1:${admin}/debug/profile?seconds=1&loop=4`)).status).toBe(400);
  for (const c of conns) c.close();
});

test("connectionsMax is one bound over every loop", async () => {
  const server = await start({ loops: 2, connectionsMax: 5 });
  const open = await Promise.all(Array.from({ length: 5 }, () => WireConn.connect({ host: "127.0.0.1", port: server.port })));
  for (const c of open) await benchExchange(c, "in");
  // Past the bound, whichever loop a connection reaches closes it at once (it may close before
  // the client even sees it open).
  const extra = await Promise.all(
    Array.from({ length: 4 }, () =>
      WireConn.connect({ host: "127.0.0.1", port: server.port }).then(
        (c) => c.closedWithin(3000),
        () => true,
      ),
    ),
  );
  expect(extra).toEqual([true, true, true, true]);
  open[0]!.close();
  await eventually(() => server.lines.some((l) => l.includes("event=connection_refused")), 3000, "the refusal logged");
  const again = await connectWhenAdmitted(server.port); // a slot freed on whichever loop frees it for all
  again.close();
  for (const c of open.slice(1)) c.close();
});

test("one key overwritten and downloaded from every loop at once: every download is one whole version", async () => {
  const server = await start({ loops: 4 });
  const versions = Array.from({ length: 4 }, (_, i) => payload(300_000 + i * 1000, 70 + i));
  const hashes = new Set(versions.map(sha256));
  const first = await WireConn.connect({ host: "127.0.0.1", port: server.port });
  await uploadExchange(first, "raced", versions[0]!.length, (c) => c.write(versions[0]!));
  first.close();
  const got: string[] = [];
  await Promise.all(
    Array.from({ length: 24 }, async (_, i) => {
      const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
      for (let round = 0; round < 4; round++) {
        if (i % 3 === 0) {
          const v = versions[(i + round) % 4]!;
          await uploadExchange(conn, "raced", v.length, (c) => c.write(v));
        } else {
          const parts: Uint8Array[] = [];
          await downloadExchange(conn, "raced", (p) => void parts.push(p.slice()));
          got.push(sha256(Buffer.concat(parts)));
        }
      }
      conn.close();
    }),
  );
  expect(got.length).toBe(64);
  for (const h of got) expect(hashes.has(h)).toBe(true);
  expect(tempFiles(server.dataDir)).toEqual([]);
}, 60_000);

test("a graceful stop with uploads in flight on every loop lets each finish, then exits 0", async () => {
  const server = await start({ loops: 2, shutdownGraceMs: 10_000 });
  const size = 2 * 1024 * 1024;
  const conns = await Promise.all(Array.from({ length: 8 }, () => WireConn.connect({ host: "127.0.0.1", port: server.port })));
  let halfway = 0;
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const uploads = conns.map((conn, i) =>
    uploadExchange(conn, `inflight-${i}`, size, async (c) => {
      const body = payload(size, 90 + i);
      await c.write(body.subarray(0, size / 2));
      halfway++;
      await released;
      await c.write(body.subarray(size / 2));
    }),
  );
  await eventually(() => halfway === 8, 10_000, "every upload halfway");
  server.proc.kill("SIGTERM");
  await eventually(() => server.lines.some((l) => l.includes("event=shutdown")), 5000, "the shutdown begun");
  release();
  await Promise.all(uploads); // every upload ends with END: none was cut
  for (const c of conns) c.close();
  expect(await server.proc.exited).toBe(0);
  const stoppedLoops = server.lines.filter((l) => /event=stopped .*loop=\d/.test(l)).length;
  expect(stoppedLoops).toBe(2);
  expect(tempFiles(server.dataDir)).toEqual([]);
}, 60_000);

/** A server whose loops can fail on demand (test/entry/serve-with-faults.ts). */
async function startWithFaults(fields: Record<string, string | number>, env: Record<string, string>): Promise<TestServer> {
  const s = await startServer(fields, env, [], undefined, WITH_FAULTS);
  servers.push(s);
  return s;
}

test("a loop killed by a bug is replaced on the same port; the other loop's connections are not cut; /debug/stats counts it", async () => {
  const admin = freePort();
  const dir = tempDir("faults");
  const trigger = join(dir, "trigger");
  const server = await startWithFaults({ loops: 2, adminPort: admin }, { TEST_FAULT_LOOP: "1", TEST_FAULT_TRIGGER: trigger, TEST_FAULT_ONCE: join(dir, "once") });
  // Connections on both loops, each exchanging for as long as it can.
  const conns = await Promise.all(Array.from({ length: 24 }, () => WireConn.connect({ host: "127.0.0.1", port: server.port })));
  for (const [i, c] of conns.entries()) await benchExchange(c, `warm-${i}`);
  const before = await stats(admin);
  const onLoop1 = before.perLoop[1]!.connections.total;
  expect(onLoop1).toBeGreaterThan(0);
  expect(before.perLoop[0]!.connections.total).toBeGreaterThan(0);
  let stop = false;
  const cut: number[] = [];
  const runs = conns.map(async (c, i) => {
    const body = payload(20_000, i);
    for (let n = 0; !stop; n++) {
      try {
        await uploadExchange(c, `k-${i}-${n % 3}`, body.length, (w) => w.write(body));
      } catch {
        cut.push(i);
        return;
      }
    }
  });
  writeFileSync(trigger, "now\n");
  await eventually(() => server.lines.some((l) => l.includes("event=loop_restarted")), 10_000, "the loop replaced");
  // New connections are served throughout and after (they reach either loop).
  for (let i = 0; i < 8; i++) {
    const c = await WireConn.connect({ host: "127.0.0.1", port: server.port });
    await uploadExchange(c, `after-${i}`, 1000, (w) => w.write(payload(1000, i)));
    c.close();
  }
  stop = true;
  await Promise.all(runs);
  // Exactly the failed loop's connections were cut; every connection of the other loop went on.
  expect(cut.length).toBe(onLoop1);
  const failure = server.lines.find((l) => l.includes("event=loop_failed"))!;
  expect(failure).toContain("loop=1");
  expect(failure).toContain("a deliberate bug");
  const after = await stats(admin);
  expect(after.loopsRestarted).toBe(1);
  // What the failed loop held in the shared tables went back with it: the connections still open
  // are exactly the ones counted.
  expect(after.connections.open).toBe(conns.length - onLoop1);
  for (const c of conns) c.close();
  expect(tempFiles(server.dataDir)).toEqual([]);
  expect(await server.stop()).toBe(0);
}, 60_000);

test("a loop that fails over and over stops the server with a message, instead of restarting for ever", async () => {
  const server = await startWithFaults({ loops: 2, loopRestartsMax: 3, loopRestartWindowMs: 60_000 }, { TEST_FAULT_LOOP: "1" }).catch((e: Error) => e);
  // The first loop 1 may already fail before the server says it listens.
  const lines = server instanceof Error ? server.message.split("\n") : (await (server as TestServer).proc.exited, (server as TestServer).lines);
  const text = lines.join("\n");
  expect(text).toMatch(/event=loops_failing|event=start_failed/);
  if (!(server instanceof Error)) {
    expect(text).toContain("loopRestartsMax 3");
    expect((server as TestServer).proc.exitCode).toBe(1);
  }
}, 60_000);

/** The server's C pool worker threads (named fsgw-io-<i>). */
function poolThreads(pid: number): number {
  return readdirSync(`/proc/${pid}/task`).filter((t) => readFileSync(`/proc/${pid}/task/${t}/comm`, "utf8").startsWith("fsgw-io")).length;
}

test("loops share one set of ioThreads workers (or, with loopPools per-loop, each has its share); uploads on every loop complete", async () => {
  for (const [loopPools, threads] of [["shared", 6], ["per-loop", 8]] as const) {
    const admin = freePort();
    const server = await start({ loops: 4, ioThreads: 6, loopPools, adminPort: admin });
    expect([loopPools, poolThreads(server.pid)]).toEqual([loopPools, threads]);
    // Each pool reports itself once (threads; any refused priority or pinning).
    expect(server.lines.filter((l) => l.includes("event=io_pool")).length).toBe(loopPools === "shared" ? 1 : 4);
    await Promise.all(
      Array.from({ length: 64 }, async (_, i) => {
        const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
        const body = payload(100_000 + i, i);
        await uploadExchange(conn, `pooled-${i}`, body.length, (c) => c.write(body));
        const parts: Uint8Array[] = [];
        await downloadExchange(conn, `pooled-${i}`, (p) => void parts.push(p.slice()));
        expect(sha256(Buffer.concat(parts))).toBe(sha256(body));
        conn.close();
      }),
    );
    const s = await stats(admin);
    expect(s.perLoop.filter((l) => l.exchanges.upload.count > 0).length).toBe(4); // every loop's pool did work
    expect(await server.stop()).toBe(0);
  }
}, 60_000);

test("connectionsPerIpMax is one bound over every loop (one shared table of addresses)", async () => {
  const server = await start({ loops: 4, connectionsPerIpMax: 3 });
  const open = await Promise.all(Array.from({ length: 3 }, () => WireConn.connect({ host: "127.0.0.1", port: server.port })));
  for (const c of open) await benchExchange(c, "in");
  for (let i = 0; i < 6; i++) {
    const refused = await WireConn.connect({ host: "127.0.0.1", port: server.port }).then(
      (c) => c.closedWithin(3000),
      () => true,
    );
    expect(refused).toBe(true);
  }
  open[0]!.close();
  const again = await connectWhenAdmitted(server.port);
  again.close();
  for (const c of open.slice(1)) c.close();
});
