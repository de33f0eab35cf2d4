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

/** tchar of RFC 9110: what a method and a field name are made of. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A field value: visible characters, spaces and tabs, and obs-text (bytes 0x80-0xff). */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const decoder = new TextDecoder("latin1");

/** Where the head ends (the index just past CRLFCRLF), or -1. */
function headEnd(buf: Uint8Array, limit: number): number {
  for (let i = 3; i < limit; i++) {
    if (buf[i] === 0x0a && buf[i - 1] === 0x0d && buf[i - 2] === 0x0a && buf[i - 3] === 0x0d) return i + 1;
  }
  return -1;
}

const refuse = (status: HeadError["status"], reason: string): { error: HeadError } => ({ error: { status, reason } });

export function parseRequestHead(buf: Uint8Array, headBytesMax: number): HeadResult {
  const end = headEnd(buf, Math.min(buf.length, headBytesMax));
  if (end < 0) return buf.length >= headBytesMax ? refuse(431, `request head longer than ${headBytesMax} bytes`) : null;
  // latin1: one character per byte, so obs-text survives as is and lengths stay byte lengths.
  const text = decoder.decode(buf.subarray(0, end - 4));
  const lines = text.split("\r\n");
  for (const line of lines) if (line.includes("\r") || line.includes("\n")) return refuse(400, "a line ends without CRLF");
  const parts = lines[0]!.split(" ");
  if (parts.length !== 3) return refuse(400, "malformed request line");
  const [method, target, protocol] = parts as [string, string, string];
  if (!TOKEN.test(method)) return refuse(400, "malformed method");
  if (!/^HTTP\/\d\.\d$/.test(protocol)) return refuse(400, "malformed HTTP version");
  if (protocol !== "HTTP/1.1" && protocol !== "HTTP/1.0") return refuse(505, `${protocol} is not supported: HTTP/1.1 or HTTP/1.0`);
  if (target === "" || /[\x00-\x20\x7f]/.test(target)) return refuse(400, "malformed request target");
  const headers = new Map<string, string>();
  let contentLengths: string[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.startsWith(" ") || line.startsWith("\t")) return refuse(400, "obsolete line folding");
    const colon = line.indexOf(":");
    if (colon <= 0) return refuse(400, "malformed header line");
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) return refuse(400, `malformed header name ${JSON.stringify(name.slice(0, 40))}`);
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    if (!FIELD_VALUE.test(value)) return refuse(400, "a header value holds a control character");
    const lower = name.toLowerCase();
    if (lower === "content-length") contentLengths = contentLengths.concat(value.split(",").map((v) => v.trim()));
    const before = headers.get(lower);
    headers.set(lower, before === undefined ? value : `${before}, ${value}`);
  }
  const version = protocol === "HTTP/1.1" ? "1.1" : "1.0";
  if (version === "1.1" && !headers.has("host")) return refuse(400, "HTTP/1.1 request without Host");
  const te = headers.get("transfer-encoding");
  let chunked = false;
  if (te !== undefined) {
    if (contentLengths.length > 0) return refuse(400, "both Content-Length and Transfer-Encoding");
    if (te.toLowerCase() !== "chunked") return refuse(501, `transfer coding ${JSON.stringify(te)} is not supported: chunked only`);
    chunked = true;
  }
  let contentLength: number | null = null;
  if (contentLengths.length > 0) {
    if (!contentLengths.every((v) => /^\d{1,15}$/.test(v) && v === contentLengths[0])) return refuse(400, "malformed or conflicting Content-Length");
    contentLength = Number(contentLengths[0]);
  }
  const connection = (headers.get("connection") ?? "").toLowerCase().split(",").map((t) => t.trim());
  const keepAlive = version === "1.1" ? !connection.includes("close") : connection.includes("keep-alive");
  const q = target.indexOf("?");
  return {
    head: { method, target, path: q < 0 ? target : target.slice(0, q), query: q < 0 ? "" : target.slice(q + 1), version, headers, contentLength, chunked, keepAlive },
    bytes: end,
  };
}
