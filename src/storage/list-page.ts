// A LIST page's lines (docs/PROTOCOL.md, "Listing") from entries and common prefixes, for a store
// that lists in JavaScript (the S3 store; the file store's C index writes the same lines itself).
import type { ListEntry, ListPage } from "./store";

const encoder = new TextEncoder();

/**
 * A page's lines from its entries and common prefixes (a store that lists in JavaScript: S3), at
 * most `bytesMax` bytes of them; `next` is where the page after these continues ("" when none).
 * Lines past `bytesMax` are left for the next page, which then starts after the last line taken.
 */
export function pageOf(entries: ListEntry[], prefixes: string[], next: string, bytesMax: number): ListPage {
  const lines: string[] = [];
  let bytes = 0;
  /** The token of the last line taken: where a page cut short continues. */
  let lastToken = "";
  const take = (line: string, token: string): boolean => {
    const n = Buffer.byteLength(line) + 1;
    if (bytes + n > bytesMax && lines.length > 0) return false;
    lines.push(line);
    bytes += n;
    lastToken = token;
    return true;
  };
  let cut = false;
  for (const e of entries) {
    const digest = { ...(e.digest === null ? {} : { sha256: Buffer.from(e.digest).toString("hex") }), ...(e.md5 === undefined ? {} : { md5: e.md5 }) };
    cut = !take(JSON.stringify({ key: e.key, size: e.size, mtime: new Date(e.mtimeMs).toISOString(), ...digest }), `K${e.key}`);
    if (cut) break;
  }
  for (const p of cut ? [] : prefixes) {
    cut = !take(JSON.stringify({ prefix: p }), `P${p}`);
    if (cut) break;
  }
  return { lines: lines.length === 0 ? new Uint8Array(0) : encoder.encode(lines.join("\n") + "\n"), next: cut ? lastToken : next };
}
