// The hashing, HMAC, constant-time comparison and randomness the server needs, on Bun's native
// hasher and Web Crypto: node:crypto costs every thread that loads it ~15 ms of CPU at start (each
// event loop, and the supervisor), for functions Bun has natively. What only TLS needs
// (certificates, OpenSSL's option bits) loads node:crypto when TLS is configured.
import type * as NodeCrypto from "node:crypto";

/** HMAC-SHA-256 of `data` under `key`. */
export function hmacSha256(key: Uint8Array | string, data: Uint8Array | string): Buffer {
  return new Bun.CryptoHasher("sha256", key).update(data).digest();
}

/** SHA-256 of `data`, in hex. */
export function sha256Hex(data: Uint8Array | string): string {
  return new Bun.CryptoHasher("sha256").update(data).digest("hex");
}

/** Whether `a` and `b` hold the same bytes, in a time that depends only on their lengths. */
export function sameBytesConstantTime(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/** `n` random bytes from the system's CSPRNG. */
export function randomBytes(n: number): Buffer {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(n)));
}

/** node:crypto, loaded on first use by what only TLS needs. */
export function nodeCrypto(): typeof NodeCrypto {
  return require("node:crypto") as typeof NodeCrypto;
}
