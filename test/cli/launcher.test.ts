// Proves the `fsgw` launcher (bin/fsgw.js) works with only Node on the machine: from a directory
// outside the clone, through a symlink as `npm link` makes one, with no Bun on PATH; it passes
// signals to the server and its exit code back; without an installed Bun it says what to run.
import { afterAll, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import { root } from "../../src/ffi/build";
import { ALLOCATOR_PURGE_DELAY_MS, ALLOCATOR_PURGE_ENV } from "../../src/util/allocator";
import { environOf } from "../helpers/proc";
import { eventually, tempDir } from "../helpers/server";

const node = Bun.which("node");
const outside = tempDir("launcher");
const binDir = join(outside, "bin");
mkdirSync(binDir);
symlinkSync(join(root, "bin/fsgw.js"), join(binDir, "fsgw"));
/** node's directory and the linked command: no Bun anywhere on it. */
const PATH = `${binDir}:${node === null ? "/usr/bin" : dirname(node)}`;
const env = { PATH, HOME: outside };

const running: Bun.Subprocess[] = [];
afterAll(() => {
  for (const p of running) p.kill("SIGKILL");
});

test("node is here and bun is not on the launcher's PATH", () => {
  expect(node).not.toBeNull();
  expect(Bun.which("bun", { PATH })).toBeNull();
});

test("`fsgw` from outside the clone with only Node: help, and a client command's exit code and JSON", () => {
  const help = Bun.spawnSync(["fsgw", "--help"], { cwd: outside, env });
  expect(help.exitCode).toBe(0);
  expect(help.stdout.toString()).toContain("commands:");
  const stat = Bun.spawnSync(["fsgw", "stat", "x", "--port", "1", "--json"], { cwd: outside, env });
  expect(stat.exitCode).toBe(3);
  expect(JSON.parse(stat.stdout.toString())).toMatchObject({ op: "stat", key: "x", exitCode: 3 });
});

test("`fsgw serve` through the launcher: SIGTERM to the launcher stops the server cleanly and frees its data directory", async () => {
  const dataDir = join(outside, "data");
  const proc = Bun.spawn(["fsgw", "serve", "--host", "127.0.0.1", "--port", "0", "--admin-port", "0", "--http-port", "0", "--data-dir", dataDir], { cwd: outside, env, stdout: "pipe", stderr: "pipe" });
  running.push(proc);
  const out: string[] = [];
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stdout) out.push(decoder.decode(chunk));
  })();
  await eventually(() => out.join("").includes("event=listening"), 10_000, "the server listening");
  const serverPid = Number(/event=listening .* pid=(\d+)/.exec(out.join(""))![1]);
  expect(serverPid).not.toBe(proc.pid); // the server is the launcher's child
  // The launcher gives Bun's allocator fsgw's purge delay (src/util/allocator.ts): read at start.
  expect(environOf(serverPid).get(ALLOCATOR_PURGE_ENV)).toBe(String(ALLOCATOR_PURGE_DELAY_MS));
  proc.kill("SIGTERM");
  expect(await proc.exited).toBe(0);
  expect(existsSync(`/proc/${serverPid}`)).toBe(false);
  expect(out.join("")).toContain("event=stopped");
  // Nothing holds the data directory any more: another server starts on it (given the time a
  // start takes on a loaded machine: 1.5 s was not always enough beside the parallel test files).
  const again = Bun.spawn(["fsgw", "serve", "--host", "127.0.0.1", "--port", "0", "--admin-port", "0", "--http-port", "0", "--data-dir", dataDir, "--shutdown-grace-ms", "0"], { cwd: outside, env, stdout: "pipe", stderr: "pipe" });
  running.push(again);
  const againOut: string[] = [];
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of again.stdout) againOut.push(decoder.decode(chunk));
  })();
  await eventually(() => againOut.join("").includes("event=listening") || again.exitCode !== null, 10_000, "the second server listening or ending");
  expect(againOut.join("")).toContain("event=listening");
  again.kill("SIGTERM");
  expect(await again.exited).toBe(0);
}, 30_000);

test("without `npm install` the launcher says what to run, exit 127", () => {
  const bare = join(tempDir("launcher-bare"), "fsgw");
  mkdirSync(join(bare, "bin"), { recursive: true });
  copyFileSync(join(root, "bin/fsgw.js"), join(bare, "bin/fsgw.js"));
  const r = Bun.spawnSync([node ?? "node", join(bare, "bin/fsgw.js"), "--help"], { cwd: outside, env });
  expect(r.exitCode).toBe(127);
  expect(r.stderr.toString()).toContain("run `npm install` there");
  expect(readFileSync(join(root, "package.json"), "utf8")).toContain('"fsgw": "bin/fsgw.js"');
});
