// The HTTP front door (src/http/) against a real server: curl's uploads, downloads and ranges; the
// S3 API through Bun's own S3 client; TCP and HTTP seeing the same files; S3 error answers; bad
// heads refused and the connection closed; pipelined requests answered in order; bodies checked
// (Content-MD5, x-amz-checksum-sha256) before anything is stored; tokens as Bearer.
import { afterEach, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect } from "../../src/client/client";
import { Access, createToken, newSecret } from "../../src/auth/token";
import { payload, sha256 } from "../helpers/data";

const md5 = (b: Uint8Array) => new Bun.CryptoHasher("md5").update(b).digest("hex");
import { closedWithin, destroyRawSockets, rawConnect } from "../helpers/raw-socket";
import { freePort, startServer, tempDir, type TestServer } from "../helpers/server";

let server: TestServer | null = null;
afterEach(async () => {
  destroyRawSockets();
  await server?.stop();
  server = null;
});

const dir = tempDir("http");

async function httpServer(fields: Record<string, string | number | boolean> = {}): Promise<{ server: TestServer; base: string }> {
  const httpPort = freePort();
  server = await startServer({ httpPort, ...fields });
  expect(server.lines.join("\n")).toContain(`httpPort=${httpPort}`);
  return { server, base: `http://127.0.0.1:${httpPort}` };
}

function curl(args: string[]): { code: number; out: Buffer; err: string } {
  const r = Bun.spawnSync(["curl", "-sS", ...args], { stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, out: r.stdout, err: r.stderr.toString() };
}

test("curl: PUT (-T), GET, ranges (-r), HEAD (-I), DELETE; the TCP protocol sees the same files", async () => {
  const { server: s, base } = await httpServer();
  const big = payload(3_000_000, 1);
  const small = payload(1000, 2);
  writeFileSync(join(dir, "big"), big);
  writeFileSync(join(dir, "small"), small);
  expect(curl(["-f", "-T", join(dir, "big"), `${base}/fsgw/docs/big.bin`]).code).toBe(0);
  expect(curl(["-f", "-T", join(dir, "small"), `${base}/fsgw/docs/small.bin`]).code).toBe(0);
  expect(sha256(curl(["-f", `${base}/fsgw/docs/big.bin`]).out)).toBe(sha256(big));
  expect(sha256(curl(["-f", "-r", "1000-1999", `${base}/fsgw/docs/big.bin`]).out)).toBe(sha256(big.subarray(1000, 2000)));
  expect(sha256(curl(["-f", "-r", "-10", `${base}/fsgw/docs/small.bin`]).out)).toBe(sha256(small.subarray(990)));
  const head = curl(["-f", "-I", `${base}/fsgw/docs/big.bin`]).out.toString();
  expect(head).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
  expect(head).toContain("content-length: 3000000\r\n");
  // ETag: the body's MD5 (S3's, for a single-part object); the SHA-256 as S3's checksum header.
  expect(head).toContain(`etag: "${md5(big)}"\r\n`);
  expect(head).toContain(`x-amz-checksum-sha256: ${Buffer.from(sha256(big), "hex").toString("base64")}\r\n`);
  const modified = /last-modified: (.*)\r\n/.exec(head)?.[1];
  expect(Math.abs(Date.parse(modified!) - Date.now())).toBeLessThan(60_000);
  const smallHead = curl(["-f", "-I", `${base}/fsgw/docs/small.bin`]).out.toString();
  expect(smallHead).toContain(`etag: "${md5(small)}"\r\n`); // stored whole (putWhole), not streamed
  // The same file through the TCP protocol, and one the TCP protocol wrote, through HTTP: that
  // one has no MD5 (the TCP protocol does not compute one), and its ETag says so.
  const client = connect({ port: s.port });
  expect((await client.exist("docs/big.bin")).digest).toBe(sha256(big));
  await client.upload("from-tcp", payload(5000, 3));
  client.close();
  expect(sha256(curl(["-f", `${base}/fsgw/from-tcp`]).out)).toBe(sha256(payload(5000, 3)));
  expect(curl(["-f", "-I", `${base}/fsgw/from-tcp`]).out.toString()).toContain(`etag: "sha256-${sha256(payload(5000, 3))}"\r\n`);
  // Conditional GETs: by ETag and by date.
  const etag = `"${md5(big)}"`;
  expect(curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", `If-None-Match: ${etag}`, `${base}/fsgw/docs/big.bin`]).out.toString()).toBe("304");
  expect(curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", `If-Match: "nope"`, `${base}/fsgw/docs/big.bin`]).out.toString()).toBe("412");
  expect(curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", `If-Modified-Since: ${modified}`, `${base}/fsgw/docs/big.bin`]).out.toString()).toBe("304");
  const before = new Date(Date.parse(modified!) - 3600_000).toUTCString();
  expect(curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", `If-Modified-Since: ${before}`, `${base}/fsgw/docs/big.bin`]).out.toString()).toBe("200");
  expect(curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", `If-Unmodified-Since: ${before}`, `${base}/fsgw/docs/big.bin`]).out.toString()).toBe("412");
  expect(curl(["-f", "-X", "DELETE", `${base}/fsgw/docs/small.bin`]).code).toBe(0);
  const gone = curl([`${base}/fsgw/docs/small.bin`]).out.toString();
  expect(gone).toContain("<Code>NoSuchKey</Code>");
});

test("the S3 API through Bun.S3Client: put, get, stat, list with prefix and delimiter, exists, ranges, delete", async () => {
  const { base } = await httpServer();
  const s3 = new Bun.S3Client({ endpoint: base, bucket: "fsgw", accessKeyId: "any", secretAccessKey: "any", region: "us-east-1" });
  const big = payload(4 * 1024 * 1024, 4);
  await s3.write("photos/2026/a.jpg", "first");
  await s3.write("photos/2026/b.jpg", big);
  await s3.write("photos/top.txt", "top");
  expect(await s3.file("photos/2026/a.jpg").text()).toBe("first");
  expect(sha256(new Uint8Array(await s3.file("photos/2026/b.jpg").arrayBuffer()))).toBe(sha256(big));
  expect(sha256(new Uint8Array(await s3.file("photos/2026/b.jpg").slice(100, 200).arrayBuffer()))).toBe(sha256(big.subarray(100, 200)));
  expect((await s3.stat("photos/2026/b.jpg")).size).toBe(big.length);
  const listed = await s3.list({ prefix: "photos/", delimiter: "/" });
  expect(listed.contents?.map((c) => c.key)).toEqual(["photos/top.txt"]);
  expect(listed.commonPrefixes?.map((p) => p.prefix)).toEqual(["photos/2026/"]);
  const all = await s3.list({ prefix: "photos/", maxKeys: 2 });
  expect([all.contents?.map((c) => c.key), all.isTruncated]).toEqual([["photos/2026/a.jpg", "photos/2026/b.jpg"], true]);
  const rest = await s3.list({ prefix: "photos/", continuationToken: all.nextContinuationToken });
  expect(rest.contents?.map((c) => c.key)).toEqual(["photos/top.txt"]);
  expect(await s3.exists("photos/none")).toBe(false);
  // A HEAD's error answer has no body (it would be read as the next answer on this connection).
  const missing = await fetch(`${base}/fsgw/photos/none`, { method: "HEAD" });
  expect([missing.status, (await missing.arrayBuffer()).byteLength]).toEqual([404, 0]);
  await s3.delete("photos/2026/a.jpg");
  expect(await s3.exists("photos/2026/a.jpg")).toBe(false);
});

test("S3 errors: NoSuchBucket, InvalidRange, MethodNotAllowed, EntityTooLarge; BadDigest and a wrong x-amz-checksum-sha256 store nothing", async () => {
  const { base } = await httpServer({ uploadBytesMax: 100_000 });
  const err = async (res: Response) => [res.status, /<Code>(\w+)<\/Code>/.exec(await res.text())?.[1]];
  expect(await err(await fetch(`${base}/other/key`))).toEqual([404, "NoSuchBucket"]);
  await fetch(`${base}/fsgw/k`, { method: "PUT", body: "0123456789" });
  expect(await err(await fetch(`${base}/fsgw/k`, { headers: { range: "bytes=20-30" } }))).toEqual([416, "InvalidRange"]);
  expect(await err(await fetch(`${base}/fsgw/k`, { method: "POST", body: "x" }))).toEqual([405, "MethodNotAllowed"]);
  expect(await err(await fetch(`${base}/fsgw/huge`, { method: "PUT", body: new Uint8Array(200_000) }))).toEqual([400, "EntityTooLarge"]);
  const body = payload(50_000, 5);
  const wrongMd5 = Buffer.from(new Bun.CryptoHasher("md5").update("other").digest()).toString("base64");
  expect(await err(await fetch(`${base}/fsgw/md5`, { method: "PUT", body, headers: { "content-md5": wrongMd5 } }))).toEqual([400, "BadDigest"]);
  const wrongSha = Buffer.from(new Bun.CryptoHasher("sha256").update("other").digest()).toString("base64");
  expect(await err(await fetch(`${base}/fsgw/sha`, { method: "PUT", body, headers: { "x-amz-checksum-sha256": wrongSha } }))).toEqual([400, "XAmzContentSHA256Mismatch"]);
  for (const key of ["md5", "sha", "huge"]) expect((await fetch(`${base}/fsgw/${key}`)).status).toBe(404);
  // The right ones are taken.
  const md5 = Buffer.from(new Bun.CryptoHasher("md5").update(body).digest()).toString("base64");
  expect((await fetch(`${base}/fsgw/md5`, { method: "PUT", body, headers: { "content-md5": md5 } })).status).toBe(200);
  // If-None-Match with the object's ETag: 304.
  const etag = (await fetch(`${base}/fsgw/md5`, { method: "HEAD" })).headers.get("etag")!;
  expect((await fetch(`${base}/fsgw/md5`, { headers: { "if-none-match": etag } })).status).toBe(304);
});

test("a malformed or oversized head is answered 400/431 and its connection closed; pipelined requests are answered in order", async () => {
  const { server: s } = await httpServer({ httpHeadBytesMax: 2048 });
  const port = Number(/httpPort=(\d+)/.exec(s.lines.join("\n"))![1]);
  const bad = (await rawConnect(port))!;
  bad.socket.write("GET /fsgw/x HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
  expect(await closedWithin(bad.closed, 2000)).toBe(true);
  expect(bad.received()).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
  const long = (await rawConnect(port))!;
  long.socket.write(`GET /fsgw/x HTTP/1.1\r\nHost: h\r\nX: ${"y".repeat(3000)}\r\n\r\n`);
  expect(await closedWithin(long.closed, 2000)).toBe(true);
  expect(long.received()).toMatch(/^HTTP\/1\.1 431 /);
  // Two requests in one write: a PUT with its body, then a GET of what it stored.
  const piped = (await rawConnect(port))!;
  piped.socket.write("PUT /fsgw/piped HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /fsgw/piped HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
  expect(await closedWithin(piped.closed, 2000)).toBe(true);
  const text = piped.received();
  expect(text.indexOf("HTTP/1.1 200 OK")).toBe(0);
  expect(text.lastIndexOf("HTTP/1.1 200 OK")).toBeGreaterThan(0);
  expect(text.endsWith("\r\n\r\nhello")).toBe(true);
  // A HEAD's error answer carries no body: the next answer on the connection starts right after its head.
  const heads = (await rawConnect(port))!;
  heads.socket.write("HEAD /fsgw/nope HTTP/1.1\r\nHost: h\r\n\r\nGET /fsgw/piped HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
  expect(await closedWithin(heads.closed, 2000)).toBe(true);
  const both = heads.received();
  expect(both).toMatch(/^HTTP\/1\.1 404 Not Found\r\n/);
  expect(both.slice(both.indexOf("\r\n\r\n") + 4)).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nhello$/);
});

test("with tokens: Authorization: Bearer with the token's scope; nothing without it", async () => {
  const secretFile = join(dir, "secret");
  const secret = newSecret();
  writeFileSync(secretFile, secret);
  const { base } = await httpServer({ auth: "token", authSecretFile: secretFile });
  const token = createToken(new TextEncoder().encode(secret), { id: "web", access: Access.READ | Access.WRITE, prefix: "web/", expiresAtMs: Date.now() + 60_000 });
  const bearer = { authorization: `Bearer ${token}` };
  expect((await fetch(`${base}/fsgw/web/a`, { method: "PUT", body: "x" })).status).toBe(403);
  expect((await fetch(`${base}/fsgw/web/a`, { method: "PUT", body: "x", headers: bearer })).status).toBe(200);
  expect(await (await fetch(`${base}/fsgw/web/a`, { headers: bearer })).text()).toBe("x");
  expect((await fetch(`${base}/fsgw/other`, { method: "PUT", body: "x", headers: bearer })).status).toBe(403);
  expect((await fetch(`${base}/fsgw/web/a`, { method: "DELETE", headers: bearer })).status).toBe(403); // no delete in its scope
  expect((await fetch(`${base}/fsgw?list-type=2&prefix=web/`, { headers: bearer })).status).toBe(200);
  expect((await fetch(`${base}/fsgw?list-type=2`, { headers: bearer })).status).toBe(403);
});

test("a browser's GET of a bucket prefix is an HTML listing: folders, files with size and ETag, names escaped, a link up; S3 clients still get XML", async () => {
  const { base } = await httpServer();
  const names = ["page/a.txt", "page/sub/b.bin", 'page/<i>&"odd\'.txt', "top.txt"];
  for (const [i, name] of names.entries()) {
    expect((await fetch(`${base}/fsgw/${name.split("/").map(encodeURIComponent).join("/")}`, { method: "PUT", body: payload(100 + i, i) })).status).toBe(200);
  }
  const html = { accept: "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8" };
  const root = await fetch(`${base}/fsgw/`, { headers: html });
  expect(root.status).toBe(200);
  expect(root.headers.get("content-type")).toStartWith("text/html");
  const rootText = await root.text();
  expect(rootText).toContain('<a href="/fsgw/page/">page/</a>');
  expect(rootText).toContain('<a href="/fsgw/top.txt">top.txt</a>');
  const page = await (await fetch(`${base}/fsgw/page/`, { headers: html })).text();
  expect(page).toContain('<a href="/fsgw/page/sub/">sub/</a>');
  expect(page).toContain(`<td class="n">100</td>`);
  expect(page).toContain(`&quot;${md5(payload(100, 0))}&quot;`);
  expect(page).toContain("&lt;i&gt;&amp;&quot;odd&#39;.txt"); // the name, escaped: no markup of a key's
  expect(page).not.toContain("<i>");
  expect(page).toContain('<a href="/fsgw/">../</a>');
  expect(page).not.toContain("top.txt");
  // Without a browser's Accept: S3's answers as before (a key cannot end with '/').
  expect((await fetch(`${base}/fsgw/page/`)).status).toBe(400);
  expect(await (await fetch(`${base}/fsgw?list-type=2&prefix=page/&delimiter=/`, { headers: html })).text()).toContain("<ListBucketResult");
});

test("timeouts: a silent connection, a head trickled in, a body that stalls are closed (idleTimeoutMs, frameTimeoutMs); nothing stored, no temporary file", async () => {
  const { server, base } = await httpServer({ idleTimeoutMs: 400, frameTimeoutMs: 600 });
  const port = Number(new URL(base).port);
  const silent = (await rawConnect(port))!;
  expect(await closedWithin(silent.closed, 3000)).toBe(true);
  // A byte of the head every 100 ms: never silent for idleTimeoutMs, but not whole within frameTimeoutMs.
  const trickle = (await rawConnect(port))!;
  const head = "GET /fsgw/x HTTP/1.1\r\nHost: x\r\nX-Long: " + "a".repeat(100);
  let i = 0;
  const timer = setInterval(() => {
    if (i < head.length && !trickle.socket.destroyed) trickle.socket.write(head[i++]!);
  }, 100);
  expect(await closedWithin(trickle.closed, 4000)).toBe(true);
  clearInterval(timer);
  expect(i).toBeLessThan(head.length);
  // A body that stops halfway: closed, nothing stored, its temporary file removed.
  const stall = (await rawConnect(port))!;
  stall.socket.write("PUT /fsgw/stalled HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n");
  stall.socket.write(Buffer.alloc(300_000, 1));
  expect(await closedWithin(stall.closed, 4000)).toBe(true);
  expect((await fetch(`${base}/fsgw/stalled`)).status).toBe(404);
  // A client that keeps talking is not cut: requests 200 ms apart for longer than idleTimeoutMs.
  const busy = (await rawConnect(port))!;
  for (let n = 0; n < 5; n++) {
    busy.socket.write("HEAD /fsgw HTTP/1.1\r\nHost: x\r\n\r\n");
    await Bun.sleep(200);
  }
  expect(busy.received().match(/HTTP\/1.1 200/g)?.length).toBe(5);
  expect(busy.socket.destroyed).toBe(false);
  expect(server.proc.exitCode).toBeNull();
});
