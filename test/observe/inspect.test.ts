// Proves that the default configuration is inspectable as the README says: under `bun --inspect`
// a breakpoint in connection.ts pauses the server during an upload (the exchanges run on the main
// thread, where the debugger is), and `bun --cpu-prof` of a default server under load shows the
// exchange functions among its hottest; a /debug/profile request meanwhile is refused without
// disturbing that profile.
import { afterEach, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { runLoad } from "../../src/client/load";
import { uploadExchange } from "../../src/client/exchanges";
import { WireConn } from "../../src/client/wire-conn";
import { topOf, type CpuProfile } from "../../src/observe/profile-top";
import { payload } from "../helpers/data";
import { freePort, startServer, tempDir, type TestServer } from "../helpers/server";

let server: TestServer | null = null;
afterEach(async () => {
  await server?.stop();
  server = null;
});

/** A minimal client of Bun's inspector (the WebKit inspector protocol over a WebSocket). */
class Inspector {
  private nextId = 0;
  private readonly replies = new Map<number, (result: Record<string, unknown>) => void>();
  private readonly listeners: ((method: string, params: Record<string, unknown>) => void)[] = [];
  private constructor(private readonly ws: WebSocket) {
    ws.onmessage = (e) => {
      const m = JSON.parse(String(e.data)) as { id?: number; result?: Record<string, unknown>; method?: string; params?: Record<string, unknown> };
      if (m.id !== undefined) this.replies.get(m.id)?.(m.result ?? {});
      else if (m.method !== undefined) for (const l of this.listeners) l(m.method, m.params ?? {});
    };
  }
  static open(url: string): Promise<Inspector> {
    const ws = new WebSocket(url);
    return new Promise((resolve, reject) => {
      ws.onopen = () => resolve(new Inspector(ws));
      ws.onerror = () => reject(new Error(`cannot reach the inspector at ${url}`));
    });
  }
  call(method: string, params: object = {}): Promise<Record<string, unknown>> {
    const id = ++this.nextId;
    return new Promise((resolve) => {
      this.replies.set(id, resolve);
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }
  on(listener: (method: string, params: Record<string, unknown>) => void): void {
    this.listeners.push(listener);
  }
  close(): void {
    this.ws.close();
  }
}

test("bun --inspect with the default config: a breakpoint in connection.ts pauses the server during an upload", async () => {
  const inspectPort = freePort();
  server = await startServer({}, {}, [], undefined, { script: "src/main.ts", serveArg: true, bunArgs: [`--inspect=127.0.0.1:${inspectPort}`] });
  expect(await server.line("event=inspector")).toContain("main thread");
  const url = (await server.line(new RegExp(`ws://127\\.0\\.0\\.1:${inspectPort}/`))).trim();
  const inspector = await Inspector.open(url.slice(url.indexOf("ws://")));
  let connectionScript = "";
  let connectionUrl = "";
  const paused: string[] = [];
  inspector.on((method, params) => {
    if (method === "Debugger.scriptParsed" && String(params.url).endsWith("/src/server/connection.ts")) {
      connectionScript = String(params.scriptId);
      connectionUrl = String(params.url);
    }
    if (method === "Debugger.paused") {
      const frame = (params.callFrames as { functionName: string }[])[0]!;
      paused.push(frame.functionName);
      void inspector.call("Debugger.resume");
    }
  });
  await inspector.call("Debugger.enable");
  await inspector.call("Debugger.setBreakpointsActive", { active: true });
  expect(connectionScript).not.toBe("");
  // The breakpoint on onData's first line, as DevTools sets it: in the transpiled script's lines
  // (DevTools maps them from the TypeScript through the script's source map).
  const source = String((await inspector.call("Debugger.getScriptSource", { scriptId: connectionScript })).scriptSource);
  const line = source.split("\n").findIndex((l) => /^\s*onData\(chunk\)/.test(l));
  expect(line).toBeGreaterThan(0);
  const set = await inspector.call("Debugger.setBreakpointByUrl", { lineNumber: line + 1, url: connectionUrl });
  expect((set.locations as unknown[]).length).toBe(1);
  const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
  await uploadExchange(conn, "paused", 5000, (c) => c.write(payload(5000, 1)));
  conn.close();
  expect(paused.length).toBeGreaterThan(0);
  expect(new Set(paused)).toEqual(new Set(["onData"]));
  inspector.close();
});

test("bun --cpu-prof of a default server under load shows the exchange functions among its hottest; /debug/profile meanwhile is refused and disturbs nothing", async () => {
  const dir = tempDir("cpu-prof");
  const adminPort = freePort();
  server = await startServer({ adminPort }, {}, [], undefined, { script: "src/main.ts", serveArg: true, bunArgs: ["--cpu-prof", `--cpu-prof-dir=${dir}`] });
  const r = await runLoad({ host: "127.0.0.1", port: server.port, op: "upload", connections: 20, count: 3000, size: 5 * 1024 });
  expect(r.ok).toBe(3000);
  const refused = await fetch(`http://127.0.0.1:${adminPort}/debug/profile?seconds=1`);
  expect(refused.status).toBe(409);
  expect(await refused.text()).toContain("bun --cpu-prof holds the profiler");
  await runLoad({ host: "127.0.0.1", port: server.port, op: "download", connections: 20, count: 3000, size: 5 * 1024 });
  expect(await server.stop()).toBe(0);
  server = null;
  const files = readdirSync(dir).filter((f) => f.endsWith(".cpuprofile"));
  expect(files.length).toBe(1);
  const profile = JSON.parse(readFileSync(join(dir, files[0]!), "utf8")) as CpuProfile;
  // By total time (what a function and its callees took): the connection's entry, the codec and the
  // store are there, so the profile is of the exchanges, not of an idle coordinating thread.
  const ours = topOf(profile)
    .rows.filter((row) => row.name.includes(" src/"))
    .sort((a, b) => b.totalMs - a.totalMs);
  const top = ours.slice(0, 10).map((row) => row.name);
  expect(top.some((n) => n.startsWith("onData src/server/connection.ts"))).toBe(true);
  expect(top.some((n) => /src\/(storage|engine)\//.test(n))).toBe(true);
  // Samples go on after the refused /debug/profile: the downloads that came after it are in the profile.
  expect(ours.some((row) => /^(startDownload|openStreamed|onReaderOpen|startZeroCopyDownload) src\/server\/connection\.ts/.test(row.name) && row.totalMs > 0)).toBe(true);
  // The codec is sampled too (it is cheap: it ranks below the top ten by total time).
  expect(ours.some((row) => /src\/protocol\//.test(row.name) && row.totalMs > 0)).toBe(true);
}, 60_000);
