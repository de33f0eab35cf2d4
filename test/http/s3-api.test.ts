// The S3 API's less common requests against a real server, by plain fetch: multipart uploads and
// their refusals (unknown upload, parts out of order, a wrong part ETag, a part too small, a bad
// Content-MD5, too many uploads at once), Abort removing the parts, ListParts and
// ListMultipartUploads; DeleteObjects; CopyObject; ListObjects version 1 paging by marker.
import { afterEach, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { payload, sha256 } from "../helpers/data";
import { freePort, startServer, type TestServer } from "../helpers/server";

let server: TestServer | null = null;
afterEach(async () => {
  await server?.stop();
  server = null;
});

const md5 = (b: Uint8Array) => new Bun.CryptoHasher("md5").update(b).digest("hex");
const code = async (res: Response) => [res.status, /<Code>(\w+)<\/Code>/.exec(await res.text())?.[1] ?? ""];
const tag = (xml: string, name: string) => [...xml.matchAll(new RegExp(`<${name}>([^<]*)</${name}>`, "g"))].map((m) => m[1]!);

async function s3(fields: Record<string, string | number | boolean> = {}): Promise<string> {
  const httpPort = freePort();
  server = await startServer({ httpPort, multipartPartBytesMin: 1000, ...fields });
  return `http://127.0.0.1:${httpPort}/fsgw`;
}

async function create(base: string, key: string): Promise<string> {
  const res = await fetch(`${base}/${key}?uploads`, { method: "POST" });
  expect(res.status).toBe(200);
  return tag(await res.text(), "UploadId")[0]!;
}

async function part(base: string, key: string, id: string, n: number, body: Uint8Array): Promise<string> {
  const res = await fetch(`${base}/${key}?partNumber=${n}&uploadId=${id}`, { method: "PUT", body });
  expect(res.status).toBe(200);
  return res.headers.get("etag")!;
}

const completeBody = (parts: [number, string][]) => `<CompleteMultipartUpload>${parts.map(([n, e]) => `<Part><PartNumber>${n}</PartNumber><ETag>${e}</ETag></Part>`).join("")}</CompleteMultipartUpload>`;

test("multipart: parts in any order, replaced, listed; Complete stores them as one object (MD5 ETag) and removes them", async () => {
  const base = await s3();
  const id = await create(base, "mp/obj");
  const bodies = [payload(3000, 1), payload(2500, 2), payload(700, 3)];
  // Part 2 first, and part 1 sent twice (the second replaces the first).
  const e2 = await part(base, "mp/obj", id, 2, bodies[1]!);
  await part(base, "mp/obj", id, 1, payload(3000, 99));
  const e1 = await part(base, "mp/obj", id, 1, bodies[0]!);
  const e3 = await part(base, "mp/obj", id, 3, bodies[2]!);
  expect(e1).toBe(`"${md5(bodies[0]!)}"`);
  const listed = await (await fetch(`${base}/mp/obj?uploadId=${id}`)).text();
  expect(tag(listed, "PartNumber")).toEqual(["1", "2", "3"]);
  expect(tag(listed, "Size")).toEqual(["3000", "2500", "700"]);
  const uploads = await (await fetch(`${base}?uploads`)).text();
  expect(tag(uploads, "UploadId")).toEqual([id]);
  expect(tag(uploads, "Key")).toEqual(["mp/obj"]);
  const done = await fetch(`${base}/mp/obj?uploadId=${id}`, { method: "POST", body: completeBody([[1, e1], [2, e2], [3, e3]]) });
  expect(done.status).toBe(200);
  const whole = new Uint8Array(Buffer.concat(bodies));
  expect(tag(await done.text(), "ETag")[0]).toBe(`&quot;${md5(whole)}&quot;`);
  const got = new Uint8Array(await (await fetch(`${base}/mp/obj`)).arrayBuffer());
  expect(sha256(got)).toBe(sha256(whole));
  expect(readdirSync(join(server!.dataDir, ".multipart"))).toEqual([]);
  // The upload is gone: its parts can no longer be sent or listed.
  expect(await code(await fetch(`${base}/mp/obj?partNumber=1&uploadId=${id}`, { method: "PUT", body: "x" }))).toEqual([404, "NoSuchUpload"]);
});

test("multipart refusals: unknown upload, wrong key, order, part ETag, part too small, bad Content-MD5; Abort removes the parts; a bound on uploads at once", async () => {
  const base = await s3({ multipartUploadsMax: 2 });
  expect(await code(await fetch(`${base}/k?partNumber=1&uploadId=${"0".repeat(32)}`, { method: "PUT", body: "x" }))).toEqual([404, "NoSuchUpload"]);
  const id = await create(base, "k");
  expect(await code(await fetch(`${base}/other?partNumber=1&uploadId=${id}`, { method: "PUT", body: "x" }))).toEqual([404, "NoSuchUpload"]);
  expect(await code(await fetch(`${base}/k?partNumber=0&uploadId=${id}`, { method: "PUT", body: "x" }))).toEqual([400, "InvalidArgument"]);
  const e1 = await part(base, "k", id, 1, payload(500, 1)); // smaller than multipartPartBytesMin (1000)
  const e2 = await part(base, "k", id, 2, payload(1500, 2));
  const complete = (parts: [number, string][]) => fetch(`${base}/k?uploadId=${id}`, { method: "POST", body: completeBody(parts) });
  expect(await code(await complete([[2, e2], [1, e1]]))).toEqual([400, "InvalidPartOrder"]);
  expect(await code(await complete([[1, `"${"f".repeat(32)}"`], [2, e2]]))).toEqual([400, "InvalidPart"]);
  expect(await code(await complete([[1, e1], [2, e2]]))).toEqual([400, "EntityTooSmall"]);
  expect(await code(await fetch(`${base}/k?uploadId=${id}`, { method: "POST", body: "<nonsense/>" }))).toEqual([400, "MalformedXML"]);
  const badMd5 = await fetch(`${base}/k?partNumber=3&uploadId=${id}`, { method: "PUT", body: "abc", headers: { "content-md5": Buffer.from(md5(payload(3, 0)), "hex").toString("base64") } });
  expect(await code(badMd5)).toEqual([400, "BadDigest"]);
  expect(tag(await (await fetch(`${base}/k?uploadId=${id}`)).text(), "PartNumber")).toEqual(["1", "2"]); // the bad part is not kept
  // Nothing was stored under the key by any refused Complete.
  expect((await fetch(`${base}/k`)).status).toBe(404);
  await create(base, "k2");
  expect(await code(await fetch(`${base}/k3?uploads`, { method: "POST" }))).toEqual([503, "SlowDown"]);
  expect((await fetch(`${base}/k?uploadId=${id}`, { method: "DELETE" })).status).toBe(204);
  expect(readdirSync(join(server!.dataDir, ".multipart"))).toHaveLength(1);
  expect(await code(await fetch(`${base}/k?uploadId=${id}`))).toEqual([404, "NoSuchUpload"]);
});

test("DeleteObjects removes many keys in one request (missing ones count as deleted); Quiet answers only errors", async () => {
  const base = await s3();
  for (const k of ["d/1", "d/2", "d/3"]) expect((await fetch(`${base}/${k}`, { method: "PUT", body: k })).status).toBe(200);
  const body = `<Delete><Object><Key>d/1</Key></Object><Object><Key>d/2</Key></Object><Object><Key>d/missing</Key></Object><Object><Key>../bad</Key></Object></Delete>`;
  const res = await fetch(`${base}?delete`, { method: "POST", body });
  const xml = await res.text();
  expect(res.status).toBe(200);
  expect(tag(xml, "Key")).toEqual(["d/1", "d/2", "d/missing", "../bad"]);
  expect(tag(xml, "Code")).toEqual(["InvalidArgument"]);
  expect((await fetch(`${base}/d/1`)).status).toBe(404);
  expect((await fetch(`${base}/d/3`)).status).toBe(200);
  const quiet = await (await fetch(`${base}?delete`, { method: "POST", body: `<Delete><Quiet>true</Quiet><Object><Key>d/3</Key></Object></Delete>` })).text();
  expect(tag(quiet, "Key")).toEqual([]);
  expect((await fetch(`${base}/d/3`)).status).toBe(404);
});

test("CopyObject copies within the store (with its MD5); a failed x-amz-copy-source-if-match copies nothing", async () => {
  const base = await s3();
  const body = payload(300_000, 5);
  await fetch(`${base}/src/a`, { method: "PUT", body });
  const res = await fetch(`${base}/dst/b`, { method: "PUT", headers: { "x-amz-copy-source": "/fsgw/src/a" } });
  expect(res.status).toBe(200);
  expect(tag(await res.text(), "ETag")[0]).toBe(`&quot;${md5(body)}&quot;`);
  expect(sha256(new Uint8Array(await (await fetch(`${base}/dst/b`)).arrayBuffer()))).toBe(sha256(body));
  const refused = await fetch(`${base}/dst/c`, { method: "PUT", headers: { "x-amz-copy-source": "fsgw/src/a", "x-amz-copy-source-if-match": '"nope"' } });
  expect(await code(refused)).toEqual([412, "PreconditionFailed"]);
  expect((await fetch(`${base}/dst/c`)).status).toBe(404);
  expect(await code(await fetch(`${base}/dst/d`, { method: "PUT", headers: { "x-amz-copy-source": "/fsgw/src/none" } }))).toEqual([404, "NoSuchKey"]);
});

test("ListObjects version 1: pages by marker, NextMarker with a delimiter is the last common prefix", async () => {
  const base = await s3();
  for (const k of ["v/a", "v/b", "v/c/1", "v/c/2", "v/d"]) await fetch(`${base}/${k}`, { method: "PUT", body: k });
  const page = async (query: string) => {
    const xml = await (await fetch(`${base}?${query}`)).text();
    return { keys: tag(xml, "Key"), prefixes: tag(xml, "Prefix").slice(1), truncated: tag(xml, "IsTruncated")[0], next: tag(xml, "NextMarker")[0] };
  };
  expect(await page("prefix=v/&max-keys=2")).toEqual({ keys: ["v/a", "v/b"], prefixes: [], truncated: "true", next: "v/b" });
  expect(await page("prefix=v/&marker=v/b")).toEqual({ keys: ["v/c/1", "v/c/2", "v/d"], prefixes: [], truncated: "false", next: undefined });
  expect(await page("prefix=v/&delimiter=/&max-keys=3")).toEqual({ keys: ["v/a", "v/b"], prefixes: ["v/c/"], truncated: "true", next: "v/c/" });
  expect(await page("prefix=v/&delimiter=/&marker=v/c/")).toEqual({ keys: ["v/d"], prefixes: [], truncated: "false", next: undefined });
  expect((await (await fetch(`${base}?location`)).text())).toContain("<LocationConstraint");
});
