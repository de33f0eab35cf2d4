// Proves that the admin endpoint holds no connection it need not (src/observe/admin-http.ts): every
// answer closes its connection, a request must arrive within adminTimeoutMs, connections are capped
// by adminConnectionsMax, a profile extends only its own deadline and stops when its client goes,
// and the protocol port serves while the admin port is flooded.
import { afterEach, expect, test } from "bun:test";
import { WireConn } from "../../src/client/wire-conn";
import { downloadExchange, uploadExchange } from "../../src/client/exchanges";
import { payload, sha256 } from "../helpers/data";
import { runClientCommand, type Io } from "../../src/cli/client-commands";
import { closedWithin, destroyRawSockets, rawConnect, type RawSocket } from "../helpers/raw-socket";
import { eventually, freePort, startServer, type TestServer } from "../helpers/server";

let server: TestServer | null = null;
afterEach(async () => {
  destroyRawSockets();
  await server?.stop();
  server = null;
});

type Raw = RawSocket;
const raw = (port: number) => rawConnect(port);

async function adminServer(fields: Record<string, number | string | boolean> = {}): Promise<{ server: TestServer; adminPort: number }> {
  const adminPort = freePort();
  server = await startServer({ adminPort, loops: 1, ...fields });
  return { server, adminPort };
}

test("every answer closes its connection: a keep-alive client holds nothing after /healthz, a 401 or a 404", async () => {
  const { adminPort } = await adminServer({ adminHost: "127.0.0.1", adminToken: "0123456789abcdef-token" });
  for (const path of ["/healthz", "/debug/stats", "/nope"]) {
    const c = (await raw(adminPort))!;
    c.socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n`);
    // Before the fix the server kept the connection open after answering, for ever (idleTimeout 0).
    expect(await closedWithin(c.closed, 2000)).toBe(true);
    expect(c.received()).toMatch(/^HTTP\/1\.1 (200|401|404) /);
    expect(c.received().toLowerCase()).toContain("connection: close");
  }
  // fetch (keep-alive by default) still works, request after request.
  for (let i = 0; i < 3; i++) expect((await fetch(`http://127.0.0.1:${adminPort}/healthz`)).status).toBe(200);
});

test("a connection that does not send its request within adminTimeoutMs is closed, trickling or silent", async () => {
  const { adminPort } = await adminServer({ adminTimeoutMs: 500 });
  const silent = (await raw(adminPort))!;
  const trickler = (await raw(adminPort))!;
  const head = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + "a".repeat(200);
  let i = 0;
  const timer = setInterval(() => trickler.socket.writable && trickler.socket.write(head[i++ % head.length]!), 50);
  try {
    expect(await closedWithin(silent.closed, 500 + 2000)).toBe(true);
    expect(await closedWithin(trickler.closed, 500 + 2000)).toBe(true);
  } finally {
    clearInterval(timer);
  }
});

test("past adminConnectionsMax a connection is closed at once; the protocol port serves throughout the flood", async () => {
  const { server, adminPort } = await adminServer({ adminConnectionsMax: 20, adminTimeoutMs: 60_000 });
  const held: Raw[] = [];
  for (let i = 0; i < 20; i++) held.push((await raw(adminPort))!);
  // One more: closed by the server at once, whether or not the client saw it open.
  const extra = await raw(adminPort);
  if (extra !== null) expect(await closedWithin(extra.closed, 2000)).toBe(true);
  for (const c of held) expect(await closedWithin(c.closed, 10)).toBe(false);
  // A flood of 500 more while a client of the protocol port uploads and downloads.
  const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
  const flood = (async () => {
    for (let i = 0; i < 500; i++) {
      const c = await raw(adminPort);
      if (c !== null) await closedWithin(c.closed, 2000);
    }
  })();
  for (let i = 0; i < 20; i++) {
    const body = payload(30_000, i);
    await uploadExchange(conn, `during-${i}`, body.length, (w) => w.write(body));
    const parts: Uint8Array[] = [];
    await downloadExchange(conn, `during-${i}`, (p) => void parts.push(p.slice()));
    expect(sha256(Buffer.concat(parts))).toBe(sha256(body));
  }
  await flood;
  conn.close();
  // The held ones answer still; once they go, the endpoint answers again.
  held[0]!.socket.write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  await held[0]!.closed;
  expect(held[0]!.received()).toStartWith("HTTP/1.1 200");
  for (const c of held) c.socket.destroy();
  await eventually(() => server.lines.some((l) => l.includes("event=admin_connection_refused")), 2000, "a refusal logged");
  let status = 0;
  for (let attempt = 0; attempt < 100 && status !== 200; attempt++) status = await fetch(`http://127.0.0.1:${adminPort}/healthz`).then((r) => r.status, () => 0);
  expect(status).toBe(200);
});

test("a profile extends only its own deadline, and stops when its client goes away", async () => {
  const { adminPort } = await adminServer({ adminTimeoutMs: 500 });
  // A 2-second profile outlives the 0.5 s deadline and is answered.
  const r = await fetch(`http://127.0.0.1:${adminPort}/debug/profile?seconds=2&format=top`);
  expect(r.status).toBe(200);
  expect(await r.text()).toContain("the JavaScript thread");
  // A silent connection beside a running profile still meets its own deadline.
  const long = (await raw(adminPort))!;
  long.socket.write("GET /debug/profile?seconds=300 HTTP/1.1\r\nHost: x\r\n\r\n");
  const silent = (await raw(adminPort))!;
  expect(await closedWithin(silent.closed, 500 + 2000)).toBe(true);
  expect(await closedWithin(long.closed, 10)).toBe(false);
  // The 300-second profile's client goes away: it stops, and the next profile is not refused as busy.
  long.socket.destroy();
  await eventually(() => server!.lines.some((l) => l.includes("event=profile_cancelled")), 5000, "the profile stopped");
  const next = await fetch(`http://127.0.0.1:${adminPort}/debug/profile?seconds=1&format=top`);
  expect(next.status).toBe(200);
});

test("with several loops, an abandoned profile stops on every loop", async () => {
  const adminPort = freePort();
  server = await startServer({ adminPort, loops: 2 });
  const long = (await raw(adminPort))!;
  long.socket.write("GET /debug/profile?seconds=300 HTTP/1.1\r\nHost: x\r\n\r\n");
  await eventually(() => server!.lines.some((l) => l.includes("event=profile_started")), 5000, "the profile started");
  long.socket.destroy();
  await eventually(() => server!.lines.some((l) => l.includes("event=profile_cancelled")), 5000, "the profile stopped");
  const next = await fetch(`http://127.0.0.1:${adminPort}/debug/profile?seconds=1&format=top`);
  expect(next.status).toBe(200);
});

test("malformed and oversized requests are answered 400 and 431, and bodies are refused", async () => {
  const { adminPort } = await adminServer();
  const ask = async (bytes: string) => {
    const c = (await raw(adminPort))!;
    c.socket.write(bytes);
    await c.closed;
    return c.received();
  };
  expect(await ask("NONSENSE\r\n\r\n")).toStartWith("HTTP/1.1 400");
  expect(await ask("GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n")).toStartWith("HTTP/1.1 400");
  expect(await ask("POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")).toStartWith("HTTP/1.1 400");
  expect(await ask("GET /healthz HTTP/1.1\r\nX: " + "a".repeat(9000) + "\r\n\r\n")).toStartWith("HTTP/1.1 431");
  expect(await ask("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")).toStartWith("HTTP/1.1 200");
});

test("an fsgw client pointed at the admin port is answered 400 at once, and says it reached an HTTP port", async () => {
  const { adminPort } = await adminServer();
  const out: string[] = [];
  const io: Io = { stdout: (t) => void out.push(t), stderr: { isTTY: false, columns: 80, write: (t) => void out.push(t) }, stdoutBytes: () => {} };
  const t0 = performance.now();
  expect(await runClientCommand("stat", ["x", "--port", String(adminPort)], io)).toBe(3);
  // Before, the admin endpoint waited out adminTimeoutMs (10 s) for a request head that never came.
  expect(performance.now() - t0).toBeLessThan(5000);
  expect(out.join("")).toBe("fsgw stat: this is an HTTP port (the admin endpoint?), not fsgw's protocol port (default 9999)\n");
  // A request with obs-text in a header value is still HTTP.
  const c = (await raw(adminPort))!;
  c.socket.write(Buffer.from("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Name: caf\xe9\r\n\r\n", "latin1"));
  expect(await closedWithin(c.closed, 2000)).toBe(true);
  expect(c.received()).toMatch(/^HTTP\/1\.1 200 /);
});
