// Proves every documented way of starting the server gives Bun's allocator fsgw's purge delay
// (src/util/allocator.ts), which mimalloc reads only from the environment the process starts with:
// `npm start` (package.json), the `fsgw` launcher (bin/fsgw.js, its own test checks the server it
// starts), and the servers the tests and benchmarks start; and that a bare `bun src/main.ts serve`
// says the setting is missing instead of running slower in silence.
import { expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { root } from "../../src/ffi/build";
import { ALLOCATOR_PURGE_DELAY_MS, ALLOCATOR_PURGE_ENV } from "../../src/util/allocator";
import { environOf } from "../helpers/proc";
import { eventually, startServer, tempDir } from "../helpers/server";

const dir = tempDir("allocator");

/** This process's environment without the allocator's variable: what a fresh shell has. */
function cleanEnv(): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...process.env };
  delete env[ALLOCATOR_PURGE_ENV];
  return env;
}

test("package.json's start scripts and bin/fsgw.js carry the value src/util/allocator.ts documents", () => {
  const scripts = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).scripts as Record<string, string>;
  const setting = `${ALLOCATOR_PURGE_ENV}=\${${ALLOCATOR_PURGE_ENV}:-${ALLOCATOR_PURGE_DELAY_MS}} exec bun src/main.ts`;
  expect(scripts.start).toStartWith(setting);
  expect(scripts.fsgw).toStartWith(setting);
  expect(readFileSync(join(root, "bin/fsgw.js"), "utf8")).toContain(`{ ${ALLOCATOR_PURGE_ENV}: "${ALLOCATOR_PURGE_DELAY_MS}", ...process.env }`);
});

test("`npm start`: the server process runs with fsgw's purge delay and logs it; one the caller sets wins", async () => {
  for (const [name, given, expected] of [
    ["default", undefined, String(ALLOCATOR_PURGE_DELAY_MS)],
    ["caller", "-1", "-1"],
  ] as const) {
    const log = join(dir, `npm-${name}.log`);
    const env = { ...cleanEnv(), ...(given === undefined ? {} : { [ALLOCATOR_PURGE_ENV]: given }) };
    const flags = ["--port", "0", "--admin-port", "0", "--http-port", "0", "--data-dir", join(dir, name), "--log-file", log];
    const npm = Bun.spawn(["npm", "start", "--", ...flags], { cwd: root, env, stdout: "ignore", stderr: "ignore" });
    await eventually(() => existsSync(log) && readFileSync(log, "utf8").includes("event=listening"), 20_000, `a listening line in ${log}`);
    const text = readFileSync(log, "utf8");
    const pid = Number(/event=listening .* pid=(\d+)/.exec(text)![1]);
    try {
      expect(environOf(pid).get(ALLOCATOR_PURGE_ENV)).toBe(expected);
      expect(text).toContain(`event=allocator ${ALLOCATOR_PURGE_ENV}=${expected}`);
    } finally {
      process.kill(pid, "SIGTERM");
    }
    await eventually(() => !existsSync(`/proc/${pid}`) || readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z "), 10_000, "the server gone");
    await npm.exited;
  }
}, 60_000);

test("servers the tests and benchmarks start run as `npm start` does; a bare start says what is missing", async () => {
  const usual = await startServer();
  try {
    expect(environOf(usual.pid).get(ALLOCATOR_PURGE_ENV)).toBe(String(ALLOCATOR_PURGE_DELAY_MS));
  } finally {
    await usual.stop();
  }
  // "" unsets it: mimalloc's own default, as under `bun src/main.ts serve` in a fresh shell.
  const bare = await startServer({}, { [ALLOCATOR_PURGE_ENV]: "" });
  try {
    expect(environOf(bare.pid).has(ALLOCATOR_PURGE_ENV)).toBe(false);
    const line = await bare.line("event=allocator");
    expect(line).toContain(`${ALLOCATOR_PURGE_ENV}="unset (mimalloc's 10 ms)"`);
    expect(line).toContain(`set ${ALLOCATOR_PURGE_ENV}=${ALLOCATOR_PURGE_DELAY_MS}`);
  } finally {
    await bare.stop();
  }
});
