// The S3 clients people already have, against a real server's HTTP front door: the AWS CLI, rclone
// and s3cmd from Debian (installed here when missing, as root, like Swift), each driving uploads up
// and down (multipart included), listings, syncs, checks and deletes; every byte that comes back
// compared by hash with what went up. The clients run as separate processes with an empty home
// (no user configuration), and sign every request with SigV4 as they always do: against a server
// with auth off, and with auth "token" and an access key pair from createAccessKey (what
// `fsgw token create --s3` prints), whose signatures the server checks; on the file store
// (test/http/clients.test.ts) and on the S3 store with a one-node Swift behind the gateway
// (test/http/clients-s3.test.ts): two files, so that the suite runs them side by side.
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ensurePackages } from "../../scripts/lib/debian";
import { Access, createAccessKey, newSecret } from "../../src/auth/token";
import { payload, sha256 } from "./data";
import { freePort, startServer, tempDir, type TestServer } from "./server";
import { BucketView, gatewayFields, newPrefix, s3Targets, type S3Endpoint } from "./s3";

export interface Mode {
  name: string;
  sigv4: boolean;
  /** On the S3 store (Swift on loopback) rather than the file store. */
  s3: boolean;
  /** The AWS CLI's large file: multipart either way (its threshold is 8 MiB); 100 MiB once. */
  bigBytes: number;
}

/** Registers the client tests of each mode. */
export function clientSuites(modes: Mode[]): void {
  const CLIENTS = ["awscli", "rclone", "s3cmd"];
  // Debian's aws (/usr/bin): another aws earlier on the PATH (a pip install) may be another version.
  const AWS = "/usr/bin/aws";
  const missing = ensurePackages(CLIENTS, [AWS, "rclone", "s3cmd"]);

  let server: TestServer | null = null;
  afterEach(async () => {
    await server?.stop();
    server = null;
  });

  const md5 = (b: Uint8Array) => new Bun.CryptoHasher("md5").update(b).digest("hex");

  interface Front {
    endpoint: string;
    port: number;
    accessKeyId: string;
    secretAccessKey: string;
    home: string;
    dir: string;
    /** The S3 store's prefix in Swift's bucket, or "" on the file store. */
    s3Prefix: string;
  }



  // One Swift for the S3 store's modes, started when the first of them needs it.
  const swiftTarget = s3Targets()[0]!;
  let swift: Promise<S3Endpoint> | null = null;
  afterAll(async () => {
    if (swift !== null) await (await swift).stop();
  }, 60_000);
  /** The server fields of a mode's store: the S3 store under a fresh prefix of Swift's bucket, or none (the file store). */
  async function storeFields(mode: Mode): Promise<Record<string, string>> {
    if (!mode.s3) return {};
    swift ??= swiftTarget.start();
    return gatewayFields(await swift, newPrefix("clients"));
  }

  async function front(mode: Mode): Promise<Front> {
    const port = freePort();
    const home = tempDir("clients-home");
    const dir = tempDir("clients-data");
    const store = await storeFields(mode);
    if (!mode.sigv4) {
      server = await startServer({ httpPort: port, ...store });
      return { endpoint: `http://127.0.0.1:${port}`, port, accessKeyId: "fsgw-test", secretAccessKey: "fsgw-test-secret", home, dir, s3Prefix: store.s3Prefix ?? "" };
    }
    const secret = newSecret();
    writeFileSync(join(home, "secret"), secret);
    server = await startServer({ httpPort: port, auth: "token", authSecretFile: join(home, "secret"), ...store });
    const keys = createAccessKey(new TextEncoder().encode(secret), { id: "clients", access: Access.READ | Access.WRITE | Access.DELETE, prefix: "", expiresAtMs: Date.now() + 3600_000 });
    return { endpoint: `http://127.0.0.1:${port}`, port, ...keys, home, dir, s3Prefix: store.s3Prefix ?? "" };
  }

  /** Runs a client with nothing of the user's environment but PATH: its exit code and output. */
  function run(f: Front, cmd: string[], extraEnv: Record<string, string> = {}): { code: number; out: string; err: string } {
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: f.home,
      AWS_ACCESS_KEY_ID: f.accessKeyId,
      AWS_SECRET_ACCESS_KEY: f.secretAccessKey,
      AWS_DEFAULT_REGION: "us-east-1",
      AWS_CONFIG_FILE: join(f.home, "aws-config"),
      AWS_SHARED_CREDENTIALS_FILE: join(f.home, "aws-credentials"),
      AWS_EC2_METADATA_DISABLED: "true",
      AWS_PAGER: "",
      ...extraEnv,
    };
    const r = Bun.spawnSync(cmd, { env, cwd: f.dir, stdout: "pipe", stderr: "pipe" });
    return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString() };
  }

  /** Expects a client to have succeeded; its stderr shows in the failure when it did not. */
  function ok(r: { code: number; out: string; err: string }): string {
    expect({ code: r.code, err: r.code === 0 ? "" : r.err }).toEqual({ code: 0, err: "" });
    return r.out;
  }

  function files(f: Front, names: Record<string, Uint8Array>, under = "src"): string {
    const root = join(f.dir, under);
    for (const [name, bytes] of Object.entries(names)) {
      mkdirSync(join(root, name, ".."), { recursive: true });
      writeFileSync(join(root, name), bytes);
    }
    return root;
  }

  const hashOf = (path: string) => sha256(readFileSync(path));

  for (const mode of modes) {
    const skip = missing ?? (mode.s3 ? swiftTarget.skip : null);
    describe.skipIf(skip !== null)(`S3 clients, ${mode.name}${skip === null ? "" : ` (skipped: ${skip})`}`, () => {
    test(`aws s3: cp up and down (small, and ${mode.bigBytes >> 20} MiB multipart), ls, sync both ways, rm --recursive; s3api head-object, list-objects-v2`, async () => {
      const f = await front(mode);
      const aws = (...args: string[]) => run(f, [AWS, "--endpoint-url", f.endpoint, ...args]);
      const small = payload(100_000, 1);
      const big = payload(mode.bigBytes, 2);
      const src = files(f, { "small.bin": small, "big.bin": big });
      ok(aws("s3", "cp", join(src, "small.bin"), "s3://fsgw/aws/small.bin", "--only-show-errors"));
      ok(aws("s3", "cp", join(src, "big.bin"), "s3://fsgw/aws/big.bin", "--only-show-errors"));
      const ls = aws("s3", "ls", "s3://fsgw/aws/");
      expect(ls.out).toMatch(/ 100000 small\.bin/);
      expect(ls.out).toMatch(new RegExp(` ${big.length} big\\.bin`));
      ok(aws("s3", "cp", "s3://fsgw/aws/big.bin", join(f.dir, "big.back"), "--only-show-errors"));
      expect(hashOf(join(f.dir, "big.back"))).toBe(sha256(big));
      ok(aws("s3", "cp", "s3://fsgw/aws/small.bin", join(f.dir, "small.back"), "--only-show-errors"));
      expect(hashOf(join(f.dir, "small.back"))).toBe(sha256(small));
      const head = JSON.parse(aws("s3api", "head-object", "--bucket", "fsgw", "--key", "aws/small.bin").out) as { ETag: string; ContentLength: number; LastModified: string };
      expect(head.ETag).toBe(`"${md5(small)}"`);
      expect(head.ContentLength).toBe(100_000);
      expect(Math.abs(Date.parse(head.LastModified) - Date.now())).toBeLessThan(120_000);
      // A prefix and a delimiter: the objects directly under it, and the "directories" below.
      files(f, { "tree/a.txt": payload(10, 3), "tree/sub/b.txt": payload(20, 4), "tree/sub/deeper/c.txt": payload(30, 5) }, "tree-src");
      ok(aws("s3", "sync", join(f.dir, "tree-src"), "s3://fsgw/sync/", "--only-show-errors"));
      const listed = JSON.parse(aws("s3api", "list-objects-v2", "--bucket", "fsgw", "--prefix", "sync/tree/", "--delimiter", "/").out) as { Contents: { Key: string; ETag: string }[]; CommonPrefixes: { Prefix: string }[] };
      expect(listed.Contents.map((c) => c.Key)).toEqual(["sync/tree/a.txt"]);
      expect(listed.Contents[0]!.ETag).toBe(`"${md5(payload(10, 3))}"`); // the listing's ETag is HEAD's
      expect(listed.CommonPrefixes.map((p) => p.Prefix)).toEqual(["sync/tree/sub/"]);
      ok(aws("s3", "sync", "s3://fsgw/sync/", join(f.dir, "tree-back"), "--only-show-errors"));
      for (const name of ["tree/a.txt", "tree/sub/b.txt", "tree/sub/deeper/c.txt"]) expect(hashOf(join(f.dir, "tree-back", name))).toBe(hashOf(join(f.dir, "tree-src", name)));
      ok(aws("s3", "rm", "--recursive", "s3://fsgw/", "--only-show-errors"));
      expect(aws("s3", "ls", "--recursive", "s3://fsgw/").out).toBe("");
    }, 120_000);

    test("rclone: copy (a file of 12 MiB among them), lsjson, check with MD5 and check --download, delete", async () => {
      const f = await front(mode);
      const config = join(f.home, "rclone.conf");
      writeFileSync(config, `[gw]\ntype = s3\nprovider = Other\naccess_key_id = ${f.accessKeyId}\nsecret_access_key = ${f.secretAccessKey}\nendpoint = ${f.endpoint}\nregion = us-east-1\n`);
      const rclone = (...args: string[]) => run(f, ["rclone", "--config", config, ...args]);
      const names = { "one.bin": payload(5000, 6), "two/three.bin": payload(12 * 1024 * 1024, 7), "empty.bin": new Uint8Array(0) };
      const src = files(f, names);
      ok(rclone("copy", src, "gw:fsgw/rc/"));
      const listed = JSON.parse(rclone("lsjson", "-R", "--files-only", "--hash", "gw:fsgw/rc/").out) as { Path: string; Size: number; Hashes?: { md5?: string } }[];
      expect(listed.map((e) => [e.Path, e.Size]).sort()).toEqual(Object.entries(names).map(([n, b]) => [n, b.length] as [string, number]).sort());
      // On the S3 store an object larger than s3PartBytes (8 MiB) is stored in parts: its ETag is the
      // bucket's multipart one, no MD5, as S3 gives for an object uploaded in parts.
      const hasMd5 = (n: keyof typeof names) => !mode.s3 || names[n].length <= 8 * 1024 * 1024;
      for (const e of listed) expect(e.Hashes?.md5).toBe(hasMd5(e.Path as keyof typeof names) ? md5(names[e.Path as keyof typeof names]) : undefined);
      const check = rclone("check", src, "gw:fsgw/rc/");
      ok(check);
      expect(check.err).toContain("0 differences found");
      const checkable = Object.keys(names).filter((n) => hasMd5(n as keyof typeof names)).length;
      expect(check.err).toContain("3 matching files");
      if (checkable < 3) expect(check.err).toContain(`${3 - checkable} hashes could not be checked`);
      ok(rclone("check", "--download", src, "gw:fsgw/rc/"));
      // A changed byte is found by both checks.
      writeFileSync(join(src, "one.bin"), payload(5000, 60));
      expect(rclone("check", src, "gw:fsgw/rc/").code).not.toBe(0);
      expect(rclone("check", "--download", src, "gw:fsgw/rc/").code).not.toBe(0);
      ok(rclone("delete", "gw:fsgw/rc/"));
      expect(JSON.parse(rclone("lsjson", "-R", "gw:fsgw/rc/").out)).toEqual([]);
    }, 120_000);

    test("s3cmd: put (small, and 12 MiB in 5 MiB parts), ls, get, del", async () => {
      const f = await front(mode);
      const config = join(f.home, "s3cfg");
      const host = `127.0.0.1:${f.port}`;
      writeFileSync(config, `[default]\naccess_key = ${f.accessKeyId}\nsecret_key = ${f.secretAccessKey}\nhost_base = ${host}\nhost_bucket = ${host}\nuse_https = False\nsignature_v2 = False\nbucket_location = us-east-1\n`);
      const s3cmd = (...args: string[]) => run(f, ["s3cmd", "-c", config, ...args]);
      const small = payload(3000, 8);
      const big = payload(12 * 1024 * 1024, 9);
      const src = files(f, { "small.bin": small, "big.bin": big });
      ok(s3cmd("put", join(src, "small.bin"), "s3://fsgw/s3cmd/small.bin"));
      const put = s3cmd("--progress", "put", "--multipart-chunk-size-mb=5", join(src, "big.bin"), "s3://fsgw/s3cmd/big.bin");
      ok(put);
      expect(put.out).toContain("part 3 of 3");
      expect(put.err).not.toContain("MD5 Sums don't match");
      const ls = s3cmd("ls", "s3://fsgw/s3cmd/").out;
      expect(ls).toContain(`${big.length}  s3://fsgw/s3cmd/big.bin`);
      expect(ls).toContain(`${small.length}  s3://fsgw/s3cmd/small.bin`);
      ok(s3cmd("get", "--force", "s3://fsgw/s3cmd/big.bin", join(f.dir, "big.back")));
      expect(hashOf(join(f.dir, "big.back"))).toBe(sha256(big));
      const get = s3cmd("get", "--force", "s3://fsgw/s3cmd/small.bin", join(f.dir, "small.back"));
      ok(get);
      expect(get.err).not.toContain("MD5 signatures do not match");
      expect(hashOf(join(f.dir, "small.back"))).toBe(sha256(small));
      ok(s3cmd("del", "s3://fsgw/s3cmd/small.bin", "s3://fsgw/s3cmd/big.bin"));
      expect(s3cmd("ls", "s3://fsgw/s3cmd/").out).toBe("");
      // Nothing of the multipart upload is left behind: on the file store no part; on the S3 store
      // (the bucket's own multipart upload) none at the bucket, and no part spooled on the way.
      const local = join(server!.dataDir, ".multipart");
      if (!mode.s3) expect(readdirSync(local).filter((n) => !n.startsWith("."))).toEqual([]);
      else {
        expect(readdirSync(join(local, "spool"))).toEqual([]);
        expect(await new BucketView(await swift!, f.s3Prefix).multipartUploads()).toEqual([]);
      }
    }, 120_000);
  });
  }
}
