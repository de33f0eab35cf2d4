// Proves that connections which never authenticate, or trickle a frame a byte at a time, cannot hold
// the server's slots: authTimeoutMs, unauthenticatedConnectionsMax and frameTimeoutMs, against a
// real server, with attackers on their own loopback addresses (127.0.0.2, 127.0.0.3).
import { afterEach, describe, expect, test } from "bun:test";
import type net from "node:net";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Access, createToken, newSecret } from "../../src/auth/token";
import { downloadExchange, uploadExchange } from "../../src/client/exchanges";
import { WireConn } from "../../src/client/wire-conn";
import { payload, sha256 } from "../helpers/data";
import { closedWithin, destroyRawSockets, rawConnect, type RawSocket } from "../helpers/raw-socket";
import { eventually, freePort, startServer, tempDir, type TestServer } from "../helpers/server";

let server: TestServer | null = null;
const timers: ReturnType<typeof setInterval>[] = [];
afterEach(async () => {
  for (const t of timers.splice(0)) clearInterval(t);
  destroyRawSockets();
  await server?.stop();
  server = null;
});

function secretFile(): { file: string; secret: string } {
  const secret = newSecret();
  const file = join(tempDir("slowloris"), "secret");
  writeFileSync(file, secret);
  return { file, secret };
}

function tokenOf(secret: string): string {
  return createToken(new TextEncoder().encode(secret), { id: "real", access: Access.READ | Access.WRITE | Access.DELETE, prefix: "", expiresAtMs: Date.now() + 3600_000 });
}

/** Sends a frame's 4-byte length, then one byte of it every `everyMs`: never a whole frame. */
function trickle(socket: net.Socket, everyMs: number): void {
  const length = Buffer.alloc(4);
  length.writeInt32LE(1000); // the protocol's frame length: int32, little-endian
  socket.write(length);
  timers.push(setInterval(() => socket.writable && socket.write(Buffer.from([0x0a])), everyMs));
}

/** One upload and download by the real client: served, byte for byte. */
async function served(conn: WireConn, key: string): Promise<void> {
  const body = payload(20_000, key.length);
  await uploadExchange(conn, key, body.length, (c) => c.write(body));
  const parts: Uint8Array[] = [];
  await downloadExchange(conn, key, (p) => void parts.push(p.slice()));
  expect(sha256(Buffer.concat(parts))).toBe(sha256(body));
}

describe("slowloris before authentication", () => {
  for (const loops of [1, 2]) {
    test(`two addresses trickling bytes at connectionsPerIpMax cannot keep a third address's client out, and are closed after authTimeoutMs (${loops} loop${loops > 1 ? "s" : ""})`, async () => {
      const { file, secret } = secretFile();
      // Before the fix, 2 × connectionsPerIpMax trickling connections filled connectionsMax and
      // every real client was refused; bytes reset idleTimeoutMs, so they were never closed.
      server = await startServer({
        auth: "token",
        authSecretFile: file,
        loops,
        connectionsMax: 40,
        connectionsPerIpMax: 20,
        unauthenticatedConnectionsMax: 30,
        authTimeoutMs: 1500,
        // High: the attackers must be stopped by the deadline and the budget, not by blocking.
        authFailuresMax: 100_000,
        idleTimeoutMs: 60_000,
        frameTimeoutMs: 600_000,
      });
      const attackers: RawSocket[] = [];
      for (const address of ["127.0.0.2", "127.0.0.3"]) {
        for (let i = 0; i < 20; i++) {
          const a = await rawConnect(server.port, address);
          if (a === null) continue;
          trickle(a.socket, 100);
          attackers.push(a);
        }
      }
      expect(attackers.length).toBeGreaterThanOrEqual(30);
      const openedAt = Date.now();
      // The real client, from a third address, gets in and is served while they trickle.
      const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port, token: tokenOf(secret) });
      await served(conn, "real-1");
      // Every attacker connection is closed within authTimeoutMs (plus the sweep), trickling or not.
      const cut = await Promise.all(attackers.map((a) => closedWithin(a.closed, 1500 + 2500)));
      expect(cut.every(Boolean)).toBe(true);
      expect(Date.now() - openedAt).toBeGreaterThanOrEqual(1000);
      // The authenticated client is past authTimeoutMs and still served.
      await served(conn, "real-2");
      conn.close();
      const said = server.lines.join("\n");
      expect(said).toContain("event=auth_timeout");
      if (loops === 1) expect(said).toContain("event=unauthenticated_evicted");
    });
  }

  test("one connection past unauthenticatedConnectionsMax closes the oldest unauthenticated one, never an authenticated one", async () => {
    const { file, secret } = secretFile();
    const adminPort = freePort();
    server = await startServer({ auth: "token", authSecretFile: file, loops: 1, adminPort, connectionsMax: 100, unauthenticatedConnectionsMax: 5, authTimeoutMs: 60_000, authFailuresMax: 100_000 });
    // An authenticated client first: the budget is not its.
    const inside = await WireConn.connect({ host: "127.0.0.1", port: server.port, token: tokenOf(secret) });
    const idle: RawSocket[] = [];
    for (let i = 0; i < 5; i++) idle.push((await rawConnect(server.port, "127.0.0.2"))!);
    // The server must have accepted all five before the newcomer arrives: wait until it counts them.
    const open = async () => ((await (await fetch(`http://127.0.0.1:${adminPort}/debug/stats`)).json()) as { connections: { open: number } }).connections.open;
    for (let n = await open(); n < 6; n = await open()) await Bun.sleep(10);
    const newcomer = await WireConn.connect({ host: "127.0.0.1", port: server.port, token: tokenOf(secret) });
    expect(await closedWithin(idle[0]!.closed, 2000)).toBe(true);
    for (const other of idle.slice(1)) expect(await closedWithin(other.closed, 50)).toBe(false);
    await served(newcomer, "newcomer");
    await served(inside, "inside");
    newcomer.close();
    inside.close();
    await server.line("event=unauthenticated_evicted");
  });

  test("a token revoked on reload must be replaced within authTimeoutMs, or the connection is closed", async () => {
    const { file, secret } = secretFile();
    server = await startServer({ auth: "token", authSecretFile: file, loops: 1, authTimeoutMs: 800 });
    const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port, token: tokenOf(secret) });
    await Bun.sleep(1200); // past authTimeoutMs: an authenticated connection has no such deadline
    await served(conn, "before");
    writeFileSync(file, newSecret());
    server.proc.kill("SIGHUP");
    await eventually(() => server!.lines.some((l) => l.includes("event=reloaded")), 5000, "reload");
    expect(await conn.closedWithin(800 + 2000)).toBe(true);
  });
});

describe("frameTimeoutMs", () => {
  test("a frame trickled a byte at a time is cut at its deadline, though each byte resets the idle timeout", async () => {
    server = await startServer({ loops: 1, frameTimeoutMs: 500, idleTimeoutMs: 60_000 });
    const a = (await rawConnect(server.port, "127.0.0.2"))!;
    const started = Date.now();
    trickle(a.socket, 50);
    expect(await closedWithin(a.closed, 500 + 2000)).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(450);
    await server.line("event=frame_timeout");
    // A client that is merely slow between whole frames is not cut by it.
    const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
    await served(conn, "a");
    await Bun.sleep(700); // longer than frameTimeoutMs between frames: allowed
    await served(conn, "b");
    conn.close();
  });
});
