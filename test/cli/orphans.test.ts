// Proves a server started in the foreground ends with the command that started it, by every
// documented way: `npx fsgw serve` whose npm is killed (npm does not pass the signal on), `npm
// start` whose npm dies without passing anything on, `npm start` whose terminal goes away (SIGHUP
// and a hung-up tty); and that a server asked to outlive its starter (--detached, nohup) does, and
// still reloads on SIGHUP.
import { afterAll, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { root } from "../../src/ffi/build";
import { eventually, tempDir } from "../helpers/server";

const dir = tempDir("orphans");
const pids: number[] = [];
afterAll(() => {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
});

const alive = (pid: number) => existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ");

/** Waits for the server's "listening" line in its log file; returns its pid. */
async function listening(log: string): Promise<number> {
  await eventually(() => existsSync(log) && readFileSync(log, "utf8").includes("event=listening"), 20_000, `a listening line in ${log}`);
  const pid = Number(/event=listening .* pid=(\d+)/.exec(readFileSync(log, "utf8"))![1]);
  pids.push(pid);
  return pid;
}

const serveFlags = (name: string) => ["--port", "0", "--admin-port", "0", "--http-port", "0", "--data-dir", join(dir, name), "--log-file", join(dir, `${name}.log`)];

test("`npx fsgw serve`, then its npm killed (kill $! in a shell): the server stops and says why", async () => {
  const npx = Bun.spawn(["npx", "fsgw", "serve", ...serveFlags("npx")], { cwd: root, stdout: "ignore", stderr: "ignore" });
  const server = await listening(join(dir, "npx.log"));
  expect(server).not.toBe(npx.pid); // npm, sh, the launcher, then the server
  npx.kill("SIGTERM");
  await eventually(() => !alive(server), 10_000, "the server gone");
  const log = readFileSync(join(dir, "npx.log"), "utf8");
  expect(log).toMatch(/event=shutdown reason="the command that started the server ended \(serve --detached keeps serving\)" starter=\d+/);
  expect(log).toContain("event=stopped loops=");
}, 30_000);

test("`npm start` whose npm dies without a word (SIGKILL): the server stops", async () => {
  const npm = Bun.spawn(["npm", "start", "--", ...serveFlags("npm-kill")], { cwd: root, stdout: "ignore", stderr: "ignore" });
  const server = await listening(join(dir, "npm-kill.log"));
  npm.kill("SIGKILL");
  await eventually(() => !alive(server), 10_000, "the server gone");
  expect(readFileSync(join(dir, "npm-kill.log"), "utf8")).toContain("the command that started the server ended");
}, 30_000);

test("`npm start` in a terminal that closes (its pty hung up, SIGHUP to the group): the server stops instead of reloading", async () => {
  const command = ["npm", "start", "--", ...serveFlags("npm-tty")].join(" ");
  // util-linux `script` holds the terminal: killing it hangs the terminal up, as closing a window does.
  const terminal = Bun.spawn(["script", "-qefc", command, "/dev/null"], { cwd: root, stdout: "ignore", stderr: "ignore" });
  const server = await listening(join(dir, "npm-tty.log"));
  terminal.kill("SIGKILL");
  await eventually(() => !alive(server), 10_000, "the server gone");
  const log = readFileSync(join(dir, "npm-tty.log"), "utf8");
  expect(log).toMatch(/event=shutdown (signal=SIGHUP reason="the terminal that started the server is gone|reason="the command that started the server ended)/);
  expect(log).not.toContain("event=reload ");
  expect(log).not.toContain("event=unhandled_rejection"); // its stdout, the dead terminal, fails writes (EIO)
}, 30_000);

test("--detached and nohup: the server serves on when its starter ends, and SIGHUP reloads it", async () => {
  for (const [name, prefix, flag] of [["detached", "", "--detached"], ["nohup", "nohup ", ""]] as const) {
    // The shell starts the server in the background and exits at once: the starter is gone.
    const flags = [...serveFlags(name), flag].filter((f) => f !== "").join(" ");
    const shell = Bun.spawnSync(["sh", "-c", `${prefix}'${process.execPath}' src/main.ts serve ${flags} >/dev/null 2>&1 &`], { cwd: root });
    expect(shell.exitCode).toBe(0);
    const log = join(dir, `${name}.log`);
    const server = await listening(log);
    expect(readFileSync(log, "utf8")).toContain(`event=detached reason=${name === "detached" ? "detached" : '"SIGHUP ignored at start (nohup)"'}`);
    process.kill(server, "SIGHUP");
    await eventually(() => readFileSync(log, "utf8").includes("event=reload "), 5_000, "a reload");
    // Well past a starter check: still serving.
    await Bun.sleep(1500);
    expect(alive(server)).toBe(true);
    process.kill(server, "SIGTERM");
    await eventually(() => !alive(server), 10_000, "the server gone");
  }
}, 40_000);
