// Proves that a log line cannot be split or disguised by what a client sends: line and paragraph
// separators and invisible format characters in a key (allowed in keys) are escaped in the log.
import { afterEach, expect, test } from "bun:test";
import { Logger } from "../src/log";
import { existExchange } from "../src/client/exchanges";
import { WireConn } from "../src/client/wire-conn";
import { startServer, type TestServer } from "./helpers/server";

let server: TestServer | null = null;
afterEach(async () => {
  await server?.stop();
  server = null;
});

const HIDDEN = ["\u2028", "\u2029", "\u0085", "\u200b", "\u202e", "\u2066", "\ufeff"];

test("line separators and format characters in a value are escaped as \\uXXXX", () => {
  const lines: string[] = [];
  const log = new Logger("info", (l) => lines.push(l));
  log.info("e", { key: `a${HIDDEN.join("b")}c`, plain: "k-1/x.y" });
  expect(lines.length).toBe(1);
  for (const c of HIDDEN) expect(lines[0]).not.toContain(c);
  expect(lines[0]).toContain("\\u2028b\\u2029b\\u0085b\\u200bb\\u202eb\\u2066b\\ufeff");
  expect(lines[0]).toEndWith("plain=k-1/x.y");
});

test("a key with U+2028 reaches the server's log escaped, on one line", async () => {
  server = await startServer({ logLevel: "debug", loops: 1 });
  const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
  const key = "evil\u2028time=2026-01-01 level=error event=forged";
  await existExchange(conn, key).catch(() => {});
  conn.close();
  const line = await server.line(/event=exist_failed|event=exchange .*op=exist/);
  expect(line).toContain("evil\\u2028time=2026-01-01");
  expect(line).not.toContain("\u2028");
  expect(server.lines.some((l) => l.startsWith("time=2026-01-01"))).toBe(false);
});
