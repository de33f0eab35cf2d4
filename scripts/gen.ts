// Regenerates src/gen/ from proto/ as buf.gen.yaml says, with the protoc-gen-es that npm installed
// (node_modules/.bin first on PATH; no network). `npm run gen` writes into the repository; the
// freshness test passes another base directory and compares.
import { join, resolve } from "node:path";

const root = resolve(import.meta.dir, "..");

/** Runs `buf generate`; the output lands in <baseDir>/src/gen. */
export function generate(baseDir: string = root): void {
  const bin = join(root, "node_modules/.bin");
  const r = Bun.spawnSync([join(bin, "buf"), "generate", "--output", baseDir], {
    cwd: root,
    env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ""}` },
    stderr: "pipe",
    stdout: "pipe",
  });
  if (r.exitCode !== 0) throw new Error(`buf generate failed: ${r.stderr.toString()}`);
}

if (import.meta.main) {
  generate();
  console.log("generated src/gen from proto/ (buf.gen.yaml)");
}
