// Proves the config sources stack in order and a bad value names its field, source and range.
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError, envName, flagName, loadConfig } from "../src/config";
import { tempDir } from "./helpers/server";

describe("config", () => {
  test("defaults", () => {
    const c = loadConfig({ argv: [], env: {} });
    expect(c).toMatchObject({ host: "0.0.0.0", port: 9999, dataDir: "./data", shards: 256, frameBytesMax: 65536, connectionsMax: 10000, idleTimeoutMs: 60000, ioEngine: "cpool", ioThreads: 8, waitingQueueLen: 65536, ioSubmitMode: "adaptive", ioInline: "cached", ioJobsPerWake: 1, inlineBuffersBytesMax: 32 * 1024 * 1024, wire: "protobuf" });
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

