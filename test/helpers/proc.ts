// Looks at a running process from the outside, through /proc; runs the fsgw command line.
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** The variables a running process started with, as the kernel holds them (what Bun's allocator read). */
export function environOf(pid: number): Map<string, string> {
  const vars = new Map<string, string>();
  for (const entry of readFileSync(`/proc/${pid}/environ`, "utf8").split("\0")) {
    const eq = entry.indexOf("=");
    if (eq > 0) vars.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return vars;
}

/** Runs `fsgw <args>` (src/main.ts under this Bun) to its end: exit code, stdout, stderr. */
export function runFsgw(...args: string[]): { code: number; out: string; err: string } {
  const r = Bun.spawnSync([process.execPath, join(import.meta.dir, "../../src/main.ts"), ...args], { stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString() };
}
