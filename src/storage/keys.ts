// File keys: what a client may name a file. Keys may contain '/' to organise files by prefix, as in
// S3 ("photos/2026/cat.jpg"), but a key never becomes a path: the file store names the file with each
// '/' replaced by a character no key may contain (see file-store.ts), so every key is one file in
// its shard directory, cannot escape it, and cannot collide with a temporary file (those contain a
// backslash, which keys may not).

export const KEY_BYTES_MAX = 255; // NAME_MAX on ext4, xfs, btrfs: a key is stored as one file name

const encoder = new TextEncoder();
/** Scratch space for a key's UTF-8: 3 bytes per UTF-16 unit covers every string of <= 255 units. */
const scratch = new Uint8Array(KEY_BYTES_MAX * 3);

/** A key that passed checkKey: what a store is addressed with. */
export interface StoreKey {
  readonly name: string;
  /** FNV-1a 32 of the key's UTF-8 bytes, for a store that spreads keys (the file store's shards:
   *  stable forever there, since it decides file paths). */
  readonly hash: number;
}

/**
 * Returns the checked key when it is valid, or the text that tells the client why not.
 * Rules: 1..255 bytes of UTF-8; no '\', NUL or control characters; '/' only between segments: not
 * first, not last, never two in a row, and no segment "." or "..".
 */
export function checkKey(key: string): StoreKey | string {
  if (key.length === 0) return "invalid key: empty";
  if (key.length > KEY_BYTES_MAX) return `invalid key: longer than ${KEY_BYTES_MAX} bytes`;
  if (key === "." || key === "..") return `invalid key: '${key}' is not a file name`;
  let segmentStart = 0;
  for (let i = 0; i <= key.length; i++) {
    const c = i === key.length ? 0x2f : key.charCodeAt(i);
    if (c === 0x2f) {
      // A segment ends here: it may not be empty, ".", or "..".
      const length = i - segmentStart;
      if (length === 0) return i === 0 ? "invalid key: starts with '/'" : i === key.length ? "invalid key: ends with '/'" : "invalid key: contains '//'";
      if ((length === 1 || length === 2) && key.slice(segmentStart, i).replaceAll(".", "") === "") return `invalid key: contains the segment '${key.slice(segmentStart, i)}'`;
      segmentStart = i + 1;
      continue;
    }
    if (c === 0x5c) return "invalid key: contains '\\'";
    if (c === 0) return "invalid key: contains NUL";
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) return "invalid key: contains a control character";
    // A lone surrogate cannot be encoded as UTF-8, so it cannot name a file faithfully.
    if (c >= 0xd800 && c <= 0xdfff) {
      const next = key.charCodeAt(i + 1);
      if (c >= 0xdc00 || !(next >= 0xdc00 && next <= 0xdfff)) return "invalid key: not valid UTF-8";
      i++;
    }
  }
  return storeKeyOf(key);
}

/** The StoreKey of a name already checked, or the reason it is too long. */
function storeKeyOf(name: string): StoreKey | string {
  const { written } = encoder.encodeInto(name, scratch);
  if (written > KEY_BYTES_MAX) return `invalid key: longer than ${KEY_BYTES_MAX} bytes`;
  let hash = 0x811c9dc5;
  for (let i = 0; i < written; i++) {
    hash ^= scratch[i]!;
    hash = Math.imul(hash, 0x01000193);
  }
  return { name, hash: hash >>> 0 };
}

// Buckets of the HTTP door beyond the default one (whose keys are the TCP protocol's): each is a
// key space of the one store, "<U+0001><bucket>/<key>", and exists while its marker
// "<U+0001><bucket>" (an empty file) does. U+0001 is a control character, which no client's key
// may hold, so these names can never be reached as the default bucket's keys, and they sort
// before every one of them (a listing of the default bucket starts past them). They count against
// the store's 255 bytes: a key of bucket b has 255 - 2 - len(b) bytes at most.

export const BUCKET_SPACE = "\x01";

/** Why `name` is not a bucket name as S3 allows them, or null: 3-63 of a-z 0-9 . -, a letter or digit at each end, no "..", not an IPv4 address. */
export function checkBucketName(name: string): string | null {
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(name)) return "bucket names have 3 to 63 characters: lower-case letters, digits, '.' and '-', beginning and ending with a letter or digit";
  if (name.includes("..")) return "bucket names may not contain '..'";
  if (/^\d+\.\d+\.\d+\.\d+$/.test(name)) return "bucket names may not look like an IP address";
  return null;
}

/** The store key of `name` in `bucket` (not the default bucket), or why not. */
export function bucketKey(bucket: string, name: string): StoreKey | string {
  const checked = checkKey(name);
  if (typeof checked === "string") return checked;
  const key = storeKeyOf(`${BUCKET_SPACE}${bucket}/${name}`);
  return typeof key === "string" ? `invalid key: longer than ${KEY_BYTES_MAX - 2 - Buffer.byteLength(bucket)} bytes in bucket ${bucket}` : key;
}

/** The marker whose presence makes `bucket` exist. */
export function bucketMarkerKey(bucket: string): StoreKey {
  return storeKeyOf(`${BUCKET_SPACE}${bucket}`) as StoreKey;
}

/** The store's prefix of every key of `bucket` (not the default bucket). */
export function bucketPrefix(bucket: string): string {
  return `${BUCKET_SPACE}${bucket}/`;
}
