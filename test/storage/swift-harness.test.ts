// The real S3 store the S3 tests run against (scripts/lib/swift.ts): a one-node OpenStack Swift on
// loopback, installed when missing (as root), started on free ports, stopped exactly. Proves it
// speaks what the S3 store needs through Bun's own client: put, stat, range read, multipart write,
// the errors of a missing key, the store going away and coming back. As root (CI) it may not be
// skipped: a failure to install fails the test; elsewhere without Swift it is skipped, saying why.
import { afterAll, expect, test } from "bun:test";
import { ensureSwift, startSwift, type SwiftCluster } from "../../scripts/lib/swift";
import { payload, sha256 } from "../helpers/data";

const asRoot = process.getuid?.() === 0;
const missing = asRoot ? null : ensureSwift();
let swift: SwiftCluster | null = null;
afterAll(async () => {
  await swift?.stop();
});

if (missing !== null) test.skip(`S3 store tests skipped: ${missing}`, () => {});

test.skipIf(missing !== null)("a one-node Swift answers Bun's S3 client: put, stat, range, multipart, missing keys, an outage", async () => {
  swift = await startSwift("fsgw-harness");
  const s3 = new Bun.S3Client({ endpoint: swift.endpoint, region: swift.region, accessKeyId: swift.accessKeyId, secretAccessKey: swift.secretAccessKey, bucket: swift.bucket });
  const small = payload(5000, 1);
  await s3.write("photos/small.bin", small);
  expect((await s3.stat("photos/small.bin")).size).toBe(5000);
  expect(sha256(new Uint8Array(await s3.file("photos/small.bin").slice(100, 200).arrayBuffer()))).toBe(sha256(small.subarray(100, 200)));
  // Multipart: 12 MiB in 5 MiB parts.
  const big = payload(12 * 1024 * 1024, 2);
  const writer = s3.file("big.bin").writer({ partSize: 5 * 1024 * 1024 });
  for (let at = 0; at < big.length; at += 1024 * 1024) writer.write(big.subarray(at, at + 1024 * 1024));
  await writer.end();
  expect(sha256(new Uint8Array(await s3.file("big.bin").arrayBuffer()))).toBe(sha256(big));
  const err = await s3.file("missing").text().catch((e) => e);
  expect([err?.name, err?.code]).toEqual(["S3Error", "NoSuchKey"]);
  // The store goes away, and comes back.
  await swift.stopProxy();
  expect(await s3.exists("photos/small.bin").catch(() => "unreachable")).toBe("unreachable");
  await swift.startProxy();
  expect(await s3.exists("photos/small.bin")).toBe(true);
  await s3.delete("photos/small.bin");
  expect(await s3.exists("photos/small.bin")).toBe(false);
  await swift.stop();
  swift = null;
}, 120_000);
