// LIST (docs/PROTOCOL.md, "Listing"): the request's fields as a store's ListRequest, and a page as
// the lines of its body. Store-independent: the file store and the S3 store answer the same.
//
// A page's body is one JSON object per line, entries first, then common prefixes (each in key
// order):  {"key":"a/b.txt","size":5,"mtime":"2026-12-04T20:00:00.000Z","sha256":"…"}
//          {"prefix":"a/c/"}
// Where the next page starts travels as NextAfter, opaque to clients: "K" + a key (after it) or
// "P" + a common prefix (after every key under it).
import type { WireMessage } from "../protocol/message";
import type { ListRequest } from "../storage/store";

/** Entries and common prefixes of one page at most (S3's max-keys bound). */
export const LIST_KEYS_MAX = 1000;
/** The longest prefix, delimiter or start a LIST takes: a key's bound. */
const LIST_TEXT_BYTES_MAX = 255;
const encoder = new TextEncoder();

/** The LIST request as a store's, or the error text that refuses it. */
export function listRequestOf(msg: WireMessage, bytesMax: number): ListRequest | string {
  const maxKeys = msg.maxKeys === 0 ? LIST_KEYS_MAX : msg.maxKeys;
  if (!(maxKeys >= 1 && maxKeys <= LIST_KEYS_MAX)) return `invalid MaxKeys ${msg.maxKeys}: 1..${LIST_KEYS_MAX} (0: ${LIST_KEYS_MAX})`;
  for (const [name, text] of [["prefix", msg.key], ["Delimiter", msg.delimiter], ["After", msg.after]] as const) {
    if (encoder.encode(text).length > LIST_TEXT_BYTES_MAX + 1) return `invalid ${name}: longer than a key`;
  }
  let after = "";
  let afterPrefix = false;
  if (msg.after !== "") {
    const kind = msg.after[0];
    if (kind !== "K" && kind !== "P") return 'invalid After: a previous page\'s NextAfter, or "K" followed by a key';
    after = msg.after.slice(1);
    afterPrefix = kind === "P";
  }
  return { prefix: msg.key, delimiter: msg.delimiter, after, afterPrefix, maxKeys, bytesMax };
}
