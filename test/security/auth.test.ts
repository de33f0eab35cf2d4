// Scoped access tokens (auth "token") against a real server process: what gets in, what is refused
// and with which text, that a refusal touches nothing, secret rotation, per-address throttling,
// and the admin endpoint's bearer token.
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Access, createToken, newSecret, verifyToken, type TokenScope } from "../../src/auth/token";
import { authExchange, benchExchange, deleteExchange, downloadExchange, existExchange, ServerError, uploadExchange } from "../../src/client/exchanges";
import { WireConn } from "../../src/client/wire-conn";
import { connect } from "../../src/client/client";
import { Msg, Op } from "../../src/protocol/message";
import { payload, sha256 } from "../helpers/data";
import { storedKeys } from "../helpers/fs";
import { eventually, freePort, startServer, tempDir, type TestServer } from "../helpers/server";

let server: TestServer | null = null;
afterEach(async () => {
  await server?.stop();
  server = null;
});

const enc = (s: string) => new TextEncoder().encode(s);
/** The base64url character after `c`: the 43rd character of a signature carries 2 unused low bits. */
const nextInAlphabet = (c: string) => {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  return alphabet[(alphabet.indexOf(c) + 1) % 64]!;
};
const HOUR = 3600_000;
function scope(over: Partial<TokenScope> = {}): TokenScope {
  return { id: "test", access: Access.READ | Access.WRITE | Access.DELETE, prefix: "", expiresAtMs: Date.now() + HOUR, ...over };
}

interface Secrets {
  dir: string;
  current: string;
  previous: string;
  currentFile: string;
  previousFile: string;
}
function secrets(): Secrets {
  const dir = tempDir("secrets");
  const s = { dir, current: newSecret(), previous: newSecret(), currentFile: join(dir, "secret"), previousFile: join(dir, "previous") };
  writeFileSync(s.currentFile, s.current + "\n");
  writeFileSync(s.previousFile, "");
  return s;
}

async function tokenServer(sec: Secrets, fields: Record<string, string | number | boolean> = {}): Promise<TestServer> {
  return startServer({ auth: "token", authSecretFile: sec.currentFile, authPreviousSecretFile: sec.previousFile, ...fields });
}

/** The reply text of one exchange of `op` on `key` (empty for a bench that was let through). */
async function replyOf(conn: WireConn, op: number, key: string, size = 0): Promise<string> {
  await conn.sendFrame({ operation: op, key, size });
  const reply = await conn.readFrame();
  expect(reply.operation).toBe(op === Op.UPLOAD ? Op.UPLOAD_RSP : op + 1);
  return reply.message;
}

describe("tokens", () => {
  test("a token is what its secret signed: tampering, truncation, another secret and garbage are refused", () => {
    const secret = enc(newSecret());
    const other = enc(newSecret());
    const token = createToken(secret, scope({ prefix: "photos-" }));
    const good = verifyToken(token, [secret]);
    expect(good.ok && good.scope.prefix === "photos-" && good.scope.access === 7).toBe(true);
    const [head, body, sig] = token.split(".") as [string, string, string];
    const widened = Buffer.from(JSON.stringify({ id: "test", ops: ["read", "write", "delete"], prefix: "", exp: 9_999_999_999 })).toString("base64url");
    const cases: [string, string][] = [
      ["another secret", createToken(other, scope())],
      ["a widened payload, old signature", `${head}.${widened}.${sig}`],
      ["a flipped signature byte", `${head}.${body}.${sig.slice(0, 5)}${sig[5] === "A" ? "B" : "A"}${sig.slice(6)}`],
      ["truncated", token.slice(0, token.length - 3)],
      ["no signature", `${head}.${body}`],
      ["empty", ""],
      ["garbage", "not-a-token"],
      ["too long", "fsgw1." + "a".repeat(5000) + ".b"],
      // Other spellings of the right signature: Node's base64url decoder would read each of these
      // as the same 32 bytes; a token must be the one canonical text.
      ["the signature with '=' padding", `${token}=`],
      ["the signature with a byte appended", `${token}A`],
      ["the signature with a stray character inside", `${head}.${body}.${sig.slice(0, 20)}*${sig.slice(20)}`],
      ["the signature with a non-ASCII character", `${token}\u0141`],
      ["the signature in standard base64", `${head}.${body}.${Buffer.from(sig, "base64url").toString("base64")}`],
      ["the last character's unused bits set", `${head}.${body}.${sig.slice(0, 42)}${nextInAlphabet(sig[42]!)}`],
    ];
    for (const [what, t] of cases) expect(verifyToken(t, [secret]).ok, what).toBe(false);
    // The previous secret (a rotation) is accepted beside the current one.
    expect(verifyToken(createToken(other, scope()), [secret, other]).ok).toBe(true);
  });

  test("without a token every v1 exchange is answered 'unauthorized' and touches nothing", async () => {
    const sec = secrets();
    server = await tokenServer(sec);
    const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
    expect(await replyOf(conn, Op.UPLOAD, "k1", 100)).toBe("unauthorized"); // no START: no body follows
    expect(await replyOf(conn, Op.DOWNLOAD, "k1")).toBe("unauthorized");
    expect(await replyOf(conn, Op.EXIST, "k1")).toBe("unauthorized");
    expect(await replyOf(conn, Op.DELETE, "k1")).toBe("unauthorized");
    expect(await replyOf(conn, Op.BENCH_MARK, "k1")).toBe("unauthorized");
    conn.close();
    expect(storedKeys(server.dataDir)).toEqual([]);
  });

  test("forged, tampered, truncated, expired and wrong-secret tokens get nothing; a good one gets its scope", async () => {
    const sec = secrets();
    server = await tokenServer(sec);
    const secret = enc(sec.current);
    const good = createToken(secret, scope());
    const [head, body, sig] = good.split(".") as [string, string, string];
    const bad: [string, string, string][] = [
      ["forged (another secret)", createToken(enc(newSecret()), scope()), "unauthorized"],
      ["tampered payload", `${head}.${Buffer.from(JSON.stringify({ id: "x", ops: ["delete"], prefix: "", exp: 9_999_999_999 })).toString("base64url")}.${sig}`, "unauthorized"],
      ["truncated", good.slice(0, -4), "unauthorized"],
      ["signature missing", `${head}.${body}`, "unauthorized"],
      ["expired", createToken(secret, scope({ expiresAtMs: Date.now() - 1000 })), "token expired"],
    ];
    const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
    for (const [what, token, text] of bad) {
      const err = await authExchange(conn, token).catch((e) => e);
      expect(err instanceof ServerError && err.text, what).toBe(text);
      expect(await replyOf(conn, Op.EXIST, "k"), `after ${what}`).toBe("unauthorized");
    }
    await authExchange(conn, good);
    expect(await replyOf(conn, Op.EXIST, "k")).toBe("no such key");
    conn.close();
  });

  test("each operation outside its scope is refused, and so is a key that only looks like it is under the prefix", async () => {
    const sec = secrets();
    server = await tokenServer(sec);
    const secret = enc(sec.current);
    const writer = await WireConn.connect({ host: "127.0.0.1", port: server.port, token: createToken(secret, scope({ access: Access.WRITE, prefix: "photos-" })) });
    const body = payload(70_000, 1);
    await uploadExchange(writer, "photos-1.jpg", body.length, (c) => c.write(body));
    for (const key of ["photos_1.jpg", "Photos-1.jpg", "photos", "photos\u2010x.jpg", "xphotos-1.jpg", "photos\u2011-1.jpg"]) {
      expect(await replyOf(writer, Op.UPLOAD, key, 10), key).toBe("forbidden: key outside token scope");
    }
    expect(await replyOf(writer, Op.DOWNLOAD, "photos-1.jpg")).toBe("forbidden: operation not allowed");
    expect(await replyOf(writer, Op.EXIST, "photos-1.jpg")).toBe("forbidden: operation not allowed");
    expect(await replyOf(writer, Op.DELETE, "photos-1.jpg")).toBe("forbidden: operation not allowed");
    expect(await replyOf(writer, Op.BENCH_MARK, "x")).toBe(""); // any valid token may measure the round trip
    writer.close();

    const reader = await WireConn.connect({ host: "127.0.0.1", port: server.port, token: createToken(secret, scope({ access: Access.READ, prefix: "photos-" })) });
    const parts: Uint8Array[] = [];
    await downloadExchange(reader, "photos-1.jpg", (p) => void parts.push(p.slice()));
    expect(sha256(Buffer.concat(parts))).toBe(sha256(body));
    expect((await existExchange(reader, "photos-1.jpg")).size).toBe(body.length);
    expect(await replyOf(reader, Op.UPLOAD, "photos-2.jpg", 10)).toBe("forbidden: operation not allowed");
    expect(await replyOf(reader, Op.DELETE, "photos-1.jpg")).toBe("forbidden: operation not allowed");
    expect(await replyOf(reader, Op.DOWNLOAD, "secret-1.jpg")).toBe("forbidden: key outside token scope");
    reader.close();

    const deleter = await WireConn.connect({ host: "127.0.0.1", port: server.port, token: createToken(secret, scope({ access: Access.DELETE, prefix: "photos-" })) });
    expect(await replyOf(deleter, Op.DELETE, "other")).toBe("forbidden: key outside token scope");
    await deleteExchange(deleter, "photos-1.jpg");
    deleter.close();
    expect(storedKeys(server.dataDir)).toEqual([]);
  });

  test("a token that expires mid-connection stops working at its expiry", async () => {
    const sec = secrets();
    server = await tokenServer(sec);
    const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port, token: createToken(enc(sec.current), scope({ expiresAtMs: Date.now() + 1500 })) });
    expect(await replyOf(conn, Op.EXIST, "k")).toBe("no such key");
    await Bun.sleep(1600);
    expect(await replyOf(conn, Op.EXIST, "k")).toBe("token expired");
    conn.close();
  });

  test("secret rotation: tokens of the previous secret work while it is configured, and not after (SIGHUP)", async () => {
    const sec = secrets();
    const old = sec.current;
    const oldToken = createToken(enc(old), scope());
    server = await tokenServer(sec);
    expect((await WireConn.connect({ host: "127.0.0.1", port: server.port, token: oldToken })).isClosed).toBe(false);
    // Step 1: a new secret; the old one moves to the previous-secret file.
    const fresh = newSecret();
    writeFileSync(sec.currentFile, fresh);
    writeFileSync(sec.previousFile, old);
    server.proc.kill("SIGHUP");
    await eventually(() => server!.lines.some((l) => l.includes("event=reloaded") && l.includes("tokenSecrets=2")), 5000, "reload");
    const both = [oldToken, createToken(enc(fresh), scope())];
    for (const token of both) (await WireConn.connect({ host: "127.0.0.1", port: server.port, token })).close();
    // Step 2: the previous secret is dropped: its tokens are refused, the new ones still work.
    writeFileSync(sec.previousFile, "");
    server.proc.kill("SIGHUP");
    await eventually(() => server!.lines.some((l) => l.includes("event=reloaded") && l.includes("tokenSecrets=1")), 5000, "second reload");
    const err = await WireConn.connect({ host: "127.0.0.1", port: server.port, token: oldToken }).catch((e) => e);
    expect(err instanceof ServerError && err.text).toBe("unauthorized");
    (await WireConn.connect({ host: "127.0.0.1", port: server.port, token: both[1] })).close();
    // A secret file that cannot be read changes nothing.
    writeFileSync(sec.currentFile, "short");
    server.proc.kill("SIGHUP");
    await eventually(() => server!.lines.some((l) => l.includes("event=reload_failed")), 5000, "failed reload");
    (await WireConn.connect({ host: "127.0.0.1", port: server.port, token: both[1] })).close();
  });

  for (const loops of [1, 2]) {
    test(`a new secret revokes the old tokens on open connections too, at their next exchange (${loops} loop${loops > 1 ? "s" : ""})`, async () => {
      const sec = secrets();
      server = await tokenServer(sec, { loops });
      const oldToken = createToken(enc(sec.current), scope({ id: "old" }));
      // Several connections, so that with two loops each loop holds some.
      const conns = await Promise.all(Array.from({ length: 6 }, () => WireConn.connect({ host: "127.0.0.1", port: server!.port, token: oldToken })));
      for (const [i, conn] of conns.entries()) await uploadExchange(conn, `before-${i}`, 10, (c) => c.write(payload(10, i)));
      // An upload in flight when the secret changes may finish: its scope was checked when it began.
      const inFlight = conns[0]!;
      await inFlight.sendFrame({ operation: Op.UPLOAD, key: "in-flight", size: 1000 });
      expect((await inFlight.readFrame()).message).toBe(Msg.START);
      const fresh = newSecret();
      writeFileSync(sec.currentFile, fresh);
      server.proc.kill("SIGHUP");
      await eventually(() => server!.lines.some((l) => l.includes("event=reloaded")), 5000, "reload");
      await inFlight.write(payload(1000, 9));
      expect((await inFlight.readFrame()).message).toBe(Msg.END);
      await inFlight.sendFrame({ operation: Op.UPLOAD, key: "in-flight", message: Msg.ACK });
      // Every connection of the old token is refused now, and touches nothing.
      for (const conn of conns) {
        expect(await replyOf(conn, Op.UPLOAD, "after", 10)).toBe("unauthorized");
        expect(await replyOf(conn, Op.DELETE, "before-1")).toBe("unauthorized");
        expect(await replyOf(conn, Op.EXIST, "before-1")).toBe("unauthorized");
      }
      expect(storedKeys(server.dataDir).sort()).toEqual(["before-0", "before-1", "before-2", "before-3", "before-4", "before-5", "in-flight"]);
      const reloaded = server.lines.filter((l) => l.includes("event=reloaded"));
      const revoked = reloaded.reduce((n, l) => n + Number(/connectionsRevoked=(\d+)/.exec(l)?.[1] ?? 0), 0);
      expect(revoked).toBe(conns.length);
      // A token of the new secret, presented on the same connection, gets it back in.
      const freshToken = createToken(enc(fresh), scope({ id: "fresh" }));
      await authExchange(conns[1]!, freshToken);
      await uploadExchange(conns[1]!, "after", 10, (c) => c.write(payload(10, 1)));
      for (const conn of conns) conn.close();
    });
  }

  test("a rotation that keeps the old secret as the previous one revokes nothing", async () => {
    const sec = secrets();
    server = await tokenServer(sec);
    const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port, token: createToken(enc(sec.current), scope()) });
    writeFileSync(sec.previousFile, sec.current);
    writeFileSync(sec.currentFile, newSecret());
    server.proc.kill("SIGHUP");
    await eventually(() => server!.lines.some((l) => l.includes("event=reloaded") && l.includes("tokenSecrets=2")), 5000, "reload");
    expect(server.lines.find((l) => l.includes("event=reloaded"))).toContain("connectionsRevoked=0");
    await uploadExchange(conn, "still", 10, (c) => c.write(payload(10, 2)));
    conn.close();
  });

  test("1,000 bad tokens from one address get it blocked, while a client already in is served throughout", async () => {
    const sec = secrets();
    const adminPort = freePort();
    server = await tokenServer(sec, { adminPort, authFailuresMax: 10, authBlockMs: 60_000 });
    const good = connect({ port: server.port, token: createToken(enc(sec.current), scope()), poolSize: 1 });
    const body = payload(5000, 7);
    await good.upload("good", body);
    let served = 0;
    let attacking = true;
    const goodLoop = (async () => {
      while (attacking) {
        expect(sha256(await good.download("good"))).toBe(sha256(body));
        served++;
      }
    })();
    let attempts = 0;
    let closedAtOnce = 0;
    while (attempts < 1000) {
      let conn: WireConn;
      try {
        conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
      } catch {
        closedAtOnce++;
        attempts++;
        continue;
      }
      try {
        for (let i = 0; i < 20 && attempts < 1000; i++) {
          attempts++;
          await authExchange(conn, `fsgw1.bad${attempts}.sig`);
        }
      } catch (e) {
        if (!(e instanceof ServerError)) closedAtOnce++; // closed: blocked
      }
      conn.close();
    }
    attacking = false;
    await goodLoop;
    good.close();
    expect(served).toBeGreaterThan(0);
    const stats = (await (await fetch(`http://127.0.0.1:${adminPort}/debug/stats`)).json()) as { security: Record<string, number> };
    // Only the first authFailuresMax were even checked; everything after met a closed door.
    expect(stats.security.authFailures).toBe(10);
    expect(stats.security.addressesBlocked).toBe(1);
    expect(closedAtOnce).toBeGreaterThan(0);
    expect(stats.security.refusedBlocked).toBeGreaterThan(0);
    await server.line("event=address_blocked");
    expect(server.lines.filter((l) => l.includes("event=address_blocked")).length).toBe(1);
    // Refused connections are logged at most once a second, not once each.
    expect(server.lines.filter((l) => l.includes("event=connection_refused_address")).length).toBeLessThan(20);
  });

  test("connectionsPerIpMax closes one connection too many at once; the others are served", async () => {
    server = await startServer({ connectionsPerIpMax: 3 });
    const conns = await Promise.all([1, 2, 3].map(() => WireConn.connect({ host: "127.0.0.1", port: server!.port })));
    // Served first, so that all three are counted before the fourth arrives (with several event
    // loops, connections made at once are accepted in no particular order).
    for (const c of conns) await benchExchange(c, "in");
    // Closed at once: it may even be reset before the client sees it open.
    const extra = await WireConn.connect({ host: "127.0.0.1", port: server.port }).then(
      (c) => c.closedWithin(2000),
      () => true,
    );
    expect(extra).toBe(true);
    for (const c of conns) await benchExchange(c, "x");
    conns[0]!.close();
    await conns[0]!.closed;
    // A place came free (once the server has seen the close): a new connection is served.
    let again: WireConn | null = null;
    for (let i = 0; i < 50 && again === null; i++) {
      const c = await WireConn.connect({ host: "127.0.0.1", port: server.port }).catch(() => null);
      if (c !== null && !(await c.closedWithin(100))) again = c;
    }
    expect(again).not.toBeNull();
    await benchExchange(again!, "y");
    for (const c of [...conns.slice(1), again!]) c.close();
  });
});

describe("admin endpoint", () => {
  test("bound beyond loopback it refuses to start without adminToken", async () => {
    const err = await startServer({ adminPort: freePort(), adminHost: "0.0.0.0" }).catch((e) => e);
    expect(String(err)).toContain("is not loopback: set adminToken");
  });

  test("with adminToken every path but /healthz needs the bearer token", async () => {
    const adminPort = freePort();
    const adminToken = "a-long-admin-token-" + newSecret();
    server = await startServer({ adminPort, adminHost: "0.0.0.0", adminToken });
    const url = (p: string) => `http://127.0.0.1:${adminPort}${p}`;
    expect((await fetch(url("/debug/stats"))).status).toBe(401);
    expect((await fetch(url("/metrics"), { headers: { authorization: "Bearer wrong" } })).status).toBe(401);
    expect((await fetch(url("/debug/stats"), { headers: { authorization: `Bearer ${adminToken}` } })).status).toBe(200);
    expect((await fetch(url("/healthz"))).status).toBe(200);
  });
});

test("auth 'none' answers AUTH with success, so a client that always sends a token still works", async () => {
  server = await startServer();
  const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port, token: "anything" });
  expect(await replyOf(conn, Op.EXIST, "k")).toBe("no such key");
  conn.close();
  expect(existsSync(server.dataDir)).toBe(true);
  expect(Msg.SUCCESS).toBe("success");
});
