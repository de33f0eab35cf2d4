#!/usr/bin/env node
// The `fsgw` command for a machine that has only Node: it runs src/main.ts on the Bun that
// `npm install` put in this project's node_modules (pinned in package.json), so `npx fsgw`, `npm
// link` and a global install from the clone all work without Bun on PATH. Signals are passed on,
// and the exit code (or the signal) of fsgw is this process's own.
import { spawn } from "node:child_process";
import { existsSync, realpathSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

// The real path: `npm link` and global installs reach this file through symlinks.
const root = dirname(dirname(realpathSync(fileURLToPath(import.meta.url))));
const bun = join(root, "node_modules", "bun", "bin", "bun.exe");
if (!existsSync(bun)) {
  process.stderr.write(`fsgw: Bun is not installed in ${root}: run \`npm install\` there (fsgw runs on the Bun pinned in its package.json)\n`);
  process.exit(127);
}
// Bun's allocator keeps freed memory 10 s before giving it back, unless the caller chose otherwise:
// read once at start, so it is set here (the value and why: src/util/allocator.ts).
const env = { MIMALLOC_PURGE_DELAY: "10000", ...process.env };
const child = spawn(bun, [join(root, "src", "main.ts"), ...process.argv.slice(2)], { stdio: "inherit", env });
const forwarded = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"];
for (const signal of forwarded) process.on(signal, () => child.kill(signal));
child.on("error", (e) => {
  process.stderr.write(`fsgw: cannot run ${bun}: ${e.message}\n`);
  process.exit(127);
});
child.on("exit", (code, signal) => {
  if (signal !== null) {
    // Die of the same signal, so a shell sees what happened to fsgw.
    for (const s of forwarded) process.removeAllListeners(s);
    process.kill(process.pid, signal);
    return;
  }
  process.exit(code ?? 1);
});
