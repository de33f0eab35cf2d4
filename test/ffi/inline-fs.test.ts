// Proves the inline operations of the C library (fsgw_stat_cached, fsgw_read_cached): they answer
// exactly what stat and read answer when the kernel has the file in memory, refuse with -EAGAIN
// (never wait) when it does not, and are forced to refuse by the test hook.
import { afterEach, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { constants } from "node:os";
import { join } from "node:path";
import { fsIsLocal, InlineFs } from "../../src/ffi/pool-binding";
import { FACT_MTIME, md5HexOf, md5Of, mtimeMsOf, sha256Base64Of, sha256HexOf, sha256Of } from "../../src/storage/store";
import { payload } from "../helpers/data";
import { setInlineRefused } from "../helpers/native-hooks";
import { tempDir } from "../helpers/server";

const { EAGAIN, ENOENT, EISDIR, ENAMETOOLONG } = constants.errno;
const S_IFMT = 0o170000;

function run(cmd: string[]): void {
  const r = Bun.spawnSync(cmd, { stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${r.stderr.toString()}`);
}

describe("InlineFs", () => {
  const dir = tempDir("inline");
  const inline = new InlineFs();
  afterEach(() => setInlineRefused(false));

  test("digests read inline land where JavaScript reads them, call after call (memory C writes never moves)", () => {
    // Two files with different recorded digests, each set with python's os.setxattr (node has
    // none); the second records an MD5 after its SHA-256, as an HTTP upload does.
    const digests = ["11".repeat(32), "22".repeat(32) + "33".repeat(16)];
    const files = digests.map((hex, i) => {
      const path = join(dir, `digested-${i}`);
      writeFileSync(path, "x".repeat(i + 1));
      run(["python3", "-c", `import os; os.setxattr(${JSON.stringify(path)}, "user.fsgw.sha256", bytes.fromhex("${hex}"))`]);
      return path;
    });
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 2; i++) {
        expect(inline.statCached(files[i]!)).toBe(i + 1);
        // lastDigest is the binding's buffer: reading it must not move the memory C writes into.
        const facts = inline.lastDigest;
        expect(Buffer.from(sha256Of(facts)!).toString("hex")).toBe(digests[i]!.slice(0, 64));
        expect(md5Of(facts) === null ? null : Buffer.from(md5Of(facts)!).toString("hex")).toBe(i === 1 ? "33".repeat(16) : null);
        // The answers' readers: text from the same bytes, in place.
        expect(sha256HexOf(facts)).toBe(digests[i]!.slice(0, 64));
        expect(sha256Base64Of(facts)).toBe(Buffer.from(digests[i]!.slice(0, 64), "hex").toString("base64"));
        expect(md5HexOf(facts)).toBe(i === 1 ? "33".repeat(16) : null);
        expect(Math.abs(mtimeMsOf(facts)! - statSync(files[i]!).mtimeMs)).toBeLessThan(1);
        Bun.gc(true);
      }
    }
    writeFileSync(join(dir, "undigested"), "y");
    expect(inline.statCached(join(dir, "undigested"))).toBe(1);
    expect(sha256Of(inline.lastDigest)).toBeNull();
    expect(mtimeMsOf(inline.lastDigest)).toBeGreaterThan(0);
  });

  test("mtimeMsOf reads int64 little-endian milliseconds, after 1970 from the bytes and before it too", () => {
    const facts = new Uint8Array(57);
    facts[0] = FACT_MTIME;
    const view = new DataView(facts.buffer);
    for (const ms of [0, 1, 255, 256, 2 ** 32 - 1, 2 ** 32, 1_796_460_000_123, 2 ** 53 - 1, -1, -1_000_000]) {
      view.setBigInt64(49, BigInt(ms), true);
      expect(mtimeMsOf(facts)).toBe(ms);
    }
    facts[0] = 0;
    expect(mtimeMsOf(facts)).toBeNull();
  });

  test("statCached answers a cached file's size and mode, like stat", () => {
    const path = join(dir, "five-k");
    writeFileSync(path, payload(5120, 1)); // just written: its dentry and inode are in memory
    expect(inline.statCached(path)).toBe(5120);
    expect(inline.lastMode & S_IFMT).toBe(statSync(path).mode & S_IFMT);
    mkdirSync(join(dir, "sub"));
    expect(inline.statCached(join(dir, "sub"))).toBe(statSync(join(dir, "sub")).size);
    expect(inline.lastMode & S_IFMT).toBe(0o040000);
  });

  test("a name never looked up is refused (the kernel would read the directory); once looked up, its absence is an answer", () => {
    const path = join(dir, `never-${process.pid}-${Date.now()}`);
    expect(inline.statCached(path)).toBe(-EAGAIN);
    expect(() => statSync(path)).toThrow(); // the lookup the pool would make: caches a negative entry
    expect(inline.statCached(path)).toBe(-ENOENT);
  });

  test("readCached reads a cached file whole, reports the size of one too large, and refuses directories", () => {
    const body = payload(50 * 1024, 2);
    const path = join(dir, "fifty-k");
    writeFileSync(path, body);
    const into = new Uint8Array(64 * 1024);
    expect(inline.readCached(path, into)).toBe(body.length);
    expect(Buffer.from(into.subarray(0, body.length)).equals(Buffer.from(body))).toBe(true);
    const small = new Uint8Array(1000);
    expect(inline.readCached(path, small)).toBe(body.length); // too large: size only, nothing read
    expect(small.every((b) => b === 0)).toBe(true);
    expect(inline.readCached(join(dir, "sub-for-read"), into)).toBeLessThan(0); // not looked up, or missing
    mkdirSync(join(dir, "adir"));
    expect(inline.readCached(join(dir, "adir"), into)).toBe(-EISDIR);
  });

  test("pages not in the page cache are refused, not waited for", () => {
    const path = join(dir, "evicted");
    writeFileSync(path, payload(256 * 1024, 3));
    // Write the pages back, then drop them (posix_fadvise DONTNEED, through GNU dd's nocache flags).
    run(["dd", `of=${path}`, "oflag=nocache,append", "conv=notrunc,fdatasync", "count=0", "status=none"]);
    run(["dd", `if=${path}`, "iflag=nocache", "count=0", "status=none"]);
    expect(inline.readCached(path, new Uint8Array(512 * 1024))).toBe(-EAGAIN);
    expect(readFileSync(path).length).toBe(256 * 1024); // a blocking read (the pool's) brings them back
    expect(inline.readCached(path, new Uint8Array(512 * 1024))).toBe(256 * 1024);
  });

  test("the test hook makes every call refuse, and answers resume when it is off", () => {
    const path = join(dir, "hooked");
    writeFileSync(path, "abc");
    setInlineRefused(true);
    expect(inline.statCached(path)).toBe(-EAGAIN);
    expect(inline.readCached(path, new Uint8Array(10))).toBe(-EAGAIN);
    setInlineRefused(false);
    expect(inline.statCached(path)).toBe(3);
    const into = new Uint8Array(10);
    expect(inline.readCached(path, into)).toBe(3);
    expect(new TextDecoder().decode(into.subarray(0, 3))).toBe(readFileSync(path, "utf8"));
  });

  test("counters split answered from refused; a path past PATH_MAX is refused without a system call", () => {
    const before = { answered: inline.answered, refused: inline.refused };
    inline.statCached(join(dir, "hooked"));
    setInlineRefused(true);
    inline.statCached(join(dir, "hooked"));
    setInlineRefused(false);
    expect(inline.answered - before.answered).toBe(1);
    expect(inline.refused - before.refused).toBe(1);
    expect(inline.statCached("/" + "x".repeat(5000))).toBe(-ENAMETOOLONG);
  });

  test("fsIsLocal: the test directory's file system is local; procfs is not one the inline path trusts", () => {
    expect(fsIsLocal(dir)).toBe(1);
    expect(fsIsLocal("/proc")).toBe(0);
    expect(fsIsLocal(join(dir, "no", "such"))).toBe(-ENOENT);
  });
});
