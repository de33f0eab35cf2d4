// Builds ffi/ into build/libfsgw_pool.so with the system gcc when it is missing or stale.
// Stale means: the sources or the flags changed (a stamp holds their hash; mtimes lie after git
// checkouts). Builds write to a temporary name and rename, so concurrent starts never see a torn file.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

export const root = resolve(import.meta.dir, "../..");
export const ffiDir = join(root, "ffi");
export const buildDir = join(root, "build");
export const libraryPath = join(buildDir, "libfsgw_pool.so");
const stampPath = libraryPath + ".stamp";

/** The library's C files, compiled together; headers count for staleness. */
export const C_FILES = ["fsgw_pool.c", "fsgw_sha256.c"];
const SOURCES = [...C_FILES, "fsgw_pool.h", "fsgw_sha256.h"];
export const CFLAGS = ["-std=c11", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-fPIC", "-pthread"];

function stampOf(): string {
  const h = new Bun.CryptoHasher("sha256");
  for (const name of SOURCES) h.update(readFileSync(join(ffiDir, name)));
  h.update(CFLAGS.join(" "));
  return h.digest("hex");
}

/** Returns the library's path, building it first if needed. Throws with gcc's output on failure. */
export function ensureLibrary(): string {
  const stamp = stampOf();
  if (existsSync(libraryPath) && existsSync(stampPath) && readFileSync(stampPath, "utf8") === stamp) return libraryPath;
  mkdirSync(buildDir, { recursive: true });
  const tmp = `${libraryPath}.${process.pid}.tmp`;
  const r = Bun.spawnSync(["gcc", ...CFLAGS, "-shared", "-o", tmp, ...C_FILES.map((f) => join(ffiDir, f))], { stderr: "pipe", stdout: "pipe" });
  if (r.exitCode !== 0) {
    throw new Error(`building ${libraryPath} failed (gcc exit ${r.exitCode}):\n${r.stderr.toString()}`);
  }
  renameSync(tmp, libraryPath);
  writeFileSync(stampPath, stamp);
  return libraryPath;
}
