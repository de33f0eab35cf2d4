// LIST against a real server (two event loops by default, sharing one index): byte-wise order,
// prefixes, delimiters and common prefixes, pages and where they continue, read-your-writes across
// connections, partial uploads never listed, every key present throughout a listing listed exactly
// once while others come and go, the index agreeing with the files after a kill -9 in the middle
// of an upload storm, token scopes, and `fsgw ls`.
import { afterEach, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { connect, ServerError, type ListedEntry } from "../../src/client/client";
import { WireConn } from "../../src/client/wire-conn";
import { Msg, Op } from "../../src/protocol/message";
import { Access, createToken, newSecret } from "../../src/auth/token";
import { root } from "../../src/ffi/build";
import { payload, sha256 } from "../helpers/data";
import { volumeRecords } from "../helpers/fs";
import { startServer, tempDir, type TestServer } from "../helpers/server";
import { writeFileSync } from "node:fs";

let server: TestServer | null = null;
afterEach(async () => {
  await server?.stop();
  server = null;
});

const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

async function listAll(port: number, options: { prefix?: string; delimiter?: string; pageKeys?: number; token?: string } = {}) {
  const client = connect({ port, token: options.token });
  const entries: ListedEntry[] = [];
  const prefixes: string[] = [];
  let pages = 0;
  try {
    for await (const page of client.list(options)) {
      pages++;
      entries.push(...page.entries);
      prefixes.push(...page.prefixes);
    }
  } finally {
    client.close();
  }
  return { entries, prefixes, pages };
}

/** Keys of a data directory: its shard directories' file names (no temporary files) and its volumes' live records. */
function walk(dataDir: string): string[] {
  // Small bodies are records of volumes (the default): their live keys, by the test's own parser.
  const keys: string[] = existsSync(join(dataDir, "volumes")) ? [...volumeRecords(dataDir).keys()] : [];
  for (const shard of readdirSync(dataDir, { withFileTypes: true })) {
    if (!shard.isDirectory() || shard.name === "volumes") continue;
    for (const name of readdirSync(join(dataDir, shard.name))) if (!name.includes("\\")) keys.push(name.replaceAll("\x1f", "/"));
  }
  return keys.sort(byteOrder);
}

test("order, prefixes, delimiters, pages, sizes and digests: the listing is the store's", async () => {
  server = await startServer({});
  const client = connect({ port: server.port, poolSize: 8 });
  const keys = ["b", "a", "a/x", "a/b/c", "a/b/d", "ab", "é/1", "z/z/z", "A", "a-b", "a/b", "a/c/e/f"];
  for (let i = 0; i < 2500; i++) keys.push(`many/${String(i).padStart(4, "0")}`);
  const bodies = new Map(keys.map((k, i) => [k, payload(1 + (i % 300), i)]));
  await Promise.all(keys.map((k) => client.upload(k, bodies.get(k)!)));
  client.close();
  const sorted = [...keys].sort(byteOrder);

  const all = await listAll(server.port, { pageKeys: 1000 });
  expect(all.pages).toBe(3);
  expect(all.entries.map((e) => e.key)).toEqual(sorted);
  for (const e of all.entries) {
    expect([e.key, e.size, e.sha256]).toEqual([e.key, bodies.get(e.key)!.length, sha256(bodies.get(e.key)!)]);
    expect(Math.abs(e.mtime.getTime() - Date.now())).toBeLessThan(120_000);
  }
  // A prefix: byte for byte ("a" also takes "ab" and "a-b", as S3 does).
  expect((await listAll(server.port, { prefix: "a/b" })).entries.map((e) => e.key)).toEqual(["a/b", "a/b/c", "a/b/d"]);
  // A delimiter: deeper keys once, as their common prefix.
  const top = await listAll(server.port, { delimiter: "/" });
  expect(top.entries.map((e) => e.key)).toEqual(["A", "a", "a-b", "ab", "b"]);
  expect(top.prefixes).toEqual(["a/", "many/", "z/", "é/"]);
  const inA = await listAll(server.port, { prefix: "a/", delimiter: "/" });
  expect([inA.entries.map((e) => e.key), inA.prefixes]).toEqual([["a/b", "a/x"], ["a/b/", "a/c/"]]);
  // Small pages across common prefixes: each once, in order.
  const paged = await listAll(server.port, { delimiter: "/", pageKeys: 2 });
  expect([paged.entries.map((e) => e.key), paged.prefixes, paged.pages]).toEqual([top.entries.map((e) => e.key), top.prefixes, 5]);
  // startAfter, and an empty listing.
  const after = connect({ port: server.port });
  const first = await after.list({ prefix: "many/", startAfter: "many/2497" }).next();
  expect(first.value!.entries.map((e: ListedEntry) => e.key)).toEqual(["many/2498", "many/2499"]);
  expect((await after.list({ prefix: "nothing/" }).next()).value).toEqual({ entries: [], prefixes: [], next: "" });
  after.close();
  // Bad requests are answered, not dropped.
  const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
  for (const [request, text] of [
    [{ maxKeys: 1001 }, "invalid MaxKeys 1001: 1..1000 (0: 1000)"],
    [{ after: "X" }, 'invalid After: a previous page\'s NextAfter, or "K" followed by a key'],
  ] as const) {
    await conn.sendFrame({ operation: Op.LIST, key: "", ...request });
    const reply = await conn.readFrame();
    expect([reply.operation, reply.message]).toEqual([Op.LIST_RSP, text]);
  }
  conn.close();
});

test("read your writes on any connection (any loop); uploads in progress and parked partials are never listed", async () => {
  server = await startServer({ loops: 2 });
  const port = server.port;
  const writer = connect({ port });
  for (let i = 0; i < 20; i++) {
    // Each check on a fresh connection: with two loops the kernel spreads them.
    await writer.upload(`ryw/${i}`, payload(10, i));
    expect((await listAll(port, { prefix: "ryw/" })).entries.length).toBe(i + 1);
  }
  for (let i = 0; i < 20; i++) {
    await writer.delete(`ryw/${i}`);
    expect((await listAll(port, { prefix: "ryw/" })).entries.map((e) => e.key)).not.toContain(`ryw/${i}`);
  }
  writer.close();
  // An upload in progress (START answered, half the body sent), and a resumable one parked.
  const open = await WireConn.connect({ host: "127.0.0.1", port });
  await open.sendFrame({ operation: Op.UPLOAD, key: "partial/open", size: 3_000_000 });
  expect((await open.readFrame()).message).toBe(Msg.START);
  await open.write(payload(1_000_000, 1));
  const parked = await WireConn.connect({ host: "127.0.0.1", port });
  await parked.sendFrame({ operation: Op.UPLOAD, key: "partial/parked", size: 3_000_000, resumable: true });
  expect((await parked.readFrame()).message).toBe(Msg.START);
  await parked.write(payload(1_000_000, 2));
  parked.destroy();
  expect((await listAll(port, { prefix: "partial/" })).entries).toEqual([]);
  expect(walk(server.dataDir).filter((k) => k.startsWith("partial/"))).toEqual([]);
  open.destroy();
});

test("a key present throughout a listing appears exactly once while others are added and removed between pages", async () => {
  server = await startServer({});
  const port = server.port;
  const client = connect({ port, poolSize: 8 });
  const stable = Array.from({ length: 1500 }, (_, i) => `s/${String(i * 7).padStart(5, "0")}`);
  await Promise.all(stable.map((k) => client.upload(k, payload(3, 1))));
  const seen = new Map<string, number>();
  let churn = 0;
  for await (const page of client.list({ prefix: "s/", pageKeys: 100 })) {
    for (const e of page.entries) seen.set(e.key, (seen.get(e.key) ?? 0) + 1);
    // Between pages: keys appear before, among and after the ones still to come, and go again.
    const added = Array.from({ length: 20 }, (_, i) => `s/${String((churn * 37 + i * 511) % 10500).padStart(5, "0")}x`);
    churn++;
    await Promise.all(added.map((k) => client.upload(k, payload(2, 2))));
    await Promise.all(added.slice(0, 10).map((k) => client.delete(k)));
  }
  client.close();
  for (const k of stable) expect([k, seen.get(k)]).toEqual([k, 1]);
  expect([...seen.values()].every((n) => n === 1)).toBe(true);
});

test("after a kill -9 in the middle of an upload storm, the listing is the data directory's", async () => {
  server = await startServer({});
  const { dataDir, port } = server;
  const storm = Array.from({ length: 8 }, async (_, c) => {
    const client = connect({ port });
    try {
      for (let i = 0; ; i++) {
        await client.upload(`storm/${c}/${i}`, payload(i % 2 === 0 ? 2000 : 200_000, i));
        if (i % 5 === 4) await client.delete(`storm/${c}/${i - 2}`);
      }
    } catch {
      // the server went away
    } finally {
      client.close();
    }
  });
  await Bun.sleep(700);
  server.proc.kill("SIGKILL");
  await server.proc.exited;
  await Promise.all(storm);
  server = await startServer({ dataDir });
  const listed = (await listAll(server.port, { prefix: "storm/" })).entries.map((e) => e.key);
  expect(listed.length).toBeGreaterThan(20);
  expect(listed).toEqual(walk(dataDir).filter((k) => k.startsWith("storm/")));
  expect(server.lines.join("\n")).toMatch(/event=index_ready keys=\d+/);
});

test("with tokens: listing needs read, within the token's prefix, and shows nothing outside it", async () => {
  const dir = tempDir("list-auth");
  const secret = newSecret();
  writeFileSync(join(dir, "secret"), secret);
  server = await startServer({ auth: "token", authSecretFile: join(dir, "secret") });
  const mint = (access: number, prefix: string) => createToken(new TextEncoder().encode(secret), { id: "t", access, prefix, expiresAtMs: Date.now() + 60_000 });
  const writer = connect({ port: server.port, token: mint(Access.WRITE, "") });
  for (const k of ["p/1", "p/2", "q/1"]) await writer.upload(k, payload(5, 1));
  writer.close();
  const reader = mint(Access.READ, "p/");
  expect((await listAll(server.port, { prefix: "p/", token: reader })).entries.map((e) => e.key)).toEqual(["p/1", "p/2"]);
  for (const [prefix, token, text] of [
    ["", reader, "forbidden: key outside token scope"],
    ["q/", reader, "forbidden: key outside token scope"],
    ["p/", mint(Access.WRITE, "p/"), "forbidden: operation not allowed"],
  ] as const) {
    const err = await listAll(server.port, { prefix, token }).catch((e) => e);
    expect(err).toBeInstanceOf(ServerError);
    expect((err as ServerError).text).toBe(text);
  }
});

test("fsgw ls: names, -l, -d, --json, --limit, and exit codes", async () => {
  server = await startServer({});
  const client = connect({ port: server.port });
  for (const [k, n] of [["docs/a.txt", 5], ["docs/b/c.txt", 3000], ["top", 1]] as const) await client.upload(k, payload(n, 1));
  client.close();
  const ls = (...args: string[]) => {
    const r = Bun.spawnSync([process.execPath, join(root, "src/main.ts"), "ls", ...args, "--port", String(server!.port)]);
    return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
  };
  expect(ls()).toMatchObject({ code: 0, out: "docs/a.txt\ndocs/b/c.txt\ntop\n" });
  expect(ls("docs/", "-d", "/")).toMatchObject({ code: 0, out: "docs/a.txt\ndocs/b/\n" });
  const long = ls("docs/", "-l");
  expect(long.out).toMatch(/^ +5 B {2}\d{4}-\d\d-\d\d \d\d:\d\d {2}docs\/a\.txt\n +2\.9 KiB {2}\d{4}-\d\d-\d\d \d\d:\d\d {2}docs\/b\/c\.txt\n$/);
  const json = ls("--json", "-d", "/");
  expect(json.out.trim().split("\n").map((l) => JSON.parse(l))).toEqual([{ key: "top", size: 1, mtime: expect.any(String), sha256: sha256(payload(1, 1)) }, { prefix: "docs/" }]);
  expect(ls("--limit", "1").out).toBe("docs/a.txt\n");
  expect(ls("a", "b").code).toBe(2);
  expect(Bun.spawnSync([process.execPath, join(root, "src/main.ts"), "ls", "--port", "1"]).exitCode).toBe(3);
});
