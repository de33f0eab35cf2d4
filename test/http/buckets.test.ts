// Buckets beyond fsgw, against a real server: CreateBucket and DeleteBucket (empty only; fsgw
// never), each bucket its own key space (the same key in two buckets holds two bodies; the TCP
// protocol, whose keys are fsgw's, and fsgw's listings see none of the others'), objects,
// listings, multipart and CopyObject across buckets; the AWS CLI's mb/rb; and scopes that name a
// bucket (an access key for one bucket reaches nothing else, a TCP token for another bucket reaches
// no protocol key).
import { afterEach, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Access, createAccessKey, createToken, newSecret } from "../../src/auth/token";
import { connect, ServerError } from "../../src/client/client";
import { ensurePackages } from "../../scripts/lib/debian";
import { payload, sha256 } from "../helpers/data";
import { freePort, startServer, tempDir, type TestServer } from "../helpers/server";

let server: TestServer | null = null;
afterEach(async () => {
  await server?.stop();
  server = null;
});

const AWS = "/usr/bin/aws";
const missingAws = ensurePackages(["awscli"], [AWS]);

async function open(fields: Record<string, unknown> = {}) {
  const httpPort = freePort();
  server = await startServer({ httpPort, ...fields });
  return { endpoint: `http://127.0.0.1:${httpPort}`, server };
}

const s3 = (endpoint: string, bucket: string, keys = { accessKeyId: "any", secretAccessKey: "any" }) => new Bun.S3Client({ endpoint, bucket, region: "us-east-1", ...keys });
const code = async (p: Promise<unknown>) => {
  try {
    await p;
    return "ok";
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
};
const bytesOf = async (c: Bun.S3Client, key: string) => new Uint8Array(await c.file(key).arrayBuffer());

test("CreateBucket, its own key space, listings that do not mix, DeleteBucket only when empty; the TCP protocol sees fsgw's keys only", async () => {
  const { endpoint, server } = await open();
  const put = (path: string, body?: Uint8Array) => fetch(`${endpoint}${path}`, { method: "PUT", body });
  expect((await put("/photos")).status).toBe(200);
  expect((await put("/photos")).status).toBe(200); // again: S3 (us-east-1) answers 200 to its owner
  expect(await (await put("/Bad_Name")).text()).toContain("<Code>InvalidBucketName</Code>");
  expect(await (await fetch(`${endpoint}/nosuch/x`)).text()).toContain("<Code>NoSuchBucket</Code>");
  const listed = await (await fetch(`${endpoint}/`)).text();
  expect(listed).toContain("<Name>fsgw</Name>");
  expect(listed).toContain("<Name>photos</Name>");

  // The same key in both buckets: two bodies.
  const photos = s3(endpoint, "photos");
  const fsgw = s3(endpoint, "fsgw");
  const a = payload(70_000, 1);
  const b = payload(3000, 2);
  await photos.write("cat/1.jpg", a);
  await fsgw.write("cat/1.jpg", b);
  expect(sha256(await bytesOf(photos, "cat/1.jpg"))).toBe(sha256(a));
  expect(sha256(await bytesOf(fsgw, "cat/1.jpg"))).toBe(sha256(b));
  await photos.write("dog.jpg", b);
  expect((await photos.list({ prefix: "" })).contents?.map((c) => c.key).sort()).toEqual(["cat/1.jpg", "dog.jpg"]);
  expect((await photos.list({ prefix: "", delimiter: "/" })).commonPrefixes?.map((p) => p.prefix)).toEqual(["cat/"]);
  expect((await fsgw.list({ prefix: "" })).contents?.map((c) => c.key)).toEqual(["cat/1.jpg"]);
  expect(await fsgw.exists("dog.jpg")).toBe(false);

  // The protocol's LIST and exist see the fsgw bucket only.
  const tcp = connect({ port: server.port });
  const keys: string[] = [];
  for await (const page of tcp.list()) for (const e of page.entries) keys.push(e.key);
  expect(keys).toEqual(["cat/1.jpg"]);
  const tops: string[] = [];
  for await (const page of tcp.list({ delimiter: "/" })) tops.push(...page.prefixes, ...page.entries.map((e) => e.key));
  expect(tops).toEqual(["cat/"]);
  expect((await tcp.exist("cat/1.jpg")).size).toBe(b.length);
  tcp.close();

  // CopyObject across buckets, and a multipart upload into another bucket.
  const copied = await fetch(`${endpoint}/fsgw/from-photos.jpg`, { method: "PUT", headers: { "x-amz-copy-source": "/photos/cat/1.jpg" } });
  expect(copied.status).toBe(200);
  expect(sha256(await bytesOf(fsgw, "from-photos.jpg"))).toBe(sha256(a));
  const big = payload(11 * 1024 * 1024 + 5, 3);
  const writer = photos.file("big.bin").writer({ partSize: 5 * 1024 * 1024 });
  for (let at = 0; at < big.length; at += 1024 * 1024) writer.write(big.subarray(at, Math.min(at + 1024 * 1024, big.length)));
  await writer.end();
  expect(sha256(await bytesOf(photos, "big.bin"))).toBe(sha256(big));
  expect(await fsgw.exists("big.bin")).toBe(false);

  // DeleteBucket: not while it holds keys, never fsgw; then the bucket is gone.
  const del = (path: string) => fetch(`${endpoint}${path}`, { method: "DELETE" });
  expect(await (await del("/photos")).text()).toContain("<Code>BucketNotEmpty</Code>");
  expect(await (await del("/fsgw")).text()).toContain("<Code>BucketNotEmpty</Code>");
  for (const k of ["cat/1.jpg", "dog.jpg", "big.bin"]) await photos.delete(k);
  expect((await del("/photos")).status).toBe(204);
  expect(await code(photos.write("x", "y"))).toBe("NoSuchBucket");
  expect(await (await fetch(`${endpoint}/`)).text()).not.toContain("<Name>photos</Name>");
  expect(sha256(await bytesOf(fsgw, "cat/1.jpg"))).toBe(sha256(b));
});

test("bucketsMax bounds CreateBucket; a key's length counts its bucket's name", async () => {
  const { endpoint } = await open({ bucketsMax: 2 });
  for (const name of ["b-one", "b-two"]) expect((await fetch(`${endpoint}/${name}`, { method: "PUT" })).status).toBe(200);
  expect(await (await fetch(`${endpoint}/b-three`, { method: "PUT" })).text()).toContain("<Code>TooManyBuckets</Code>");
  // 255 bytes in all: a key of bucket b-one may have 255 - 2 - 5 bytes.
  expect((await fetch(`${endpoint}/b-one/${"k".repeat(248)}`, { method: "PUT", body: "x" })).status).toBe(200);
  expect(await (await fetch(`${endpoint}/b-one/${"k".repeat(249)}`, { method: "PUT", body: "x" })).text()).toContain("<Code>KeyTooLongError</Code>");
});

test("scopes that name a bucket: an access key for one bucket reaches nothing else; a TCP token for another bucket reaches no protocol key", async () => {
  const dir = tempDir("bucket-scopes");
  const secret = newSecret();
  writeFileSync(join(dir, "secret"), secret);
  const { endpoint, server } = await open({ auth: "token", authSecretFile: join(dir, "secret") });
  const bytes = new TextEncoder().encode(secret);
  const soon = Date.now() + 60_000;
  const admin = createAccessKey(bytes, { id: "admin", access: Access.READ | Access.WRITE | Access.DELETE, prefix: "", expiresAtMs: soon, bucket: "*" });
  const photosOnly = createAccessKey(bytes, { id: "p", access: Access.READ | Access.WRITE, prefix: "", expiresAtMs: soon, bucket: "photos" });
  const fsgwOnly = createAccessKey(bytes, { id: "f", access: Access.READ | Access.WRITE | Access.DELETE, prefix: "", expiresAtMs: soon });
  // Creating a bucket needs a scope that reaches it (every bucket here); fsgw's cannot.
  expect(await code(s3(endpoint, "photos", admin).write("first", "1"))).toBe("NoSuchBucket");
  const created = await fetch(`${endpoint}/photos`, { method: "PUT", headers: { authorization: `Bearer ${createToken(bytes, { id: "a", access: Access.WRITE, prefix: "", expiresAtMs: soon, bucket: "*" })}` } });
  expect(created.status).toBe(200);
  const denied = await fetch(`${endpoint}/other`, { method: "PUT", headers: { authorization: `Bearer ${createToken(bytes, { id: "b", access: Access.WRITE, prefix: "", expiresAtMs: soon })}` } });
  expect(denied.status).toBe(403);

  expect(await code(s3(endpoint, "photos", photosOnly).write("p.txt", "hello"))).toBe("ok");
  expect(await code(s3(endpoint, "fsgw", photosOnly).write("p.txt", "hello"))).toBe("AccessDenied");
  expect(await code(s3(endpoint, "photos", fsgwOnly).file("p.txt").text())).toBe("AccessDenied");
  expect(await s3(endpoint, "photos", admin).file("p.txt").text()).toBe("hello");
  // ListBuckets shows what the scope reaches.
  const bucketsFor = (bucket: string) => fetch(`${endpoint}/`, { headers: { authorization: `Bearer ${createToken(bytes, { id: "l", access: Access.READ, prefix: "", expiresAtMs: soon, bucket })}` } }).then((r) => r.text());
  expect(await bucketsFor("photos")).not.toContain("<Name>fsgw</Name>");
  expect(await bucketsFor("photos")).toContain("<Name>photos</Name>");
  expect(await bucketsFor("*")).toContain("<Name>fsgw</Name>");

  // TCP: a token for another bucket reaches no protocol key; one for fsgw (or every bucket) does.
  const tcpWith = (bucket: string | undefined) => connect({ port: server.port, token: createToken(bytes, { id: "t", access: Access.READ | Access.WRITE, prefix: "", expiresAtMs: soon, ...(bucket === undefined ? {} : { bucket }) }) });
  const photosTcp = tcpWith("photos");
  expect(await photosTcp.upload("k", new Uint8Array(3)).catch((e) => (e instanceof ServerError ? e.text : String(e)))).toContain("forbidden");
  photosTcp.close();
  for (const bucket of [undefined, "*"]) {
    const c = tcpWith(bucket);
    await c.upload("k", new Uint8Array(3));
    expect((await c.exist("k")).size).toBe(3);
    c.close();
  }
});

test.skipIf(missingAws !== null)(`the AWS CLI: mb, cp into the new bucket, ls of the buckets, rb (${missingAws ?? "installed"})`, async () => {
  const { endpoint } = await open();
  const home = tempDir("aws-buckets");
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home, AWS_ACCESS_KEY_ID: "any", AWS_SECRET_ACCESS_KEY: "any", AWS_DEFAULT_REGION: "us-east-1", AWS_EC2_METADATA_DISABLED: "true" };
  const aws = (...args: string[]) => {
    const r = Bun.spawnSync([AWS, "--endpoint-url", endpoint, ...args], { env, stdout: "pipe", stderr: "pipe" });
    return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
  };
  expect(aws("s3", "mb", "s3://team-docs").code).toBe(0);
  writeFileSync(join(home, "a.txt"), payload(5000, 9));
  expect(aws("s3", "cp", join(home, "a.txt"), "s3://team-docs/a.txt").code).toBe(0);
  const ls = aws("s3", "ls");
  expect(ls.out).toContain("team-docs");
  expect(ls.out).toContain("fsgw");
  expect(aws("s3", "ls", "s3://team-docs/").out).toContain("a.txt");
  expect(aws("s3", "rb", "s3://team-docs").code).not.toBe(0); // not empty
  expect(aws("s3", "rb", "--force", "s3://team-docs").code).toBe(0);
  expect(aws("s3", "ls").out).not.toContain("team-docs");
}, 60_000);
