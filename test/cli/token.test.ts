// `fsgw token create | secret`: a token made by the command is one the server accepts, with the
// scope asked for; mistakes are usage errors that say what is wrong.
import { expect, test } from "bun:test";
import { createHmac } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Access, SECRET_BYTES_MIN, scopeOfAccessKey, secretAccessKeyOf, verifyToken } from "../../src/auth/token";
import { runTokenCommand } from "../../src/cli/token-command";
import type { Io } from "../../src/cli/client-commands";
import { tempDir } from "../helpers/server";

function run(argv: string[]): { code: number; out: string; err: string } {
  let out = "";
  let err = "";
  const io: Io = { stdout: (t) => void (out += t), stderr: { isTTY: false, columns: 80, write: (t) => void (err += t) }, stdoutBytes: () => {} };
  const code = runTokenCommand(argv, io);
  return { code, out, err };
}

test("token secret makes a fresh secret long enough; token create signs the scope asked for with it", () => {
  const a = run(["secret"]);
  const b = run(["secret"]);
  expect(a.code).toBe(0);
  expect(a.out.trim().length).toBeGreaterThanOrEqual(SECRET_BYTES_MIN);
  expect(a.out).not.toBe(b.out);
  const file = join(tempDir("token-cli"), "secret");
  writeFileSync(file, a.out);
  const before = Date.now();
  const made = run(["create", "--ops", "read,delete", "--prefix", "photos-", "--ttl", "2h", "--id", "alice", "--secret-file", file]);
  expect(made.code).toBe(0);
  const v = verifyToken(made.out.trim(), [new TextEncoder().encode(a.out.trim())]);
  if (!v.ok) throw new Error(v.reason);
  expect(v.scope).toMatchObject({ id: "alice", access: Access.READ | Access.DELETE, prefix: "photos-" });
  expect(v.scope.expiresAtMs).toBeGreaterThan(before + 2 * 3600_000 - 2000);
  expect(v.scope.expiresAtMs).toBeLessThan(before + 2 * 3600_000 + 2000);
  // The secret can come from a server config file too.
  const config = join(tempDir("token-cli"), "fsgw.json");
  writeFileSync(config, JSON.stringify({ auth: "token", authSecretFile: file }));
  expect(run(["create", "--ops", "write", "--config", config]).code).toBe(0);
});

test("mistakes are usage errors (2) or local file problems (4), with the reason", () => {
  const file = join(tempDir("token-cli"), "secret");
  writeFileSync(file, "x".repeat(40));
  expect(run(["create", "--secret-file", file])).toMatchObject({ code: 2, err: expect.stringContaining("--ops is required") });
  expect(run(["create", "--ops", "read,fly", "--secret-file", file])).toMatchObject({ code: 2, err: expect.stringContaining('unknown operation "fly"') });
  expect(run(["create", "--ops", "read", "--ttl", "soon", "--secret-file", file])).toMatchObject({ code: 2, err: expect.stringContaining("bad --ttl") });
  expect(run(["create", "--ops", "read", "--secret-file", "/nonexistent/secret"])).toMatchObject({ code: 4, err: expect.stringContaining("cannot read the secret file") });
  const short = join(tempDir("token-cli"), "short");
  writeFileSync(short, "tooshort");
  expect(run(["create", "--ops", "read", "--secret-file", short])).toMatchObject({ code: 4, err: expect.stringContaining("at least 32 bytes") });
  expect(run(["revoke"])).toMatchObject({ code: 2, err: expect.stringContaining("unknown token command") });
  expect(run([]).code).toBe(2);
  expect(run(["--help"]).out).toContain("fsgw token create --ops");
});

test("a prefix that does not end in '/' or '-' is made, with a warning that it also grants longer names", () => {
  const file = join(tempDir("token-cli"), "secret");
  writeFileSync(file, "x".repeat(40));
  const loose = run(["create", "--ops", "read", "--prefix", "a", "--secret-file", file]);
  expect(loose.code).toBe(0);
  expect(loose.out.trim()).toStartWith("fsgw1.");
  expect(loose.err).toContain('warning: --prefix "a" also grants every key that merely starts with it');
  for (const prefix of ["photos/", "team-", ""]) {
    const clean = run(["create", "--ops", "read", ...(prefix === "" ? [] : ["--prefix", prefix]), "--secret-file", file]);
    expect([prefix, clean.code, clean.err]).toEqual([prefix, 0, ""]);
  }
});

test("a signed payload of another shape is refused as unreadable: extra or missing fields, wrong types, bounds", () => {
  const secret = new Uint8Array(32).fill(7);
  const signedToken = (payload: unknown) => {
    const signed = "fsgw1." + Buffer.from(typeof payload === "string" ? payload : JSON.stringify(payload)).toString("base64url");
    return `${signed}.${createHmac("sha256", secret).update(signed).digest("base64url")}`;
  };
  const good = { id: "ci", ops: ["read", "write"], prefix: "photos-", exp: 4_000_000_000 };
  expect(verifyToken(signedToken(good), [secret])).toEqual({ ok: true, scope: { id: "ci", access: Access.READ | Access.WRITE, prefix: "photos-", expiresAtMs: 4_000_000_000_000 } });
  const bad: unknown[] = [
    "not json",
    [good],
    null,
    { ...good, admin: true },
    { id: "ci", ops: ["read"], prefix: "" },
    { ...good, id: 7 },
    { ...good, id: "x".repeat(129) },
    { ...good, ops: [] },
    { ...good, ops: ["read", "write", "delete", "read"] },
    { ...good, ops: ["list"] },
    { ...good, ops: "read" },
    { ...good, prefix: "p".repeat(256) },
    { ...good, exp: 1.5 },
    { ...good, exp: 0 },
    { ...good, exp: "4000000000" },
  ];
  for (const payload of bad) expect([payload, verifyToken(signedToken(payload), [secret])]).toEqual([payload, { ok: false, reason: "signed but unreadable payload", id: "" }]);
});

test("token create --s3 prints an access key pair with the scope asked for, whose secret the server derives from its own", () => {
  const secret = run(["secret"]).out.trim();
  const file = join(tempDir("token-cli"), "secret");
  writeFileSync(file, secret);
  const made = run(["create", "--s3", "--ops", "read,write", "--prefix", "photos/", "--ttl", "1h", "--id", "bob", "--secret-file", file]);
  expect(made.code).toBe(0);
  const env = Object.fromEntries(made.out.trim().split("\n").map((l) => l.split("=", 2) as [string, string]));
  expect(Object.keys(env)).toEqual(["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]);
  expect(scopeOfAccessKey(env.AWS_ACCESS_KEY_ID!)).toMatchObject({ id: "bob", access: Access.READ | Access.WRITE, prefix: "photos/" });
  expect(secretAccessKeyOf(new TextEncoder().encode(secret), env.AWS_ACCESS_KEY_ID!)).toBe(env.AWS_SECRET_ACCESS_KEY!);
  const json = JSON.parse(run(["create", "--s3", "--ops", "read", "--secret-file", file, "--json"]).out) as Record<string, unknown>;
  expect(Object.keys(json).sort()).toEqual(["accessKeyId", "bucket", "expiresAt", "id", "ops", "prefix", "secretAccessKey"]);
  expect(json.bucket).toBe("fsgw");
  // --bucket names another bucket (or * for all): carried in the key id; a bad name is a usage error.
  const other = JSON.parse(run(["create", "--s3", "--ops", "read", "--bucket", "photos", "--secret-file", file, "--json"]).out) as { accessKeyId: string };
  expect(scopeOfAccessKey(other.accessKeyId)).toMatchObject({ bucket: "photos" });
  expect(run(["create", "--s3", "--ops", "read", "--bucket", "Bad_Name", "--secret-file", file]).code).toBe(2);
});
