// Request bodies that are not one Content-Length of plain bytes, against a real server: curl's
// Transfer-Encoding: chunked uploads from a pipe (small ones gathered, large ones spooled, then
// stored; the spool left empty), aws-chunked bodies with a checksum trailer, chunk-signed
// streaming uploads with an access key (objects and parts), x-amz-checksum-* headers; and what
// must store nothing: a wrong checksum, a changed chunk, too large a body, a malformed one, a
// client that goes away halfway.
import { afterEach, expect, test } from "bun:test";
import { existsSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Access, createAccessKey, newSecret } from "../../src/auth/token";
import { ChecksumHasher } from "../../src/http/checksums";
import { canonicalRequest, chunkSignatureOf, signatureOf, signingKeyOf, type ChunkSigning } from "../../src/http/sigv4";
import type { RequestHead } from "../../src/http/request-head";
import { payload, sha256 } from "../helpers/data";
import { closedWithin, destroyRawSockets, rawConnect } from "../helpers/raw-socket";
import { eventually, freePort, startServer, tempDir, type TestServer } from "../helpers/server";

let server: TestServer | null = null;
afterEach(async () => {
  destroyRawSockets();
  await server?.stop();
  server = null;
});

async function open(fields: Record<string, unknown> = {}) {
  const httpPort = freePort();
  server = await startServer({ httpPort, ...fields });
  return { endpoint: `http://127.0.0.1:${httpPort}`, httpPort, server };
}

const spoolFiles = (dataDir: string) => {
  const dir = join(dataDir, ".multipart", "spool");
  return existsSync(dir) ? readdirSync(dir) : [];
};

async function bodyOf(endpoint: string, key: string): Promise<{ status: number; bytes: Uint8Array }> {
  const res = await fetch(`${endpoint}/fsgw/${key}`);
  return { status: res.status, bytes: new Uint8Array(await res.arrayBuffer()) };
}

/** An aws-chunked body: `data` in chunks of `chunk` bytes, signed from `signing` when given, then trailers. */
function awsChunked(data: Uint8Array, chunk: number, signing: ChunkSigning | null, trailers: Record<string, string> = {}): Uint8Array {
  const parts: Buffer[] = [];
  let previous = signing?.seed ?? "";
  const empty = sha256(new Uint8Array(0));
  for (let at = 0; ; at += chunk) {
    const piece = data.subarray(at, Math.min(at + chunk, data.length));
    let line = piece.length.toString(16);
    if (signing !== null) {
      previous = chunkSignatureOf(signing, previous, empty, sha256(piece));
      line += `;chunk-signature=${previous}`;
    }
    parts.push(Buffer.from(`${line}\r\n`), Buffer.from(piece), Buffer.from(piece.length > 0 ? "\r\n" : ""));
    if (piece.length === 0) break;
  }
  for (const [name, value] of Object.entries(trailers)) parts.push(Buffer.from(`${name}:${value}\r\n`));
  parts.push(Buffer.from("\r\n"));
  return new Uint8Array(Buffer.concat(parts));
}

const checksum = (algorithm: "crc32" | "crc32c" | "sha1", data: Uint8Array) => {
  const h = new ChecksumHasher(algorithm);
  h.update(data);
  return h.base64();
};

test("curl -T - (Transfer-Encoding: chunked): small bodies gathered, large ones spooled and stored whole; the spool left empty", async () => {
  const { endpoint, server } = await open();
  const dir = tempDir("chunked");
  for (const [name, size] of [["small", 3000], ["large", 3 * 1024 * 1024 + 17], ["empty", 0]] as const) {
    const data = payload(size, size + 1);
    writeFileSync(join(dir, name), data);
    const r = Bun.spawnSync(["sh", "-c", `curl -sS -f -o /dev/null -w '%{http_code}' -T - '${endpoint}/fsgw/chunked/${name}' < '${join(dir, name)}'`]);
    expect(r.stdout.toString()).toBe("200");
    const got = await bodyOf(endpoint, `chunked/${name}`);
    expect(got.status).toBe(200);
    expect(sha256(got.bytes)).toBe(sha256(data));
  }
  expect(spoolFiles(server.dataDir)).toEqual([]);
});

test("aws-chunked with a checksum trailer (unsigned): stored when it matches, BadDigest and nothing stored when not", async () => {
  const { endpoint } = await open();
  const data = payload(200_000, 5);
  const put = (key: string, trailerValue: string) =>
    fetch(`${endpoint}/fsgw/${key}`, {
      method: "PUT",
      body: awsChunked(data, 65_536, null, { "x-amz-checksum-crc32": trailerValue }),
      headers: { "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "content-encoding": "aws-chunked", "x-amz-decoded-content-length": String(data.length), "x-amz-trailer": "x-amz-checksum-crc32" },
    });
  const good = await put("aws/good", checksum("crc32", data));
  expect(good.status).toBe(200);
  expect(good.headers.get("x-amz-checksum-crc32")).toBe(checksum("crc32", data));
  expect(sha256((await bodyOf(endpoint, "aws/good")).bytes)).toBe(sha256(data));
  const bad = await put("aws/bad", checksum("crc32", payload(10, 1)));
  expect(bad.status).toBe(400);
  expect(await bad.text()).toContain("<Code>BadDigest</Code>");
  expect((await bodyOf(endpoint, "aws/bad")).status).toBe(404);
  // A decoded length that does not match the chunks: refused, nothing stored.
  const short = await fetch(`${endpoint}/fsgw/aws/short`, {
    method: "PUT",
    body: awsChunked(data, 65_536, null),
    headers: { "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "content-encoding": "aws-chunked", "x-amz-decoded-content-length": String(data.length + 1) },
  });
  expect(short.status).toBe(400);
  expect((await bodyOf(endpoint, "aws/short")).status).toBe(404);
});

test("x-amz-checksum-crc32c and -sha1 headers are checked before commit", async () => {
  const { endpoint } = await open();
  const data = payload(100_000, 9);
  for (const [algorithm, size] of [["crc32c", 100_000], ["sha1", 1000]] as const) {
    const body = data.subarray(0, size);
    const ok = await fetch(`${endpoint}/fsgw/ck/${algorithm}`, { method: "PUT", body, headers: { [`x-amz-checksum-${algorithm}`]: checksum(algorithm, body) } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get(`x-amz-checksum-${algorithm}`)).toBe(checksum(algorithm, body));
    const bad = await fetch(`${endpoint}/fsgw/ck/${algorithm}-bad`, { method: "PUT", body, headers: { [`x-amz-checksum-${algorithm}`]: checksum(algorithm, payload(5, 5)) } });
    expect(bad.status).toBe(400);
    expect((await bodyOf(endpoint, `ck/${algorithm}-bad`)).status).toBe(404);
  }
  const crc64 = await fetch(`${endpoint}/fsgw/ck/crc64`, { method: "PUT", body: data, headers: { "x-amz-checksum-crc64nvme": "AAAAAAAAAAA=" } });
  expect(crc64.status).toBe(501);
  expect((await bodyOf(endpoint, "ck/crc64")).status).toBe(404);
});

test("chunk-signed streaming uploads with an access key (STREAMING-AWS4-HMAC-SHA256-PAYLOAD): an object and a part; a changed chunk stores nothing", async () => {
  const dir = tempDir("streaming");
  const secret = newSecret();
  writeFileSync(join(dir, "secret"), secret);
  const { endpoint } = await open({ auth: "token", authSecretFile: join(dir, "secret") });
  const keys = createAccessKey(new TextEncoder().encode(secret), { id: "t", access: Access.READ | Access.WRITE, prefix: "", expiresAtMs: Date.now() + 60_000 });
  const data = payload(300_000, 11);

  /** The Authorization header of a request signed as the AWS SDKs sign one, with its signing key and seed. */
  const sign = (method: string, path: string, query: string, signed: Record<string, string>) => {
    const amzDate = signed["x-amz-date"]!;
    const date = amzDate.slice(0, 8);
    const scope = `${date}/us-east-1/s3/aws4_request`;
    const names = Object.keys(signed).sort();
    const sig = { accessKeyId: keys.accessKeyId, date, region: "us-east-1", service: "s3", amzDate, signedHeaders: names, signature: "", payloadHash: signed["x-amz-content-sha256"]!, presigned: false, expiresSeconds: 0 };
    const head = { method, path, query, headers: new Map(Object.entries(signed)) } as unknown as RequestHead;
    const toSign = `AWS4-HMAC-SHA256\n${amzDate}\n${scope}\n${sha256(new TextEncoder().encode(canonicalRequest(head, new URLSearchParams(query), sig)))}`;
    const seed = signatureOf(keys.secretAccessKey, date, "us-east-1", "s3", toSign);
    const signing: ChunkSigning = { key: signingKeyOf(keys.secretAccessKey, date, "us-east-1", "s3"), amzDate, scope, seed };
    return { authorization: `AWS4-HMAC-SHA256 Credential=${keys.accessKeyId}/${scope}, SignedHeaders=${names.join(";")}, Signature=${seed}`, signing };
  };
  const now = () => new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  const host = new URL(endpoint).host;
  const url = (path: string, query: string) => `${endpoint}${path}${query === "" ? "" : `?${query}`}`;
  /** A streaming PUT; `tamper` changes a byte of the second chunk after signing. */
  const streamingPut = async (path: string, query: string, tamper: boolean) => {
    const headers = { "content-encoding": "aws-chunked", "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "x-amz-date": now(), "x-amz-decoded-content-length": String(data.length) };
    const { authorization, signing } = sign("PUT", path, query, { ...headers, host });
    const body = awsChunked(data, 65_536, signing);
    if (tamper) body[65_536 + 200] = body[65_536 + 200]! ^ 1;
    return fetch(url(path, query), { method: "PUT", body, headers: { ...headers, authorization } });
  };
  const client = new Bun.S3Client({ endpoint, bucket: "fsgw", region: "us-east-1", ...keys });

  expect((await streamingPut("/fsgw/st/obj", "", false)).status).toBe(200);
  expect(sha256(new Uint8Array(await client.file("st/obj").arrayBuffer()))).toBe(sha256(data));
  const tampered = await streamingPut("/fsgw/st/changed", "", true);
  expect(tampered.status).toBe(403);
  expect(await tampered.text()).toContain("<Code>SignatureDoesNotMatch</Code>");
  expect(await client.file("st/changed").exists()).toBe(false);

  // A part of a multipart upload, the same way.
  const initHeaders = { "x-amz-content-sha256": sha256(new Uint8Array(0)), "x-amz-date": now() };
  const init = await fetch(url("/fsgw/st/multi", "uploads="), { method: "POST", headers: { ...initHeaders, authorization: sign("POST", "/fsgw/st/multi", "uploads=", { ...initHeaders, host }).authorization } });
  expect(init.status).toBe(200);
  const uploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(await init.text())![1]!;
  const part = await streamingPut("/fsgw/st/multi", `partNumber=1&uploadId=${uploadId}`, false);
  expect(part.status).toBe(200);
  expect(part.headers.get("etag")).toBe(`"${new Bun.CryptoHasher("md5").update(data).digest("hex")}"`);
  const badPart = await streamingPut("/fsgw/st/multi", `partNumber=2&uploadId=${uploadId}`, true);
  expect(badPart.status).toBe(403);
});

test("too large, malformed, or cut short: answered or closed, and nothing stored, no spool file left", async () => {
  const { endpoint, httpPort, server } = await open({ uploadBytesMax: 1024 * 1024 });
  // Chunked past uploadBytesMax (curl from a pipe): refused once it passes the bound.
  const dir = tempDir("big");
  writeFileSync(join(dir, "big"), payload(3 * 1024 * 1024, 1));
  const r = Bun.spawnSync(["sh", "-c", `curl -sS -o /dev/null -w '%{http_code}' -T - '${endpoint}/fsgw/limits/big' < '${join(dir, "big")}'`]);
  expect(r.stdout.toString()).toBe("400");
  expect((await bodyOf(endpoint, "limits/big")).status).toBe(404);

  // A malformed chunk: 400, the connection closed.
  const bad = (await rawConnect(httpPort))!;
  bad.socket.write("PUT /fsgw/limits/bad HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n");
  expect(await closedWithin(bad.closed, 5000)).toBe(true);
  expect(bad.received()).toStartWith("HTTP/1.1 400");
  expect((await bodyOf(endpoint, "limits/bad")).status).toBe(404);

  // Cut short halfway through a spooled body: nothing stored, and its spool file removed.
  const cut = (await rawConnect(httpPort))!;
  cut.socket.write("PUT /fsgw/limits/cut HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
  const piece = Buffer.alloc(200_000, 7);
  cut.socket.write(`${piece.length.toString(16)}\r\n`);
  cut.socket.write(piece);
  cut.socket.write("\r\n");
  await eventually(() => spoolFiles(server.dataDir).length === 1, 5000);
  cut.socket.destroy();
  await eventually(() => spoolFiles(server.dataDir).length === 0, 5000);
  expect((await bodyOf(endpoint, "limits/cut")).status).toBe(404);
});

test("a Content-Length body moved by splice: stored whole with both digests; a wrong Content-MD5 stores nothing; cut short: nothing stored, no temporary file left", async () => {
  const { endpoint, httpPort, server } = await open();
  const body = payload(5 * 1024 * 1024 + 3, 21);
  const put = await fetch(`${endpoint}/fsgw/spliced/whole`, { method: "PUT", body });
  expect(put.status).toBe(200);
  expect(put.headers.get("etag")).toBe(`"${new Bun.CryptoHasher("md5").update(body).digest("hex")}"`);
  const got = await fetch(`${endpoint}/fsgw/spliced/whole`);
  expect(got.headers.get("x-amz-checksum-sha256")).toBe(new Bun.CryptoHasher("sha256").update(body).digest("base64"));
  expect(sha256(new Uint8Array(await got.arrayBuffer()))).toBe(sha256(body));
  // With a Content-MD5 (the store checks it before its commit, so the body still splices): a
  // right one stores, a wrong one is BadDigest and stores nothing.
  const md5b64 = new Bun.CryptoHasher("md5").update(body).digest("base64");
  expect((await fetch(`${endpoint}/fsgw/spliced/md5`, { method: "PUT", body, headers: { "content-md5": md5b64 } })).status).toBe(200);
  const wrong = await fetch(`${endpoint}/fsgw/spliced/md5-wrong`, { method: "PUT", body, headers: { "content-md5": new Bun.CryptoHasher("md5").update("x").digest("base64") } });
  expect(wrong.status).toBe(400);
  expect(await wrong.text()).toContain("<Code>BadDigest</Code>");
  expect((await bodyOf(endpoint, "spliced/md5-wrong")).status).toBe(404);
  expect(temporaryFiles(server.dataDir)).toEqual([]);
  // The head and a first part of the body, then the client goes away.
  const cut = (await rawConnect(httpPort))!;
  cut.socket.write(`PUT /fsgw/spliced/cut HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`);
  cut.socket.write(Buffer.from(body.subarray(0, 1024 * 1024)));
  await eventually(() => temporaryFiles(server.dataDir).length === 1, 5000, "the upload's temporary file");
  cut.socket.destroy();
  await eventually(() => temporaryFiles(server.dataDir).length === 0, 5000, "the temporary file removed");
  expect((await bodyOf(endpoint, "spliced/cut")).status).toBe(404);
});

/** Files of the store being written (their names hold a backslash: src/storage/file-store.ts). */
function temporaryFiles(dataDir: string): string[] {
  const out: string[] = [];
  for (const shard of readdirSync(dataDir)) {
    const path = join(dataDir, shard);
    if (!statSync(path).isDirectory() || shard.startsWith(".")) continue;
    for (const name of readdirSync(path)) if (name.includes("\\")) out.push(name);
  }
  return out;
}
