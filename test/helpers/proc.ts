// Looks at a running process from the outside, through /proc.
import { readFileSync } from "node:fs";

/** The variables a running process started with, as the kernel holds them (what Bun's allocator read). */
export function environOf(pid: number): Map<string, string> {
  const vars = new Map<string, string>();
  for (const entry of readFileSync(`/proc/${pid}/environ`, "utf8").split("\0")) {
    const eq = entry.indexOf("=");
    if (eq > 0) vars.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return vars;
}
