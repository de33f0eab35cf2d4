// Proves key validation accepts every legitimate file name and refuses every escape or collision.
import { describe, expect, test } from "bun:test";
import { checkKey } from "../../src/storage/keys";

describe("checkKey", () => {
  test("accepts ordinary, dotted, spaced and non-ASCII keys up to 255 bytes", () => {
    for (const key of ["a", "bench_mark_file_1", "..x", ".hidden", "a b", "ключ", "🔑", "x".repeat(255), "é".repeat(127), "a/b", "photos/2026/cat.jpg", "a/..x/.b", "x/".repeat(127) + "x"]) {
      expect(typeof checkKey(key)).toBe("object");
    }
  });

  test("refuses with a reason", () => {
    const cases: [string, string][] = [
      ["", "empty"],
      [".", "not a file name"],
      ["..", "not a file name"],
      ["../x", "contains the segment '..'"],
      ["../../etc/x", "contains the segment '..'"],
      ["a/../b", "contains the segment '..'"],
      ["a/./b", "contains the segment '.'"],
      ["a/..", "contains the segment '..'"],
      ["/etc/passwd", "starts with '/'"],
      ["/", "starts with '/'"],
      ["a/", "ends with '/'"],
      ["a//b", "contains '//'"],
      ["a\\b", "contains '\\'"],
      ["a\0b", "NUL"],
      ["a\nb", "control character"],
      ["a\x7fb", "control character"],
      ["a\u0085b", "control character"],
      ["x".repeat(256), "longer than 255 bytes"],
      ["é".repeat(128), "longer than 255 bytes"], // 128 characters, 256 bytes
      ["a\ud800b", "not valid UTF-8"],
    ];
    for (const [key, reason] of cases) {
      const r = checkKey(key);
      expect(typeof r).toBe("string");
      expect(r as string).toStartWith("invalid key: ");
      expect(r as string).toContain(reason);
    }
  });

  test("the shard hash is FNV-1a 32 of the UTF-8 bytes (the layout on disk depends on it)", () => {
    expect(checkKey("a")).toEqual({ name: "a", hash: 0xe40c292c });
    expect(checkKey("foobar")).toEqual({ name: "foobar", hash: 0xbf9cf968 });
    expect(checkKey("é")).toEqual({ name: "é", hash: fnv([0xc3, 0xa9]) });
  });
});

function fnv(bytes: number[]): number {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193);
  return h >>> 0;
}
