// Proves the server's hashing helpers against node:crypto's (what they replace): HMAC-SHA-256 and
// SHA-256 byte for byte, the constant-time comparison's answers, and randomness of the asked size.
import { expect, test } from "bun:test";
import { createHash, createHmac } from "node:crypto";
import { hmacSha256, randomBytes, sameBytesConstantTime, sha256Hex } from "../../src/util/crypto";

test("HMAC-SHA-256 and SHA-256 equal node:crypto's, for string and byte keys and data", () => {
  for (const [key, data] of [["AWS4secret", "20261204"], [new Uint8Array(64).fill(9), "x".repeat(1000)], [new Uint8Array(0), new Uint8Array([1, 2, 3])]] as const) {
    expect(hmacSha256(key, data).toString("hex")).toBe(createHmac("sha256", key).update(data).digest("hex"));
    expect(sha256Hex(data)).toBe(createHash("sha256").update(data).digest("hex"));
  }
});

test("sameBytesConstantTime: equal bytes only; any one byte, or the length, differs", () => {
  const a = new Uint8Array([1, 2, 3, 4]);
  expect(sameBytesConstantTime(a, new Uint8Array([1, 2, 3, 4]))).toBe(true);
  for (let i = 0; i < 4; i++) {
    const b = a.slice();
    b[i]! ^= 0x80;
    expect(sameBytesConstantTime(a, b)).toBe(false);
  }
  expect(sameBytesConstantTime(a, a.subarray(0, 3))).toBe(false);
  expect(sameBytesConstantTime(new Uint8Array(0), new Uint8Array(0))).toBe(true);
});

test("randomBytes: the size asked, and not the same twice", () => {
  expect(randomBytes(16).length).toBe(16);
  expect(randomBytes(32).equals(randomBytes(32))).toBe(false);
});
