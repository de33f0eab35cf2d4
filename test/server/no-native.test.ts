// Proves that the Bun-native and synchronous engines need no C: on a copy of the project with no
// built library and no gcc on PATH, `--io-engine bun` serves byte for byte, the data directory's
// lock falls back to a pid file (a second server is still refused), the log says what was lost;
// and `--io-engine cpool` there fails at start with one clear line. And that a start never runs a
// compiler: a copy with the library built (as npm install leaves it) serves with the C pool
// without gcc.
import { afterAll, expect, test } from "bun:test";
import { cpSync, symlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import { downloadExchange, uploadExchange } from "../../src/client/exchanges";
import { WireConn } from "../../src/client/wire-conn";
import { root } from "../../src/ffi/build";
import { payload, sha256 } from "../helpers/data";
import { startServer, tempDir, type TestServer } from "../helpers/server";

const copy = join(tempDir("no-native"), "fsgw");
for (const part of ["src", "ffi", "package.json", "tsconfig.json", "bunfig.toml"]) cpSync(join(root, part), join(copy, part), { recursive: true });
symlinkSync(join(root, "node_modules"), join(copy, "node_modules"));
/** Only bun's own directory: no gcc. */
const noGcc = { PATH: dirname(process.execPath) };

const servers: TestServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.stop();
});

test("--io-engine bun without gcc or the C library: serves, locks its data directory by pid file, says what it lost", async () => {
  expect(Bun.which("gcc", { PATH: noGcc.PATH })).toBeNull();
  const server = await startServer({ ioEngine: "bun" }, noGcc, [], copy);
  servers.push(server);
  const ready = server.lines.find((l) => l.includes("event=store_ready"))!;
  expect(ready).toContain("no flock");
  const limit = server.lines.find((l) => l.includes("event=open_file_limit"))!;
  expect(limit).toContain("level=warn");
  expect(limit).toContain("cannot raise without the C library");

  const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
  for (const size of [1000, 300_000]) {
    const body = payload(size, size);
    await uploadExchange(conn, `k${size}`, size, (c) => c.write(body));
    const parts: Uint8Array[] = [];
    await downloadExchange(conn, `k${size}`, (p) => void parts.push(p.slice()));
    expect(sha256(Buffer.concat(parts))).toBe(sha256(body));
  }
  conn.close();

  // The pid-file lock still keeps a second server off the same data directory.
  const second = Bun.spawnSync([process.execPath, join(copy, "src/main.ts"), "serve", "--io-engine", "bun", "--port", "0", "--admin-port", "0", "--http-port", "0", "--data-dir", server.dataDir], { env: noGcc, cwd: copy });
  expect(second.exitCode).toBe(1);
  expect(second.stdout.toString() + second.stderr.toString()).toContain("in use by another fsgw server");
});

test("a server start never runs a compiler: with the library built at install and no gcc on PATH, the C pool serves", async () => {
  const built = join(tempDir("no-gcc-built"), "fsgw");
  for (const part of ["src", "ffi", "build", "package.json", "tsconfig.json", "bunfig.toml"]) cpSync(join(root, part), join(built, part), { recursive: true });
  symlinkSync(join(root, "node_modules"), join(built, "node_modules"));
  const server = await startServer({ ioEngine: "cpool" }, noGcc, [], built);
  servers.push(server);
  expect(server.lines.some((l) => l.includes("event=io_pool"))).toBe(true);
  const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
  const body = payload(300_000, 7);
  await uploadExchange(conn, "with-cpool", body.length, (c) => c.write(body));
  const parts: Uint8Array[] = [];
  await downloadExchange(conn, "with-cpool", (p) => void parts.push(p.slice()));
  expect(sha256(Buffer.concat(parts))).toBe(sha256(body));
  conn.close();
});

test("--io-engine cpool without the library built fails at start with one clear line naming the command that builds it", () => {
  const r = Bun.spawnSync([process.execPath, join(copy, "src/main.ts"), "serve", "--io-engine", "cpool", "--port", "0", "--admin-port", "0", "--http-port", "0", "--data-dir", join(tempDir("no-native-cpool"), "d")], { env: noGcc, cwd: copy });
  const out = r.stdout.toString() + r.stderr.toString();
  expect(r.exitCode).toBe(1);
  expect(out).toContain("event=start_failed");
  expect(out).toContain("the C library is not built");
  expect(out).toContain("npm run build:ffi");
  expect(out).toContain("--io-engine bun");
  expect(out).not.toContain("    at ");
});
