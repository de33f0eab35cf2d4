// The head of an HTTP/1.1 request (RFC 9112), for the HTTP front door's codec on Bun.listen
// (BENCHMARKS.md, "How an HTTP front door sends a body": Bun.serve costs 2.6-2.9x nginx per
// response, this machinery 1.0x). Strict where leniency is how requests get smuggled: CRLF line
// ends only, no obsolete line folding, one Content-Length (or several that agree), never both it
// and Transfer-Encoding, only "chunked" as a transfer coding, Host required in HTTP/1.1. Bounded:
// a head longer than `headBytesMax` is refused (431) however it arrives.

export interface RequestHead {
  method: string;
  /** The request target as sent (origin form "/path?query", or absolute form). */
  target: string;
  /** Its path, still percent-encoded, and its query without the "?" ("" when none). */
  path: string;
  query: string;
  version: "1.0" | "1.1";
  /** Header values by lower-case name; repeated fields joined with ", " (RFC 9110 5.3). */
  headers: Map<string, string>;
  /** The body's length when it has one announced; null with chunked or no body. */
  contentLength: number | null;
  chunked: boolean;
  /** Whether the connection stays open after the answer (HTTP/1.1 unless "close"; 1.0 only with keep-alive). */
  keepAlive: boolean;
}

export interface HeadError {
  status: 400 | 431 | 501 | 505;
  reason: string;
}

/** A parsed head and the bytes it took, a refusal, or null: the head is not complete yet. */
export type HeadResult = { head: RequestHead; bytes: number } | { error: HeadError } | null;

/** tchar of RFC 9110 (what a method and a field name are made of), and a field value's bytes (visible characters, SP, HTAB, obs-text 0x80-0xff): one table lookup a byte. */
const TCHAR = new Uint8Array(256);
const FIELD_BYTE = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TCHAR[c.charCodeAt(0)] = 1;
for (let b = 0; b < 256; b++) FIELD_BYTE[b] = b === 0x09 || (b >= 0x20 && b !== 0x7f) ? 1 : 0;
const SP = 0x20;
const HTAB = 0x09;
const CR = 0x0d;
const LF = 0x0a;
const COLON = 0x3a;
const DIGIT_0 = 0x30;
/** "HTTP/" as bytes. */
const HTTP_SLASH = [0x48, 0x54, 0x54, 0x50, 0x2f];
/** Bytes to a string, one character a byte (Buffer's own latin1 slice: a view and a decoder cost twice its time). */
const latin1Slice = Buffer.prototype.latin1Slice as (this: Uint8Array, start: number, end: number) => string;

/** Where the head ends (the index just past CRLFCRLF), or -1. */
function headEnd(buf: Uint8Array, limit: number): number {
  for (let i = 3; i < limit; i++) {
    if (buf[i] === LF && buf[i - 1] === CR && buf[i - 2] === LF && buf[i - 3] === CR) return i + 1;
  }
  return -1;
}

const refuse = (status: HeadError["status"], reason: string): { error: HeadError } => ({ error: { status, reason } });
const isDigit = (b: number) => b >= DIGIT_0 && b <= DIGIT_0 + 9;

/**
 * One pass over the head's bytes, a table lookup each (this runs once per request: BENCHMARKS.md,
 * "The GET path's own cost"); strings are cut from one latin1 decoding of the head, so obs-text
 * survives as is and lengths stay byte lengths.
 */
export function parseRequestHead(buf: Uint8Array, headBytesMax: number): HeadResult {
  const end = headEnd(buf, Math.min(buf.length, headBytesMax));
  if (end < 0) return buf.length >= headBytesMax ? refuse(431, `request head longer than ${headBytesMax} bytes`) : null;
  const text = latin1Slice.call(buf, 0, end);
  // The request line: method SP target SP HTTP/d.d CRLF.
  let i = 0;
  while (TCHAR[buf[i]!] === 1) i++;
  if (buf[i] !== SP) return refuse(400, i === 0 || buf[i] === CR || buf[i] === LF ? "malformed request line" : "malformed method");
  const method = text.slice(0, i);
  const targetStart = ++i;
  while (buf[i]! > SP && buf[i] !== 0x7f) i++;
  if (i === targetStart || buf[i] !== SP) return refuse(400, "malformed request target");
  const target = text.slice(targetStart, i);
  const p = i + 1;
  for (let k = 0; k < 5; k++) if (buf[p + k] !== HTTP_SLASH[k]) return refuse(400, "malformed HTTP version");
  const major = buf[p + 5]!;
  const minor = buf[p + 7]!;
  if (!isDigit(major) || buf[p + 6] !== 0x2e || !isDigit(minor) || buf[p + 8] !== CR || buf[p + 9] !== LF) return refuse(400, "malformed HTTP version");
  if (major !== DIGIT_0 + 1 || (minor !== DIGIT_0 + 1 && minor !== DIGIT_0)) return refuse(505, `${text.slice(p, p + 8)} is not supported: HTTP/1.1 or HTTP/1.0`);
  const version = minor === DIGIT_0 + 1 ? "1.1" : "1.0";
  // Header lines, each name ":" OWS value OWS CRLF, up to the empty line that ends the head.
  const headers = new Map<string, string>();
  let contentLengths: string[] | null = null;
  for (let at = p + 10; at < end - 2; ) {
    if (buf[at] === SP || buf[at] === HTAB) return refuse(400, "obsolete line folding");
    let n = at;
    while (TCHAR[buf[n]!] === 1) n++;
    if (buf[n] !== COLON || n === at) {
      const colon = text.indexOf(":", at);
      return refuse(400, colon > at && colon < text.indexOf("\r\n", at) ? `malformed header name ${JSON.stringify(text.slice(at, Math.min(colon, at + 40)))}` : "malformed header line");
    }
    let v = n + 1;
    while (buf[v] === SP || buf[v] === HTAB) v++;
    let e = v;
    while (FIELD_BYTE[buf[e]!] === 1) e++;
    if (buf[e] !== CR || buf[e + 1] !== LF) return refuse(400, buf[e] === CR || buf[e] === LF ? "a line ends without CRLF" : "a header value holds a control character");
    let ve = e;
    while (ve > v && (buf[ve - 1] === SP || buf[ve - 1] === HTAB)) ve--;
    const lower = text.slice(at, n).toLowerCase();
    const value = text.slice(v, ve);
    if (lower === "content-length") (contentLengths ??= []).push(...value.split(",").map((x) => x.trim()));
    const before = headers.get(lower);
    headers.set(lower, before === undefined ? value : `${before}, ${value}`);
    at = e + 2;
  }
  if (version === "1.1" && !headers.has("host")) return refuse(400, "HTTP/1.1 request without Host");
  const te = headers.get("transfer-encoding");
  let chunked = false;
  if (te !== undefined) {
    if (contentLengths !== null) return refuse(400, "both Content-Length and Transfer-Encoding");
    if (te.toLowerCase() !== "chunked") return refuse(501, `transfer coding ${JSON.stringify(te)} is not supported: chunked only`);
    chunked = true;
  }
  let contentLength: number | null = null;
  if (contentLengths !== null) {
    const first = contentLengths[0]!;
    if (!contentLengths.every((x) => /^\d{1,15}$/.test(x) && x === first)) return refuse(400, "malformed or conflicting Content-Length");
    contentLength = Number(first);
  }
  const connection = headers.get("connection");
  const tokens = connection === undefined ? [] : connection.toLowerCase().split(",").map((t) => t.trim());
  const keepAlive = version === "1.1" ? !tokens.includes("close") : tokens.includes("keep-alive");
  const q = target.indexOf("?");
  return {
    head: { method, target, path: q < 0 ? target : target.slice(0, q), query: q < 0 ? "" : target.slice(q + 1), version, headers, contentLength, chunked, keepAlive },
    bytes: end,
  };
}
