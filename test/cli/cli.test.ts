// Proves every `fsgw` client subcommand end to end as a user runs it (a child process against a real
// server): output, files, --json (also for failures), and exit codes 0 ok / 1 server said no /
// 2 usage / 3 connection / 4 local file.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { payload, sha256 } from "../helpers/data";
import { startServer, tempDir, type TestServer } from "../helpers/server";

const root = resolve(import.meta.dir, "../..");
let server: TestServer;
const dir = tempDir("cli");

function fsgw(args: string[], env: Record<string, string> = {}) {
  const r = Bun.spawnSync([process.execPath, join(root, "src/main.ts"), ...args], { cwd: dir, stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString(), bytes: r.stdout };
}
const at = () => ["--port", String(server.port)];

beforeAll(async () => {
  server = await startServer({});
});
afterAll(async () => {
  await server.stop();
});

describe("fsgw client commands", () => {
  test("put, stat, get, rm: output, files and exit codes", () => {
    const file = join(dir, "report.bin");
    writeFileSync(file, payload(123_456, 1));
    const put = fsgw(["put", file, ...at()]);
    expect(put.code).toBe(0);
    expect(put.out).toMatch(/^put .*report\.bin as report\.bin: 120\.6 KiB in \d+ ms \(.*\/s\)\n$/);

    const stat = fsgw(["stat", "report.bin", ...at()]);
    const digest = sha256(readFileSync(file));
    expect([stat.code, stat.out]).toEqual([0, `report.bin: file, 123456 bytes (120.6 KiB), sha256 ${digest}\n`]);
    expect(JSON.parse(fsgw(["stat", "report.bin", "--json", ...at()]).out)).toEqual({ op: "stat", key: "report.bin", size: 123456, type: "file", digest });

    const get = fsgw(["get", "report.bin", "-o", join(dir, "copy.bin"), ...at()]);
    expect(get.code).toBe(0);
    expect(sha256(readFileSync(join(dir, "copy.bin")))).toBe(sha256(readFileSync(file)));
    const toStdout = fsgw(["get", "report.bin", "-o", "-", ...at()]);
    expect(sha256(toStdout.bytes)).toBe(sha256(readFileSync(file)));
    // ./<key> in the working directory: that is report.bin itself, so it is refused without --force.
    const refused = fsgw(["get", "report.bin", ...at()]);
    expect(refused).toMatchObject({ code: 4, err: "fsgw get: ./report.bin: exists; add --force to replace it (or -o another path)\n" });
    const defaultName = fsgw(["get", "report.bin", "--force", ...at()]);
    expect(defaultName.code).toBe(0);
    expect(sha256(readFileSync(join(dir, "report.bin")))).toBe(sha256(readFileSync(file)));

    const named = fsgw(["put", file, "--key", "other name", ...at()]);
    expect(named.out).toContain("as other name:");

    expect(fsgw(["rm", "report.bin", ...at()])).toMatchObject({ code: 0, out: "removed report.bin\n" });
  });

  test("keys with '/', get into the key's last segment, and --range", () => {
    const file = join(dir, "range-src.bin");
    const body = payload(10_000, 5);
    writeFileSync(file, body);
    expect(fsgw(["put", file, "--key", "backups/2026/range.bin", ...at()]).code).toBe(0);
    expect(fsgw(["get", "backups/2026/range.bin", ...at()]).code).toBe(0); // into ./range.bin
    expect(sha256(readFileSync(join(dir, "range.bin")))).toBe(sha256(body));
    expect(fsgw(["get", "backups/2026/range.bin", "--range", "1000-1999", "-o", join(dir, "part.bin"), ...at()]).code).toBe(0);
    expect(sha256(readFileSync(join(dir, "part.bin")))).toBe(sha256(body.subarray(1000, 2000)));
    const tail = fsgw(["get", "backups/2026/range.bin", "--range", "9990-", "-o", "-", ...at()]);
    expect(sha256(tail.bytes)).toBe(sha256(body.subarray(9990)));
    expect(fsgw(["get", "backups/2026/range.bin", "--range", "20000-", "-o", "-", ...at()])).toMatchObject({ code: 1, err: expect.stringContaining("range not satisfiable") });
    expect(fsgw(["get", "backups/2026/range.bin", "--range", "5-2", "-o", "-", ...at()]).code).toBe(2);
    expect(fsgw(["get", "backups/2026/range.bin", "--range", "x", "-o", "-", ...at()]).code).toBe(2);
    expect(fsgw(["rm", "backups/2026/range.bin", ...at()]).code).toBe(0);
  });

  test("the server saying no exits 1 with its text", () => {
    expect(fsgw(["stat", "missing", ...at()])).toMatchObject({ code: 1, err: "fsgw stat: the server said: no such key\n" });
    expect(fsgw(["rm", "missing", ...at()]).code).toBe(1);
    const get = fsgw(["get", "missing", "-o", join(dir, "never.bin"), ...at()]);
    expect(get.code).toBe(1);
    // A key the server would refuse is refused before any connection: a usage error, exit 2.
    expect(fsgw(["put", join(dir, "report.bin"), "--key", "../escape", ...at()])).toMatchObject({ code: 2, err: "fsgw put: invalid key: contains the segment '..': \"../escape\"\nRun 'fsgw put --help' for usage.\n" });
    expect(fsgw(["stat", "a//b", "--port", "1"]).code).toBe(2); // no server needed to know
  });

  test("usage errors exit 2 and say what is wrong", () => {
    expect(fsgw(["stat"]).code).toBe(2);
    expect(fsgw(["stat", "a", "b"]).err).toContain("expected exactly one key");
    expect(fsgw(["get", "k", "--bogus"])).toMatchObject({ code: 2 });
    expect(fsgw(["bench", "fly", ...at()]).err).toContain("unknown bench operation");
    expect(fsgw(["bench", "upload", "-s", "5x", ...at()]).err).toContain("bad size");
    expect(fsgw(["bench", "upload", "-c", "abc", ...at()]).code).toBe(2);
    expect(fsgw(["frobnicate"]).code).toBe(2);
    expect(fsgw([]).code).toBe(2);
  });

  test("local file problems exit 4 with the path and the reason", () => {
    expect(fsgw(["put", join(dir, "does-not-exist"), ...at()])).toMatchObject({ code: 4, err: `fsgw put: ${join(dir, "does-not-exist")}: no such file or directory\n` });
    expect(fsgw(["put", dir, ...at()])).toMatchObject({ code: 4, err: `fsgw put: ${dir}: is a directory (put uploads one file)\n` });
    writeFileSync(join(dir, "small.txt"), "hello");
    expect(fsgw(["put", join(dir, "small.txt"), ...at()]).code).toBe(0);
    const noDir = fsgw(["get", "small.txt", "-o", join(dir, "no", "such", "dir", "x"), ...at()]);
    expect(noDir.code).toBe(4);
    expect(noDir.err).toContain(join(dir, "no", "such", "dir", "x"));
  });

  test("--json: a failure is one JSON object on stdout with op, key, error and exitCode", () => {
    const missing = fsgw(["stat", "missing", "--json", ...at()]);
    expect(missing.code).toBe(1);
    expect(JSON.parse(missing.out)).toEqual({ op: "stat", key: "missing", error: "the server said: no such key", exitCode: 1 });
    expect(missing.err).toBe("fsgw stat: the server said: no such key\n");
    expect(JSON.parse(fsgw(["put", dir, "--key", "d", "--json", ...at()]).out)).toEqual({ op: "put", key: "d", error: `${dir}: is a directory (put uploads one file)`, exitCode: 4 });
    expect(JSON.parse(fsgw(["rm", "x", "--json", "--port", "1"]).out)).toMatchObject({ op: "rm", key: "x", exitCode: 3 });
    expect(JSON.parse(fsgw(["stat", "--json"]).out)).toMatchObject({ op: "stat", key: null, exitCode: 2 });
  });

  test("rates are rounded and in binary units", () => {
    writeFileSync(join(dir, "tiny.txt"), "x".repeat(37));
    const put = fsgw(["put", join(dir, "tiny.txt"), ...at()]);
    expect(put.out).toMatch(/^put .*tiny\.txt as tiny\.txt: 37 B in \d+ ms \((\d+ B|[\d]+\.\d (KiB|MiB|GiB))\/s\)\n$/);
  });

  test("no server there exits 3", () => {
    const r = fsgw(["stat", "x", "--port", "1"]);
    expect(r.code).toBe(3);
    expect(r.err).toContain("cannot connect to 127.0.0.1:1");
    const bench = fsgw(["bench", "bench", "-n", "10", "--port", "1"]);
    expect(bench.code).toBe(3);
    expect(bench.out).toContain("10 × cannot connect to 127.0.0.1:1");
    expect(bench.out).toContain("latency: none measured");
    expect(bench.out).toContain("over 10 connections");
  });

  test("--help on every command, with examples", () => {
    for (const cmd of ["put", "get", "stat", "rm", "bench", "serve"]) {
      const r = fsgw([cmd, "--help"]);
      expect([cmd, r.code]).toEqual([cmd, 0]);
      expect(r.out).toContain("usage: fsgw " + cmd);
      expect(r.out).toContain("example");
    }
    expect(fsgw(["--help"]).out).toContain("commands:");
  });

  test("bench: upload, download, exist, bench, clean; --json carries every field", () => {
    const up = fsgw(["bench", "upload", "-c", "20", "-n", "200", "-s", "5k", "--json", ...at()]);
    expect(up.code).toBe(0);
    const r = JSON.parse(up.out);
    expect(Object.keys(r).sort()).toEqual(["clientCpuMs", "connections", "count", "errors", "latencyMs", "mibPerSec", "ms", "ok", "op", "opsPerSec"].sort());
    expect(r).toMatchObject({ op: "upload", connections: 20, count: 200, ok: 200, errors: {} });
    expect(r.mibPerSec).toBeGreaterThan(0);
    expect(Object.keys(r.latencyMs).sort()).toEqual(["max", "p50", "p90", "p99"]);
    expect(r.latencyMs.p50).toBeLessThanOrEqual(r.latencyMs.p99);
    expect(r.clientCpuMs).toBeGreaterThan(0);
    expect(fsgw(["stat", "bench_mark_file_199", ...at()]).out).toContain("5120 bytes");

    const down = JSON.parse(fsgw(["bench", "download", "-c", "10", "-n", "200", "--json", ...at()]).out);
    expect(down).toMatchObject({ op: "download", ok: 200 });
    expect(down.mibPerSec).toBeGreaterThan(0);
    const exist = JSON.parse(fsgw(["bench", "exist", "-c", "10", "-n", "200", "--json", ...at()]).out);
    expect(exist.ok).toBe(200);
    expect(exist.mibPerSec).toBeUndefined(); // no body: no rate
    expect(fsgw(["bench", "exist", "-c", "10", "-n", "5", ...at()]).out).toMatch(/^exist: 5 of 5 ok over 5 connections in [\d.]+ ms: \d+ ops\/s\n/);
    expect(JSON.parse(fsgw(["bench", "bench", "-c", "10", "-n", "1000", "--json", ...at()]).out).ok).toBe(1000);

    const text = fsgw(["bench", "download", "-c", "5", "-n", "250", ...at()]);
    expect(text.code).toBe(1); // 50 of them do not exist
    expect(text.out).toContain("download: 200 of 250 ok over 5 connections");
    expect(text.out).toContain("errors: 50 × no such key");
    expect(text.out).toMatch(/latency ms: p50 [\d.]+ {2}p90 [\d.]+ {2}p99 [\d.]+ {2}max [\d.]+/);
    expect(text.out).toMatch(/client CPU: \d+ ms/);

    // Two generator threads share the connections and the keys: every key is written once.
    const threaded = JSON.parse(fsgw(["bench", "upload", "-c", "10", "-n", "301", "-s", "1k", "--threads", "2", "--key-prefix", "t_", "--json", ...at()]).out);
    expect(threaded).toMatchObject({ op: "upload", connections: 10, count: 301, ok: 301, errors: {} });
    expect(JSON.parse(fsgw(["bench", "exist", "-c", "10", "-n", "301", "--key-prefix", "t_", "--json", ...at()]).out).ok).toBe(301);
    expect(fsgw(["stat", "t_301", ...at()]).code).toBe(1);
    // --keys cycles over the first n keys: 1000 downloads of t_0..t_300 all find their file, where
    // without it t_301..t_999 do not exist.
    const cycled = JSON.parse(fsgw(["bench", "download", "-c", "10", "-n", "1000", "--keys", "301", "--key-prefix", "t_", "--threads", "2", "--json", ...at()]).out);
    expect(cycled).toMatchObject({ op: "download", count: 1000, ok: 1000, errors: {} });
    expect(JSON.parse(fsgw(["bench", "download", "-c", "10", "-n", "1000", "--key-prefix", "t_", "--json", ...at()]).out).ok).toBe(301);
    expect(JSON.parse(fsgw(["bench", "bench", "-c", "8", "-n", "2000", "-t", "2", "--json", ...at()]).out).ok).toBe(2000);

    const clean = JSON.parse(fsgw(["bench", "clean", "-c", "10", "-n", "200", "--json", ...at()]).out);
    expect(clean).toMatchObject({ op: "clean", ok: 200 });
    expect(fsgw(["stat", "bench_mark_file_0", ...at()]).code).toBe(1);
  }, 60_000);

  test("put - reads stdin (a pipe, or a file redirected in) and needs --key; get -o DIR writes into DIR as cp does", () => {
    const body = payload(3_000_000, 11);
    writeFileSync(join(dir, "stdin-src.bin"), body);
    const main = join(root, "src/main.ts");
    const piped = Bun.spawnSync(["sh", "-c", `cat stdin-src.bin | '${process.execPath}' '${main}' put - --key in/piped.bin --port ${server.port}`], { cwd: dir });
    expect([piped.exitCode, piped.stdout.toString()]).toEqual([0, expect.stringMatching(/^put stdin as in\/piped\.bin: 2\.9 MiB in \d+ ms/)]);
    const redirected = Bun.spawnSync([process.execPath, main, "put", "-", "--key", "in/redirected.bin", "--json", ...at()], { cwd: dir, stdin: Bun.file(join(dir, "stdin-src.bin")) });
    expect(redirected.exitCode).toBe(0);
    expect(JSON.parse(redirected.stdout.toString())).toMatchObject({ op: "put", key: "in/redirected.bin", size: body.length });
    expect(fsgw(["put", "-", ...at()])).toMatchObject({ code: 2, err: expect.stringContaining("put - (stdin) needs --key") });
    const into = join(dir, "into");
    mkdirSync(into);
    for (const key of ["in/piped.bin", "in/redirected.bin"]) {
      expect(fsgw(["get", key, "-o", into, ...at()]).code).toBe(0);
      expect(sha256(readFileSync(join(into, key.slice(3))))).toBe(sha256(body));
    }
    // Again: the file in the directory exists now; one message says so.
    expect(fsgw(["get", "in/piped.bin", "-o", into, ...at()])).toMatchObject({ code: 4, err: `fsgw get: ${join(into, "piped.bin")}: exists; add --force to replace it (or -o another path)\n` });
  });

  test("--version, and token --json like every other command", () => {
    const version = fsgw(["--version"]);
    expect([version.code, version.out]).toEqual([0, expect.stringMatching(/^fsgw \d+\.\d+\.\d+ \(Bun \d+\.\d+\.\d+, protocol v2\)\n$/)]);
    const secret = fsgw(["token", "secret", "--json"]);
    expect(secret.code).toBe(0);
    const { secret: text } = JSON.parse(secret.out) as { secret: string };
    writeFileSync(join(dir, "secret"), text);
    const token = fsgw(["token", "create", "--ops", "read,write", "--prefix", "p/", "--id", "me", "--secret-file", join(dir, "secret"), "--json"]);
    expect(token.code).toBe(0);
    expect(JSON.parse(token.out)).toMatchObject({ token: expect.stringMatching(/^fsgw1\./), id: "me", ops: ["read", "write"], prefix: "p/", expiresAt: expect.any(String) });
    const failed = fsgw(["token", "create", "--ops", "read", "--secret-file", join(dir, "no-such-secret"), "--json"]);
    expect(failed.code).toBe(4);
    expect(JSON.parse(failed.out)).toMatchObject({ op: "token create", exitCode: 4 });
  });

  test("get -o - into a pipe whose reader goes away (| head -c 100) exits 141 at once and silently", () => {
    const file = join(dir, "piped.bin");
    writeFileSync(file, payload(8 * 1024 * 1024, 3));
    expect(fsgw(["put", file, ...at()]).code).toBe(0);
    const cmd = [process.execPath, join(root, "src/main.ts"), "get", "piped.bin", "-o", "-", ...at()].map((a) => `'${a}'`).join(" ");
    const shell = Bun.spawnSync(["bash", "-c", `${cmd} 2>"${join(dir, "piped.err")}" | head -c 100 | wc -c; echo "status \${PIPESTATUS[0]}"`], { cwd: dir, timeout: 15_000 });
    expect(shell.stdout.toString()).toBe("100\nstatus 141\n");
    expect(readFileSync(join(dir, "piped.err"), "utf8")).toBe("");
  });

  test("put and get of a long transfer show progress: a bar on a terminal, lines otherwise", () => {
    const file = join(dir, "big.bin");
    writeFileSync(file, payload(64 * 1024 * 1024, 9));
    const fast = { FSGW_PROGRESS_AFTER_MS: "0" }; // show from the start instead of after a second
    const plain = fsgw(["put", file, ...at()], fast);
    expect(plain.code).toBe(0);
    // Hashing first (its own phase), then the transfer.
    expect(plain.err).toMatch(/^put big\.bin \(hashing\) +\d+% [\d.]+ \w+\/64\.0 MiB [\d.]+ \w+\/s ETA \d+:\d\d\n/);
    expect(plain.err).toMatch(/\nput big\.bin +\d+% [\d.]+ \w+\/64\.0 MiB [\d.]+ \w+\/s ETA \d+:\d\d\n/);
    // --json: a script reads stdout; no progress on stderr unless asked for with --progress.
    const json = fsgw(["put", file, "--json", ...at()], fast);
    expect([json.code, json.err]).toEqual([0, ""]);
    expect(fsgw(["put", file, "--json", "--progress", ...at()], fast).err).toContain("put big.bin ");
    // In a pseudo-terminal (util-linux `script`), the bar redraws in place.
    const cmd = [process.execPath, join(root, "src/main.ts"), "get", "big.bin", "-o", join(dir, "big-copy.bin"), ...at()].map((a) => `'${a}'`).join(" ");
    const tty = Bun.spawnSync(["script", "-qefc", cmd, "/dev/null"], { cwd: dir, stdout: "pipe", stderr: "pipe", env: { ...process.env, ...fast } });
    const screen = tty.stdout.toString();
    expect(tty.exitCode).toBe(0);
    expect(screen).toContain("\rget big.bin [");
    expect(screen).toMatch(/\] 100% 64\.0 MiB\/64\.0 MiB/);
    expect(sha256(readFileSync(join(dir, "big-copy.bin")))).toBe(sha256(readFileSync(file)));
  }, 60_000);
});
