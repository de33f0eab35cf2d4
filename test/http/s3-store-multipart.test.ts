// S3 multipart uploads on the S3 store are the bucket's own: two gateways on one Swift bucket
// share them, so a client's parts may go to either (as a load balancer spreads its connections)
// and either completes the upload; neither keeps anything of it (its spool ends empty). Refusals
// come from the bucket as S3 clients know them (a wrong part ETag, an unknown upload id); an
// aborted upload leaves nothing at the bucket. Another bucket of the gateway is a prefix of the
// same Swift bucket, and its uploads are listed apart.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, existsSync } from "node:fs";
import { join } from "node:path";
import { payload, sha256 } from "../helpers/data";
import { freePort, startServer, type TestServer } from "../helpers/server";
import { BucketView, gatewayFields, newPrefix, s3Targets, type S3Endpoint } from "../helpers/s3";

const target = s3Targets()[0]!;
const MiB = 1024 * 1024;

describe.skipIf(target.skip !== null)(`multipart uploads on the S3 store (${target.name})${target.skip === null ? "" : ` skipped: ${target.skip}`}`, () => {
  let s3: S3Endpoint;
  const servers: TestServer[] = [];
  beforeAll(async () => {
    s3 = await target.start();
  }, 180_000);
  afterAll(async () => {
    for (const s of servers) await s.stop();
    await s3?.stop();
  }, 60_000);

  /** Two gateways on the same bucket and prefix: their HTTP endpoints. */
  async function twoGateways(prefix: string): Promise<{ a: string; b: string; dirs: string[] }> {
    const out: string[] = [];
    const dirs: string[] = [];
    for (let i = 0; i < 2; i++) {
      const httpPort = freePort();
      const server = await startServer({ httpPort, ...gatewayFields(s3, prefix) });
      servers.push(server);
      out.push(`http://127.0.0.1:${httpPort}`);
      dirs.push(server.dataDir);
    }
    return { a: out[0]!, b: out[1]!, dirs };
  }

  const uploadIdOf = (xml: string) => /<UploadId>([^<]+)<\/UploadId>/.exec(xml)![1]!;
  const completeXml = (parts: [number, string][]) => `<CompleteMultipartUpload>${parts.map(([n, e]) => `<Part><PartNumber>${n}</PartNumber><ETag>${e}</ETag></Part>`).join("")}</CompleteMultipartUpload>`;

  test("parts sent to two gateways, listed by one, completed by the other; the object reads back whole from both; no gateway keeps anything", async () => {
    const prefix = newPrefix("mp-two");
    const { a, b, dirs } = await twoGateways(prefix);
    const body = payload(11 * MiB + 77, 4);
    const init = await fetch(`${a}/fsgw/big.bin?uploads`, { method: "POST" });
    expect(init.status).toBe(200);
    const id = uploadIdOf(await init.text());
    const p1 = await fetch(`${a}/fsgw/big.bin?partNumber=1&uploadId=${encodeURIComponent(id)}`, { method: "PUT", body: body.subarray(0, 6 * MiB) });
    const p2 = await fetch(`${b}/fsgw/big.bin?partNumber=2&uploadId=${encodeURIComponent(id)}`, { method: "PUT", body: body.subarray(6 * MiB) });
    expect([p1.status, p2.status]).toEqual([200, 200]);
    const md5 = (x: Uint8Array) => new Bun.CryptoHasher("md5").update(x).digest("hex");
    expect(p1.headers.get("etag")).toBe(`"${md5(body.subarray(0, 6 * MiB))}"`);
    const listed = await (await fetch(`${b}/fsgw/big.bin?uploadId=${encodeURIComponent(id)}`)).text();
    expect(listed).toContain("<PartNumber>1</PartNumber>");
    expect(listed).toContain("<PartNumber>2</PartNumber>");
    expect(await (await fetch(`${a}/fsgw?uploads`)).text()).toContain("<Key>big.bin</Key>");
    // A wrong ETag is the bucket's InvalidPart; the right ones complete it, on the other gateway.
    const wrong = await fetch(`${b}/fsgw/big.bin?uploadId=${encodeURIComponent(id)}`, { method: "POST", body: completeXml([[1, p1.headers.get("etag")!], [2, '"00000000000000000000000000000000"']]) });
    expect(wrong.status).toBe(400);
    expect(await wrong.text()).toContain("<Code>InvalidPart</Code>");
    const done = await fetch(`${b}/fsgw/big.bin?uploadId=${encodeURIComponent(id)}`, { method: "POST", body: completeXml([[1, p1.headers.get("etag")!], [2, p2.headers.get("etag")!]]) });
    expect(done.status).toBe(200);
    expect(await done.text()).toMatch(/<ETag>&quot;[0-9a-f]{32}-2&quot;<\/ETag>/);
    for (const gw of [a, b]) {
      const got = await fetch(`${gw}/fsgw/big.bin`);
      expect(got.headers.get("etag")).toMatch(/^"[0-9a-f]{32}-2"$/);
      expect(sha256(new Uint8Array(await got.arrayBuffer()))).toBe(sha256(body));
    }
    expect(await new BucketView(s3, prefix).multipartUploads()).toEqual([]);
    for (const dir of dirs) {
      const spool = join(dir, ".multipart", "spool");
      expect(existsSync(spool) ? readdirSync(spool) : []).toEqual([]);
    }
  }, 120_000);

  test("an unknown upload id is NoSuchUpload; an aborted upload leaves nothing at the bucket; another bucket's uploads are listed apart", async () => {
    const prefix = newPrefix("mp-abort");
    const { a } = await twoGateways(prefix);
    expect(await (await fetch(`${a}/fsgw/x?partNumber=1&uploadId=nosuchupload`, { method: "PUT", body: "x" })).text()).toContain("<Code>NoSuchUpload</Code>");
    expect((await fetch(`${a}/photos`, { method: "PUT" })).status).toBe(200);
    const inPhotos = uploadIdOf(await (await fetch(`${a}/photos/p.bin?uploads`, { method: "POST" })).text());
    const inFsgw = uploadIdOf(await (await fetch(`${a}/fsgw/f.bin?uploads`, { method: "POST" })).text());
    expect((await fetch(`${a}/photos/p.bin?partNumber=1&uploadId=${encodeURIComponent(inPhotos)}`, { method: "PUT", body: payload(1000, 1) })).status).toBe(200);
    const photosList = await (await fetch(`${a}/photos?uploads`)).text();
    expect(photosList).toContain("<Key>p.bin</Key>");
    expect(photosList).not.toContain("f.bin");
    const fsgwList = await (await fetch(`${a}/fsgw?uploads`)).text();
    expect(fsgwList).toContain("<Key>f.bin</Key>");
    expect(fsgwList).not.toContain("p.bin");
    expect(await (await fetch(`${a}/photos`, { method: "DELETE" })).text()).toContain("<Code>BucketNotEmpty</Code>"); // an upload in progress
    expect((await fetch(`${a}/photos/p.bin?uploadId=${encodeURIComponent(inPhotos)}`, { method: "DELETE" })).status).toBe(204);
    expect((await fetch(`${a}/fsgw/f.bin?uploadId=${encodeURIComponent(inFsgw)}`, { method: "DELETE" })).status).toBe(204);
    expect(await new BucketView(s3, prefix).multipartUploads()).toEqual([]);
    expect((await fetch(`${a}/photos`, { method: "DELETE" })).status).toBe(204);
  }, 120_000);
});
