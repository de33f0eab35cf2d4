// Where the S3 tests run: a one-node OpenStack Swift started for the test file (installed first
// when missing, as root: CI may not skip these), and also any endpoint given in FSGW_TEST_S3_*
// variables (Ceph RGW, MinIO, AWS...):
//
//   FSGW_TEST_S3_ENDPOINT=http://127.0.0.1:9000 FSGW_TEST_S3_BUCKET=test \
//   FSGW_TEST_S3_ACCESS_KEY_ID=... FSGW_TEST_S3_SECRET_ACCESS_KEY=... [FSGW_TEST_S3_REGION=us-east-1]
//
// Every test works under its own random prefix, so a shared bucket needs no cleaning and runs do
// not see each other.
import { ensureSwift, startSwift, type SwiftCluster } from "../../scripts/lib/swift";
import { S3Client, xmlText } from "../../src/storage/s3-client";

export interface S3Endpoint {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  bucket: string;
  /** The Swift cluster behind it (its proxy can be stopped), or null for an external endpoint. */
  swift: SwiftCluster | null;
  stop(): Promise<void>;
}

export interface S3Target {
  name: string;
  /** Why this target cannot run here, or null. */
  skip: string | null;
  start(): Promise<S3Endpoint>;
}

/** Swift, unless it cannot be installed here (not root and not installed), plus FSGW_TEST_S3_*. */
export function s3Targets(): S3Target[] {
  const asRoot = process.getuid?.() === 0;
  const targets: S3Target[] = [
    {
      name: "Swift",
      // As root, startSwift installs it (and fails the test if it cannot): never a skip.
      skip: asRoot ? null : ensureSwift(),
      async start() {
        const swift = await startSwift(`fsgw-${Math.random().toString(36).slice(2, 8)}`);
        return { ...swift, swift, stop: () => swift.stop() };
      },
    },
  ];
  const env = process.env;
  if (env.FSGW_TEST_S3_ENDPOINT) {
    const missing = ["FSGW_TEST_S3_BUCKET", "FSGW_TEST_S3_ACCESS_KEY_ID", "FSGW_TEST_S3_SECRET_ACCESS_KEY"].filter((v) => !env[v]);
    targets.push({
      name: `FSGW_TEST_S3_ENDPOINT ${env.FSGW_TEST_S3_ENDPOINT}`,
      skip: missing.length > 0 ? `FSGW_TEST_S3_ENDPOINT is set but ${missing.join(", ")} not` : null,
      async start() {
        return {
          endpoint: env.FSGW_TEST_S3_ENDPOINT!,
          region: env.FSGW_TEST_S3_REGION ?? "us-east-1",
          accessKeyId: env.FSGW_TEST_S3_ACCESS_KEY_ID!,
          secretAccessKey: env.FSGW_TEST_S3_SECRET_ACCESS_KEY!,
          bucket: env.FSGW_TEST_S3_BUCKET!,
          swift: null,
          stop: async () => {},
        };
      },
    });
  }
  return targets;
}

/** A fresh prefix for one test's keys. */
export function newPrefix(what: string): string {
  return `fsgw-test-${what}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}/`;
}

/** The gateway fields of an S3 store on `s3` under `prefix`. */
export function gatewayFields(s3: S3Endpoint, prefix: string): Record<string, string> {
  return { store: "s3", s3Endpoint: s3.endpoint, s3Region: s3.region, s3Bucket: s3.bucket, s3AccessKeyId: s3.accessKeyId, s3SecretAccessKey: s3.secretAccessKey, s3Prefix: prefix };
}

/**
 * Looks at a bucket from the outside, as an operator would: objects through Bun's own S3 client
 * (not the gateway's), multipart uploads through a plain signed listing.
 */
export class BucketView {
  private readonly bun: Bun.S3Client;
  private readonly signed: S3Client;
  constructor(
    s3: S3Endpoint,
    readonly prefix: string,
  ) {
    this.bun = new Bun.S3Client({ endpoint: s3.endpoint, region: s3.region, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, bucket: s3.bucket });
    this.signed = new S3Client({ endpoint: s3.endpoint, region: s3.region, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, bucket: s3.bucket, sessionToken: "", timeoutMs: 30_000, requestsMax: 8 });
  }

  /** Keys stored under the prefix (without it). */
  async keys(): Promise<string[]> {
    const out: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.bun.list({ prefix: this.prefix, continuationToken: token });
      for (const o of page.contents ?? []) out.push(o.key.slice(this.prefix.length));
      token = page.isTruncated ? page.nextContinuationToken : undefined;
    } while (token !== undefined);
    return out.sort();
  }

  /** A stored object's bytes, or null. */
  async bytes(key: string): Promise<Uint8Array | null> {
    const file = this.bun.file(this.prefix + key);
    if (!(await file.exists())) return null;
    return new Uint8Array(await file.arrayBuffer());
  }

  /** Multipart uploads in progress under the prefix, as "key uploadId". */
  async multipartUploads(): Promise<string[]> {
    const { text } = await this.signed.request("GET", "", { query: { uploads: "", prefix: this.prefix } });
    const out: string[] = [];
    for (let at = text.indexOf("<Upload>"); at >= 0; at = text.indexOf("<Upload>", at + 1)) out.push(`${xmlText(text, "Key", at)} ${xmlText(text, "UploadId", at)}`);
    return out;
  }

  /** Starts a multipart upload with one part and leaves it (what a crashed gateway leaves). */
  async leaveMultipartUpload(key: string): Promise<string> {
    const created = await this.signed.request("POST", this.prefix + key, { query: { uploads: "" } });
    const id = xmlText(created.text, "UploadId")!;
    await this.signed.request("PUT", this.prefix + key, { query: { partNumber: "1", uploadId: id }, body: new Uint8Array(1000) });
    return id;
  }

  async abortMultipartUpload(key: string, id: string): Promise<void> {
    await this.signed.request("DELETE", this.prefix + key, { query: { uploadId: id } });
  }

  async put(key: string, body: Uint8Array): Promise<void> {
    await this.bun.write(this.prefix + key, body);
  }
}
