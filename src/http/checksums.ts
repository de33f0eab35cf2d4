// The additional checksums S3 clients send with a body (x-amz-checksum-<algorithm>, as a header or,
// with aws-chunked bodies, as a trailer after the last chunk; x-amz-sdk-checksum-algorithm names
// it), computed as the body arrives so that a body that does not match is refused before its
// commit (BadDigest), as S3 does. CRC-32 is Bun's native one (it continues from a seed); CRC-32C
// (Castagnoli) is table-driven here; SHA-1 and SHA-256 are Bun's hashers. CRC-64/NVME, the newest
// SDKs' choice for some calls, is refused with a clear error rather than stored unchecked.

export type ChecksumAlgorithm = "crc32" | "crc32c" | "sha1" | "sha256";
const ALGORITHMS: readonly ChecksumAlgorithm[] = ["crc32", "crc32c", "sha1", "sha256"];

/** The algorithm of an `x-amz-checksum-<name>` header or trailer name, null when it is not one, "unsupported" for one we cannot compute. */
export function checksumAlgorithmOf(headerName: string): ChecksumAlgorithm | "unsupported" | null {
  const name = headerName.toLowerCase();
  if (!name.startsWith("x-amz-checksum-") || name === "x-amz-checksum-mode" || name === "x-amz-checksum-type" || name === "x-amz-checksum-algorithm") return null;
  const algorithm = name.slice("x-amz-checksum-".length);
  return (ALGORITHMS as readonly string[]).includes(algorithm) ? (algorithm as ChecksumAlgorithm) : "unsupported";
}

/** A checksum computed as a body arrives; `base64()` once it is all in. */
export class ChecksumHasher {
  private crc = 0;
  private readonly hasher: Bun.CryptoHasher | null;

  constructor(readonly algorithm: ChecksumAlgorithm) {
    this.hasher = algorithm === "sha1" || algorithm === "sha256" ? new Bun.CryptoHasher(algorithm) : null;
  }

  update(bytes: Uint8Array): void {
    if (this.hasher !== null) this.hasher.update(bytes);
    else if (this.algorithm === "crc32") this.crc = Bun.hash.crc32(bytes, this.crc);
    else this.crc = crc32c(bytes, this.crc);
  }

  /** The checksum as S3 writes it: the big-endian bytes of a CRC, or the digest, in base64. */
  base64(): string {
    if (this.hasher !== null) return this.hasher.digest("base64");
    const out = Buffer.alloc(4);
    out.writeUInt32BE(this.crc >>> 0);
    return out.toString("base64");
  }
}

const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32C (Castagnoli, reflected) of `bytes`, continuing from `crc` (0 to start). */
export function crc32c(bytes: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC32C_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}
