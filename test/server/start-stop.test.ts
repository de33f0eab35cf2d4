// Proves starting and stopping as the README says: `npm start` hands SIGTERM to the server (no
// orphan holding the port and the lock), --pid-file is written once listening and removed at the
// stop; a port in use is named with its listener and nothing claims to be listening; config
// mistakes say where (JSON line and column, a flag missing its value, an unknown FSGW_* variable).
import { afterAll, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { root } from "../../src/ffi/build";
import { eventually, freePort, startServer, tempDir, type TestServer } from "../helpers/server";

const dir = tempDir("start-stop");
const servers: TestServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.stop();
});

/** Runs `fsgw serve` with these flags to its end (it is expected to refuse to start). */
function serveOnce(args: string[], env: Record<string, string> = {}) {
  const r = Bun.spawnSync([process.execPath, join(root, "src/main.ts"), "serve", "--host", "127.0.0.1", "--admin-port", "0", "--http-port", "0", ...args], {
    cwd: dir,
    env: { ...process.env, ...env },
    timeout: 10_000,
  });
  return { code: r.exitCode, out: r.stdout.toString() + r.stderr.toString() };
}

test("npm start: SIGTERM to npm stops the server (nothing left holding the port or the lock); --pid-file comes and goes", async () => {
  const dataDir = join(dir, "npm-data");
  const pidFile = join(dir, "fsgw.pid");
  const npm = Bun.spawn(["npm", "start", "--", "--host", "127.0.0.1", "--port", "0", "--admin-port", "0", "--http-port", "0", "--data-dir", dataDir, "--pid-file", pidFile], {
    cwd: root,
    stdout: "pipe",
    stderr: "pipe",
  });
  let out = "";
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of npm.stdout) out += decoder.decode(chunk);
  })();
  try {
    await eventually(() => out.includes("event=listening"), 20_000, "the server listening under npm start");
    const serverPid = Number(/event=listening .* pid=(\d+)/.exec(out)![1]);
    expect(Number(readFileSync(pidFile, "utf8"))).toBe(serverPid);
    npm.kill("SIGTERM");
    await npm.exited;
    await eventually(() => !existsSync(`/proc/${serverPid}`), 10_000, `server ${serverPid} gone`);
    expect(out).toContain("event=stopped");
    expect(existsSync(pidFile)).toBe(false);
  } finally {
    npm.kill("SIGKILL");
  }
}, 40_000);

test("a protocol port in use names the port and the listener; nothing is logged as listening", async () => {
  const first = await startServer({});
  servers.push(first);
  const r = serveOnce(["--port", String(first.port), "--data-dir", join(dir, "second")]);
  expect(r.code).toBe(1);
  expect(r.out).toContain(`cannot listen on 127.0.0.1:${first.port} for the file protocol (host, port): the address is already in use`);
  expect(r.out).not.toContain("event=listening");
  expect(r.out).not.toContain("event=stopped loops="); // no loop ran: none is said to have stopped
});

test("an admin port in use names the admin endpoint; nothing is logged as listening", async () => {
  const adminPort = freePort();
  const first = await startServer({ adminPort });
  servers.push(first);
  const r = Bun.spawnSync([process.execPath, join(root, "src/main.ts"), "serve", "--host", "127.0.0.1", "--port", "0", "--admin-port", String(adminPort), "--http-port", "0", "--data-dir", join(dir, "third")], { timeout: 10_000 });
  const out = r.stdout.toString() + r.stderr.toString();
  expect(r.exitCode).toBe(1);
  expect(out).toContain(`cannot listen on 127.0.0.1:${adminPort} for the admin endpoint (adminHost, adminPort): the address is already in use`);
  expect(out).not.toContain("event=listening");
});

test("config mistakes say where: JSON line and column, a flag without its value, an unknown FSGW_* variable", () => {
  const bad = join(dir, "bad.json");
  writeFileSync(bad, '{\n  "port": 7000,\n  "host" "127.0.0.1"\n}\n');
  const json = serveOnce(["--config", bad]);
  expect(json.code).toBe(2);
  expect(json.out).toContain(`config file ${bad}: line 3, column 10:`);

  const noValue = serveOnce(["--port"]);
  expect(noValue.code).toBe(2);
  expect(noValue.out).toContain("--port needs a value");

  // (A data directory that is a file makes the start fail right after the warning.)
  const typo = serveOnce(["--port", "0", "--data-dir", bad], { FSGW_PROT: "7000" });
  expect(typo.out).toContain("event=config_warning");
  expect(typo.out).toContain("FSGW_PROT");
}, 20_000);
