// Proves the config sources stack in order and a bad value names its field, source and range.
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError, defaultLoops, envName, flagName, loadConfig, loopCount } from "../src/config";
import { tempDir } from "./helpers/server";

describe("config", () => {
  test("defaults", () => {
    const c = loadConfig({ argv: [], env: {} });
    expect(c).toMatchObject({ host: "0.0.0.0", port: 9999, dataDir: "./data", shards: 256, frameBytesMax: 65536, connectionsMax: 10000, idleTimeoutMs: 60000, ioEngine: "cpool", ioThreads: 8, waitingQueueLen: 65536, ioSubmitMode: "adaptive", ioInline: "cached", ioJobsPerWake: 1, inlineBuffersBytesMax: 32 * 1024 * 1024, wire: "protobuf" });
  });

  test("loops: 0 is one loop per CPU but one, at least one, at most 64; a number is that number", () => {
    expect([1, 2, 3, 4, 16, 65, 200].map(defaultLoops)).toEqual([1, 1, 2, 3, 15, 64, 64]);
    expect(loopCount({ loops: 3 })).toBe(3);
    expect(loopCount({ loops: 0 })).toBeGreaterThanOrEqual(1);
  });

  test("names follow the field: dataDir -> FSGW_DATA_DIR, --data-dir", () => {
    expect(envName("dataDir")).toBe("FSGW_DATA_DIR");
    expect(flagName("dataDir")).toBe("--data-dir");
    expect(envName("connectionBufferBytesMax")).toBe("FSGW_CONNECTION_BUFFER_BYTES_MAX");
  });

  test("file < environment < flags", () => {
    const dir = tempDir("cfg");
    const file = join(dir, "config.json");
    writeFileSync(file, JSON.stringify({ port: 1000, dataDir: "/from/file", shards: 16, wire: "json" }));
    const c = loadConfig({
      argv: ["--config", file, "--port", "3000", "--idle-timeout-ms=1234"],
      env: { FSGW_PORT: "2000", FSGW_DATA_DIR: "/from/env", FSGW_FSYNC_ON_COMMIT: "true" },
    });
    expect(c.port).toBe(3000);
    expect(c.dataDir).toBe("/from/env");
    expect(c.shards).toBe(16);
    expect(c.wire).toBe("json");
    expect(c.idleTimeoutMs).toBe(1234);
    expect(c.fsyncOnCommit).toBe(true);
  });

  test("a bad value names the field, where it came from and the range", () => {
    const fail = (argv: string[], env: Record<string, string> = {}) => {
      try {
        loadConfig({ argv, env });
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        return (e as Error).message;
      }
      throw new Error("expected a ConfigError");
    };
    expect(fail(["--port", "70000"])).toBe('invalid port = 70000 (from --port): expected an integer in 0..65535');
    expect(fail([], { FSGW_PORT: "abc" })).toBe('invalid port = "abc" (from FSGW_PORT): expected an integer in 0..65535');
    expect(fail(["--wire", "xml"])).toContain('expected one of "protobuf", "json"');
    expect(fail(["--frame-bytes-max", "0"])).toContain("frameBytesMax");
    expect(fail(["--nope", "1"])).toContain("unknown option --nope");
    expect(fail(["--inline-bytes-max", "2000000", "--connection-buffer-bytes-max", "1000000"])).toContain("must not exceed connectionBufferBytesMax");
    const dir = tempDir("cfg");
    writeFileSync(join(dir, "c.json"), JSON.stringify({ prot: 1 }));
    expect(fail(["--config", join(dir, "c.json")])).toContain('unknown config field "prot"');
    writeFileSync(join(dir, "bad.json"), "{");
    expect(fail(["--config", join(dir, "bad.json")])).toContain("bad.json");
  });
});

describe("security settings that depend on each other", () => {
  const refused = (argv: string[]) => {
    try {
      loadConfig({ argv, env: {} });
    } catch (e) {
      if (e instanceof ConfigError) return e.message;
      throw e;
    }
    return "accepted";
  };
  test("a certificate without its key, a client CA without TLS, tokens without a secret, a public admin without a token", () => {
    expect(refused(["--tls-cert-file", "c.pem"])).toContain("tlsCertFile and tlsKeyFile go together");
    expect(refused(["--tls-client-ca-file", "ca.pem"])).toContain("mutual TLS is TLS");
    expect(refused(["--auth", "token"])).toContain("needs authSecretFile");
    expect(refused(["--admin-host", "0.0.0.0"])).toContain("is not loopback: set adminToken");
    expect(refused(["--admin-host", "0.0.0.0", "--admin-token", "short"])).toContain("at least 16 characters");
    expect(refused(["--admin-host", "0.0.0.0", "--admin-port", "0"])).toBe("accepted"); // no admin endpoint at all
    expect(refused(["--admin-host", "127.0.0.2"])).toBe("accepted");
    expect(refused(["--admin-host", "::1"])).toBe("accepted");
    expect(refused(["--tls-cert-file", "c.pem", "--tls-key-file", "k.pem", "--auth", "token", "--auth-secret-file", "s"])).toBe("accepted");
  });
});


describe("the s3 store's settings", () => {
  const load = (argv: string[], env: Record<string, string> = {}) => {
    try {
      return loadConfig({ argv, env });
    } catch (e) {
      if (e instanceof ConfigError) return e.message;
      throw e;
    }
  };
  const s3 = ["--store", "s3", "--s3-bucket", "b", "--s3-access-key-id", "k", "--s3-secret-access-key", "s"];
  test("store = s3 needs a bucket and credentials; a cache needs store = s3 and its own directory", () => {
    expect(load(["--store", "s3"])).toContain('store = "s3" (from --store) needs s3Bucket');
    expect(load(["--store", "s3", "--s3-bucket", "b"])).toContain("needs s3AccessKeyId");
    expect(load([...s3, "--s3-endpoint", "ftp://x"])).toContain("invalid s3Endpoint");
    expect(load(["--cache-dir", "/tmp/c"])).toContain('needs store = "s3"');
    expect(load([...s3, "--cache-dir", "./data"])).toContain("must not be dataDir");
    expect(load([...s3, "--s3-part-bytes", String(1024 * 1024)])).toContain("invalid s3PartBytes");
    expect(typeof load(s3)).toBe("object");
  });
  test("volumes: on by default for the file store; the s3 store has none (off by default there, refused when set)", () => {
    expect(loadConfig({ argv: [], env: {} }).volumes).toBe(true);
    expect((load(s3) as { volumes: boolean }).volumes).toBe(false);
    expect(load([...s3, "--volumes"])).toContain('volumes (from --volumes) is a file store feature: it needs store = "file"');
    expect(load(["--volumes", "false"]) as { volumes: boolean }).toMatchObject({ volumes: false });
  });
  test("the S3 tools' own variables fill the fields, below FSGW_* and flags", () => {
    const env = { AWS_ACCESS_KEY_ID: "aws-key", S3_SECRET_ACCESS_KEY: "s3-secret", AWS_SECRET_ACCESS_KEY: "aws-secret", S3_BUCKET: "bkt", AWS_REGION: "eu-west-1", AWS_ENDPOINT_URL: "http://127.0.0.1:9000" };
    const c = load(["--store", "s3"], env);
    if (typeof c === "string") throw new Error(c);
    expect([c.s3AccessKeyId, c.s3SecretAccessKey, c.s3Bucket, c.s3Region, c.s3Endpoint]).toEqual(["aws-key", "s3-secret", "bkt", "eu-west-1", "http://127.0.0.1:9000"]);
    const over = load(["--store", "s3", "--s3-bucket", "flag-bucket"], { ...env, FSGW_S3_REGION: "us-west-2" });
    if (typeof over === "string") throw new Error(over);
    expect([over.s3Bucket, over.s3Region]).toEqual(["flag-bucket", "us-west-2"]);
  });
  test("the S3 secret from a file (out of ps's sight); as a flag it works and is warned about", () => {
    const file = join(tempDir("s3-secret"), "secret");
    writeFileSync(file, "from-file\n");
    const base = ["--store", "s3", "--s3-bucket", "b", "--s3-access-key-id", "k"];
    const c = load([...base, "--s3-secret-access-key-file", file]);
    if (typeof c === "string") throw new Error(c);
    expect(c.s3SecretAccessKey).toBe("from-file");
    expect(load([...base, "--s3-secret-access-key-file", file, "--s3-secret-access-key", "x"])).toContain("not both");
    expect(load([...base, "--s3-secret-access-key-file", "/no/such/file"])).toContain("cannot read s3SecretAccessKeyFile /no/such/file");
    const warnings: string[] = [];
    loadConfig({ argv: [...base, "--s3-secret-access-key", "s"], env: {}, warnings });
    expect(warnings.join("\n")).toContain("visible to every user of this machine (ps, /proc)");
    const quiet: string[] = [];
    loadConfig({ argv: base, env: { S3_SECRET_ACCESS_KEY: "s" }, warnings: quiet });
    expect(quiet).toEqual([]);
  });
});
