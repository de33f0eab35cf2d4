// Looks at a data directory from the outside, as an operator would.
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

/**
 * Every file below `dir`, as paths relative to it. The types come with the names (no stat of each):
 * a server may remove a file between the two (a temporary file at the end of an upload), which a
 * stat after the listing met as ENOENT (CI, once).
 */
export function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      if (entry.isDirectory()) walk(join(d, entry.name), rel + entry.name + "/");
      else out.push(rel + entry.name);
    }
  };
  walk(dir, "");
  return out.sort();
}

/** Files of stored keys (no layout file, no temporaries, no volume) as file names ('/' of a key is 0x1f). */
export function storedFiles(dataDir: string): string[] {
  return listFiles(dataDir)
    .filter((p) => p.includes("/") && !p.includes("\\") && !p.startsWith("volumes/"))
    .map((p) => p.slice(p.indexOf("/") + 1))
    .sort();
}

/** Every key a data directory holds, as a file or as a live record of a volume (volumeRecords), sorted. */
export function storedKeys(dataDir: string): string[] {
  const files = storedFiles(dataDir).map((n) => n.replaceAll("\x1f", "/"));
  const records = existsSync(join(dataDir, "volumes")) ? [...volumeRecords(dataDir).keys()] : [];
  return [...files, ...records].sort();
}

export function tempFiles(dataDir: string): string[] {
  return listFiles(dataDir).filter((p) => p.includes("\\"));
}

/**
 * The records of a data directory's volumes (docs/VOLUMES.md), read by this parser of its own (not
 * the C library's): per key the live record's body, where a key's body record is the one with the
 * largest sequence number and live when no tombstone deleted it (or one after it). Stops in each
 * volume at the seal or the first record whose bytes run past the end (a torn tail).
 */
export function volumeRecords(dataDir: string): Map<string, Uint8Array> {
  const dir = join(dataDir, "volumes");
  const best = new Map<string, { seq: number; body: Uint8Array }>();
  const dead = new Map<string, number>();
  if (!existsSync(dir)) return new Map();
  const decoder = new TextDecoder();
  for (const name of readdirSync(dir).filter((n) => /^[0-9a-f]{8}\.fsv$/.test(n)).sort()) {
    const bytes = new Uint8Array(readFileSync(join(dir, name)));
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let at = 0; at + 88 <= bytes.length; ) {
      if (decoder.decode(bytes.subarray(at, at + 4)) !== "FSV1") break;
      const kind = bytes[at + 4]!;
      const keyLen = bytes[at + 5]!;
      const seq = Number(view.getBigInt64(at + 8, true));
      const sizeOrTarget = Number(view.getBigInt64(at + 24, true));
      const bodyLen = kind === 1 ? sizeOrTarget : 0;
      const end = at + 88 + keyLen + bodyLen;
      if (end > bytes.length || kind === 3) break;
      const key = decoder.decode(bytes.subarray(at + 88, at + 88 + keyLen));
      if (kind === 1 && (best.get(key)?.seq ?? -1) < seq) best.set(key, { seq, body: bytes.slice(at + 88 + keyLen, end) });
      if (kind === 2) dead.set(key, Math.max(dead.get(key) ?? 0, sizeOrTarget));
      at = (end + 7) & ~7;
    }
  }
  const live = new Map<string, Uint8Array>();
  for (const [key, { seq, body }] of best) if (seq > (dead.get(key) ?? 0)) live.set(key, body);
  return live;
}

/**
 * A key's stored bytes as an operator finds them: its live record in a volume (volumeRecords), else
 * its file in a shard directory; null when it has neither.
 */
export function storedBody(dataDir: string, key: string): Uint8Array | null {
  const record = existsSync(join(dataDir, "volumes")) ? volumeRecords(dataDir).get(key) : undefined;
  if (record !== undefined) return record;
  const name = key.replaceAll("/", "\x1f");
  for (const shard of readdirSync(dataDir)) {
    if (shard !== "volumes" && existsSync(join(dataDir, shard, name))) return new Uint8Array(readFileSync(join(dataDir, shard, name)));
  }
  return null;
}
