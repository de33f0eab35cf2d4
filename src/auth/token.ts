// Scoped access tokens: what a client presents (the AUTH exchange) to be let in when the server
// runs with `auth: "token"`.
//
//   fsgw1.<payload>.<signature>
//
// payload: base64url of a JSON object {"id", "ops", "prefix", "exp"} and, for the HTTP door's
// other buckets, "bucket": an id for the logs, the operations allowed ("read" = download and
// exist, "write" = upload, "delete"), the key prefix every key must start with (byte for byte;
// "" = any key), the expiry in Unix seconds, and the bucket (absent: the default bucket, fsgw,
// whose keys are the TCP protocol's; "*": every bucket).
// signature: base64url (43 characters, no padding; only the canonical spelling is accepted) of
// HMAC-SHA-256 over "fsgw1." + payload, keyed by the server's secret.
//
// Anyone holding the secret can mint tokens; anyone holding a token can do what its scope allows
// until it expires (there is no revocation list: rotate the secret to revoke every token at once).
// The signature is checked at AUTH and again, on every open connection, when the secrets are
// reloaded (SIGHUP); the scope and the expiry at every exchange.
import { hmacSha256, randomBytes, sameBytesConstantTime } from "../util/crypto";

export const TOKEN_PREFIX = "fsgw1.";
/** Longest token accepted: a prefix of a 255-byte key, an id and the signature fit many times over. */
export const TOKEN_BYTES_MAX = 4096;
/** A signature is HMAC-SHA-256's 32 bytes in base64url without padding: exactly this many characters. */
const SIGNATURE_CHARS = 43;
/** A secret shorter than this is refused: HMAC-SHA-256 wants at least its output's 32 bytes. */
export const SECRET_BYTES_MIN = 32;

/** Operation classes a token may allow, as bits. */
export const Access = { READ: 1, WRITE: 2, DELETE: 4 } as const;
const ACCESS_NAMES: Record<string, number> = { read: Access.READ, write: Access.WRITE, delete: Access.DELETE };

export interface TokenScope {
  id: string;
  /** Bits of Access. */
  access: number;
  prefix: string;
  /** Expiry, milliseconds since the epoch. */
  expiresAtMs: number;
  /** The bucket its keys are in: DEFAULT_BUCKET (the TCP protocol's keys), another, or "*" for every one. */
  bucket?: string;
}

/** The bucket of a scope that names none, and of the TCP protocol's keys. */
export const DEFAULT_BUCKET = "fsgw";

/** Whether a scope reaches `bucket`. */
export function scopeHasBucket(scope: TokenScope, bucket: string): boolean {
  const own = scope.bucket ?? DEFAULT_BUCKET;
  return own === "*" || own === bucket;
}

/** A token's signed payload. */
interface Payload {
  id: string;
  ops: ("read" | "write" | "delete")[];
  prefix: string;
  /** Expiry, seconds since the epoch. */
  exp: number;
  bucket?: string;
}

/**
 * The payload's shape, checked field by field: exactly these four fields and an optional bucket,
 * nothing else (checked by hand: a schema library would be loaded by every event loop for five
 * fields).
 */
function payloadOf(value: unknown): Payload | null {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
  const fields = Object.keys(value).length;
  const { id, ops, prefix, exp, bucket } = value as Record<string, unknown>;
  if (fields !== (bucket === undefined ? 4 : 5)) return null;
  if (typeof id !== "string" || id.length > 128) return null;
  if (!Array.isArray(ops) || ops.length < 1 || ops.length > 3 || !ops.every((op) => op === "read" || op === "write" || op === "delete")) return null;
  if (typeof prefix !== "string" || prefix.length > 255) return null;
  if (typeof exp !== "number" || !Number.isInteger(exp) || exp <= 0) return null;
  if (bucket !== undefined && (typeof bucket !== "string" || bucket.length === 0 || bucket.length > 63)) return null;
  return bucket === undefined ? { id, ops, prefix, exp } : { id, ops, prefix, exp, bucket };
}

/** A scope's payload text (the one spelling: fields in this order, the bucket only when not the default). */
function payloadText(scope: TokenScope): string {
  const payload: Payload = { id: scope.id, ops: accessNames(scope.access), prefix: scope.prefix, exp: Math.floor(scope.expiresAtMs / 1000) };
  if (scope.bucket !== undefined && scope.bucket !== DEFAULT_BUCKET) payload.bucket = scope.bucket;
  return JSON.stringify(payload);
}

function scopeOf(payload: Payload): TokenScope {
  const scope: TokenScope = { id: payload.id, access: accessOf(payload.ops), prefix: payload.prefix, expiresAtMs: payload.exp * 1000 };
  if (payload.bucket !== undefined) scope.bucket = payload.bucket;
  return scope;
}

/** "read,write" -> bits; throws with a clear message on an unknown name. */
export function accessOf(names: string[]): number {
  let bits = 0;
  for (const name of names) {
    const bit = ACCESS_NAMES[name];
    if (bit === undefined) throw new Error(`unknown operation ${JSON.stringify(name)}: use read, write, delete`);
    bits |= bit;
  }
  return bits;
}

function accessNames(bits: number): ("read" | "write" | "delete")[] {
  const out: ("read" | "write" | "delete")[] = [];
  if (bits & Access.READ) out.push("read");
  if (bits & Access.WRITE) out.push("write");
  if (bits & Access.DELETE) out.push("delete");
  return out;
}

function sign(secret: Uint8Array, signed: string): Buffer {
  return hmacSha256(secret, signed);
}

/** A token for `scope`, signed with `secret`. */
export function createToken(secret: Uint8Array, scope: TokenScope): string {
  const payload = Buffer.from(payloadText(scope)).toString("base64url");
  const signed = TOKEN_PREFIX + payload;
  return `${signed}.${sign(secret, signed).toString("base64url")}`;
}

/** A new random secret, as the text an authSecretFile holds. */
export function newSecret(): string {
  return randomBytes(32).toString("base64url");
}

/**
 * The secret in a file's text: the whole text with surrounding whitespace trimmed, used as bytes.
 * Throws when it is too short to be a secret.
 */
export function secretOf(text: string, where: string): Uint8Array {
  const bytes = Buffer.from(text.trim(), "utf8");
  if (bytes.length < SECRET_BYTES_MIN) throw new Error(`${where}: a secret needs at least ${SECRET_BYTES_MIN} bytes (has ${bytes.length}); make one with 'fsgw token secret'`);
  return bytes;
}

export type Verified = { ok: true; scope: TokenScope } | { ok: false; reason: string; id: string };

/**
 * Checks a token's form and signature against each secret (the current one, then a previous one
 * during a rotation) and reads its scope. Expiry is not judged here: the caller checks it at every
 * exchange. `reason` is for logs; the client is told only "unauthorized".
 */
export function verifyToken(token: string, secrets: readonly Uint8Array[]): Verified {
  if (token.length === 0) return { ok: false, reason: "empty token", id: "" };
  if (token.length > TOKEN_BYTES_MAX) return { ok: false, reason: "token too long", id: "" };
  if (!token.startsWith(TOKEN_PREFIX)) return { ok: false, reason: "not an fsgw1 token", id: "" };
  const dot = token.lastIndexOf(".");
  if (dot <= TOKEN_PREFIX.length) return { ok: false, reason: "malformed token", id: "" };
  const signed = token.slice(0, dot);
  // The signature as text, compared with the canonical text of the expected one: Node's base64url
  // decoder skips padding, stray characters and the unused low bits of the last character, so
  // comparing decoded bytes would accept many spellings of one signature ("<sig>=", "<sig>x").
  const given = Buffer.from(token.slice(dot + 1), "utf8");
  if (given.length !== SIGNATURE_CHARS) return { ok: false, reason: "malformed signature", id: "" };
  let good = false;
  for (const secret of secrets) {
    const expected = Buffer.from(sign(secret, signed).toString("base64url"), "utf8");
    if (sameBytesConstantTime(given, expected)) good = true;
  }
  if (!good) return { ok: false, reason: "bad signature", id: "" };
  let payload: Payload | null;
  try {
    payload = payloadOf(JSON.parse(Buffer.from(signed.slice(TOKEN_PREFIX.length), "base64url").toString("utf8")));
  } catch {
    payload = null; // not JSON
  }
  if (payload === null) return { ok: false, reason: "signed but unreadable payload", id: "" };
  return { ok: true, scope: scopeOf(payload) };
}

/** "1h", "30m", "45s", "2d" or plain seconds -> milliseconds; throws on anything else. */
export function parseTtl(text: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(text.trim());
  if (m === null) throw new Error(`bad --ttl ${JSON.stringify(text)}: use e.g. 90s, 30m, 1h, 7d`);
  const unit = { "": 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as "" | "s" | "m" | "h" | "d"];
  const ms = Number(m[1]) * unit * 1000;
  if (!(ms > 0)) throw new Error(`bad --ttl ${JSON.stringify(text)}: must be positive`);
  return ms;
}

/**
 * S3 access keys (SigV4) with a token's scope, stateless as tokens are:
 *
 *   access key id      FSGW + base64url of the same payload a token carries
 *   secret access key  base64url of HMAC-SHA-256 over "fsgw-s3." + the access key id, keyed by
 *                      the server's secret
 *
 * The server reads the scope from the id and derives the secret key again from its own secret, so
 * that only a holder of the server's secret can mint a pair, and a changed scope is a different
 * id whose secret key nobody has. Rotating the secret revokes every pair, as it does tokens.
 */
export const ACCESS_KEY_PREFIX = "FSGW";

export function createAccessKey(secret: Uint8Array, scope: TokenScope): { accessKeyId: string; secretAccessKey: string } {
  const accessKeyId = ACCESS_KEY_PREFIX + Buffer.from(payloadText(scope)).toString("base64url");
  return { accessKeyId, secretAccessKey: secretAccessKeyOf(secret, accessKeyId) };
}

/** The secret access key of an access key id under one server secret. */
export function secretAccessKeyOf(secret: Uint8Array, accessKeyId: string): string {
  return sign(secret, `fsgw-s3.${accessKeyId}`).toString("base64url");
}

/** The scope an access key id carries, or null when it is not one of ours (its signature is judged apart). */
export function scopeOfAccessKey(accessKeyId: string): TokenScope | null {
  if (!accessKeyId.startsWith(ACCESS_KEY_PREFIX) || accessKeyId.length > TOKEN_BYTES_MAX) return null;
  let payload: Payload | null;
  try {
    payload = payloadOf(JSON.parse(Buffer.from(accessKeyId.slice(ACCESS_KEY_PREFIX.length), "base64url").toString("utf8")));
  } catch {
    payload = null;
  }
  if (payload === null || Buffer.from(JSON.stringify(payload)).toString("base64url") !== accessKeyId.slice(ACCESS_KEY_PREFIX.length)) return null;
  return scopeOf(payload);
}
