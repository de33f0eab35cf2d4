// The C thread pool's library, build/libfsgw_pool.so: built from ffi/ by `npm install` (the
// postinstall step runs scripts/build-ffi.ts), by `npm run build:ffi`, and before the tests; never
// by a server start (a running server does not run a compiler). Stale means: the sources or the
// flags changed since it was built (a stamp holds their hash; mtimes lie after git checkouts).
// Builds write to a temporary name and rename, so a concurrent load never sees a torn file.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

export const root = resolve(import.meta.dir, "../..");
export const ffiDir = join(root, "ffi");
export const buildDir = join(root, "build");
export const libraryPath = join(buildDir, "libfsgw_pool.so");
const stampPath = libraryPath + ".stamp";

/** The library's C files, compiled together; headers count for staleness. */
export const C_FILES = ["fsgw_pool.c", "fsgw_sha256.c", "fsgw_md5.c", "fsgw_index.c", "fsgw_volume.c"];
const SOURCES = [...C_FILES, "fsgw_pool.h", "fsgw_sha256.h", "fsgw_md5.h", "fsgw_md_blocks.h", "fsgw_index.h", "fsgw_volume.h"];
export const CFLAGS = ["-std=c11", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-fPIC", "-pthread"];

function stampOf(): string {
  const h = new Bun.CryptoHasher("sha256");
  for (const name of SOURCES) h.update(readFileSync(join(ffiDir, name)));
  h.update(CFLAGS.join(" "));
  return h.digest("hex");
}

/** The command that builds the library, as the messages that need it say. */
export const BUILD_COMMAND = "npm run build:ffi";

export type LibraryState = "built" | "missing" | "stale";

/** Whether the library is there, and built from the sources ffi/ holds now. */
export function libraryState(): LibraryState {
  if (!existsSync(libraryPath)) return "missing";
  return existsSync(stampPath) && readFileSync(stampPath, "utf8") === stampOf() ? "built" : "stale";
}

/**
 * Builds the library when it is missing or stale; returns its path and whether it was built now.
 * Throws with gcc's output on failure (and when gcc is not there: code ENOENT).
 */
export function buildLibrary(): { path: string; built: boolean } {
  if (libraryState() === "built") return { path: libraryPath, built: false };
  const stamp = stampOf();
  mkdirSync(buildDir, { recursive: true });
  const tmp = `${libraryPath}.${process.pid}.tmp`;
  if (Bun.which("gcc") === null) throw Object.assign(new Error("gcc is not on PATH"), { code: "ENOENT" });
  const r = Bun.spawnSync(["gcc", ...CFLAGS, "-shared", "-o", tmp, ...C_FILES.map((f) => join(ffiDir, f))], { stderr: "pipe", stdout: "pipe" });
  if (r.exitCode !== 0) {
    throw new Error(`building ${libraryPath} failed (gcc exit ${r.exitCode}):\n${r.stderr.toString()}`);
  }
  renameSync(tmp, libraryPath);
  writeFileSync(stampPath, stamp);
  return { path: libraryPath, built: true };
}
