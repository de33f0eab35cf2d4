// Runs the C-level tests of the thread pool (ffi/test_pool.c: full queue, cancel on stop, every
// op's error path, 20,000 ops through 64 slots) and of the listing index (ffi/test_index.c: random
// adds and removes against a reference, pages, common prefixes, writers beside a reader); once
// under AddressSanitizer + UBSan and once under ThreadSanitizer. Each C check becomes one test here.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { C_FILES, CFLAGS, ffiDir } from "../../src/ffi/build";
import { tempDir } from "../helpers/server";

const variants: [string, string[]][] = [
  ["asan+ubsan", ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]],
  ["tsan", ["-fsanitize=thread"]],
];

for (const [program, what] of [["test_pool", "C pool"], ["test_index", "C listing index"]] as const)
for (const [name, flags] of variants) {
  const bin = join(tempDir("ctest"), `${program}_${name}`);
  const cflags = CFLAGS.filter((f) => f !== "-fPIC" && f !== "-O2");
  const build = Bun.spawnSync(["gcc", ...cflags, "-O1", ...flags, "-o", bin, join(ffiDir, `${program}.c`), ...C_FILES.map((f) => join(ffiDir, f))], { stderr: "pipe" });
  describe(`${what} tests (${name})`, () => {
    test("builds with -Wall -Wextra -Werror", () => {
      expect(build.stderr.toString()).toBe("");
      expect(build.exitCode).toBe(0);
    });
    if (build.exitCode !== 0) return;
    const run = Bun.spawnSync([bin], { stderr: "pipe", stdout: "pipe", env: { ...process.env, TSAN_OPTIONS: "halt_on_error=1", ASAN_OPTIONS: "detect_leaks=1" } });
    const lines = run.stdout.toString().split("\n");
    for (const line of lines) {
      const m = /^(ok|not ok) - (.*)$/.exec(line);
      if (m) test(m[2]!, () => expect(line).toStartWith("ok - "));
    }
    test("exits 0 with no sanitizer report", () => {
      expect(run.stderr.toString()).toBe("");
      expect(lines.some((l) => /^\d+ checks, 0 failed$/.test(l))).toBe(true);
      expect(run.exitCode).toBe(0);
    });
  });
}
