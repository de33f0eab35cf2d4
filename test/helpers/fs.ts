// Looks at a data directory from the outside, as an operator would.
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

/** Every file below `dir`, as paths relative to it. */
export function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p, rel + name + "/");
      else out.push(rel + name);
    }
  };
  walk(dir, "");
  return out.sort();
}

/** Files of stored keys (no layout file, no temporaries) as `key` names. */
export function storedKeys(dataDir: string): string[] {
  return listFiles(dataDir)
    .filter((p) => p.includes("/") && !p.includes("\\"))
    .map((p) => p.slice(p.indexOf("/") + 1))
    .sort();
}

export function tempFiles(dataDir: string): string[] {
  return listFiles(dataDir).filter((p) => p.includes("\\"));
}
