// AWS Signature Version 4, as S3 checks it: the Authorization header form and the presigned URL
// form (query parameters), for requests whose payload is signed (x-amz-content-sha256: the body's
// SHA-256, checked against the body before it is committed) or not (UNSIGNED-PAYLOAD).
// https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-authenticating-requests.html
//
// The secret access keys come from the caller (src/auth/token.ts derives them from the server's
// secrets); this module only parses, rebuilds the canonical request and compares signatures.
import { hmacSha256, sameBytesConstantTime } from "../util/crypto";
import type { RequestHead } from "./request-head";

export const UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD";
/** aws-chunked bodies (request-body.ts): chunks signed in a chain from the seed signature, with or without a signed trailer. */
export const STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
export const STREAMING_PAYLOAD_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
/** aws-chunked bodies whose chunks are not signed, with a checksum trailer (the AWS SDKs' default for streamed uploads). */
export const STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
/** A signed request's date may differ from the server's clock by this much (S3's 15 minutes). */
export const CLOCK_SKEW_MS = 15 * 60 * 1000;
/** A presigned URL lives at most 7 days (S3's bound on X-Amz-Expires). */
const PRESIGNED_SECONDS_MAX = 7 * 86_400;

export interface SigV4Request {
  accessKeyId: string;
  /** yyyymmdd, region, service of the credential scope. */
  date: string;
  region: string;
  service: string;
  /** x-amz-date (yyyymmddThhmmssZ). */
  amzDate: string;
  signedHeaders: string[];
  signature: string;
  /** The payload hash the signature covers: a hex SHA-256, UNSIGNED-PAYLOAD or the streaming marker. */
  payloadHash: string;
  presigned: boolean;
  /** Presigned: seconds the URL is valid from amzDate. */
  expiresSeconds: number;
}

export class SigV4Error extends Error {
  constructor(
    readonly code: "AccessDenied" | "SignatureDoesNotMatch" | "AuthorizationHeaderMalformed" | "AuthorizationQueryParametersError" | "RequestTimeTooSkewed" | "InvalidAccessKeyId" | "XAmzContentSHA256Mismatch" | "InvalidArgument",
    message: string,
  ) {
    super(message);
  }
}

/** The request's SigV4 parts (header or query), null when it carries none; throws SigV4Error on a malformed one. */
export function parseSigV4(head: RequestHead, query: URLSearchParams): SigV4Request | null {
  const auth = head.headers.get("authorization");
  if (auth !== undefined && auth.startsWith("AWS4-HMAC-SHA256")) {
    const fields = new Map<string, string>();
    for (const part of auth.slice("AWS4-HMAC-SHA256".length).split(",")) {
      const eq = part.indexOf("=");
      if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
    }
    const credential = fields.get("Credential");
    const signedHeaders = fields.get("SignedHeaders");
    const signature = fields.get("Signature");
    const amzDate = head.headers.get("x-amz-date") ?? "";
    if (credential === undefined || signedHeaders === undefined || signature === undefined) throw new SigV4Error("AuthorizationHeaderMalformed", "The authorization header is malformed; it needs Credential, SignedHeaders and Signature.");
    const payloadHash = head.headers.get("x-amz-content-sha256");
    if (payloadHash === undefined) throw new SigV4Error("InvalidArgument", "Missing required header for this request: x-amz-content-sha256");
    return { ...credentialOf(credential, "AuthorizationHeaderMalformed"), amzDate, signedHeaders: signedHeaders.split(";"), signature, payloadHash, presigned: false, expiresSeconds: 0 };
  }
  if (query.get("X-Amz-Algorithm") === "AWS4-HMAC-SHA256") {
    const credential = query.get("X-Amz-Credential");
    const signedHeaders = query.get("X-Amz-SignedHeaders");
    const signature = query.get("X-Amz-Signature");
    const amzDate = query.get("X-Amz-Date");
    const expires = Number(query.get("X-Amz-Expires"));
    if (credential === null || signedHeaders === null || signature === null || amzDate === null || !Number.isInteger(expires) || expires < 1 || expires > PRESIGNED_SECONDS_MAX) {
      throw new SigV4Error("AuthorizationQueryParametersError", "X-Amz-Credential, X-Amz-SignedHeaders, X-Amz-Signature, X-Amz-Date and X-Amz-Expires (1..604800) are required.");
    }
    return { ...credentialOf(credential, "AuthorizationQueryParametersError"), amzDate, signedHeaders: signedHeaders.split(";"), signature, payloadHash: head.headers.get("x-amz-content-sha256") ?? UNSIGNED_PAYLOAD, presigned: true, expiresSeconds: expires };
  }
  return null;
}

function credentialOf(credential: string, code: "AuthorizationHeaderMalformed" | "AuthorizationQueryParametersError") {
  const parts = credential.split("/");
  if (parts.length !== 5 || parts[4] !== "aws4_request") throw new SigV4Error(code, `The credential is malformed: expected <key>/<date>/<region>/<service>/aws4_request.`);
  return { accessKeyId: parts[0]!, date: parts[1]!, region: parts[2]!, service: parts[3]! };
}

/** The time of an x-amz-date (yyyymmddThhmmssZ), or NaN. */
export function amzDateMs(amzDate: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
  return m === null ? NaN : Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
}

/** What an aws-chunked body's chunk and trailer signatures are checked with: the request's signing key, time, scope and seed signature. */
export interface ChunkSigning {
  key: Buffer;
  amzDate: string;
  scope: string;
  /** The request's own signature, which the first chunk's chains from. */
  seed: string;
}

/**
 * Checks the request's signature against each candidate secret access key (the server's current
 * secret's, then a previous one's during a rotation), and its date against the clock. Throws
 * SigV4Error when it does not hold; else what its chunks' signatures chain from.
 */
export function verifySigV4(head: RequestHead, query: URLSearchParams, sig: SigV4Request, secrets: string[], nowMs: number): ChunkSigning {
  const at = amzDateMs(sig.amzDate);
  if (Number.isNaN(at) || sig.amzDate.slice(0, 8) !== sig.date) throw new SigV4Error("AccessDenied", "x-amz-date is missing, malformed, or not the credential's date.");
  if (sig.presigned) {
    if (nowMs > at + sig.expiresSeconds * 1000) throw new SigV4Error("AccessDenied", "Request has expired");
    if (at - nowMs > CLOCK_SKEW_MS) throw new SigV4Error("RequestTimeTooSkewed", "The difference between the request time and the server's time is too large.");
  } else if (Math.abs(nowMs - at) > CLOCK_SKEW_MS) {
    throw new SigV4Error("RequestTimeTooSkewed", "The difference between the request time and the server's time is too large.");
  }
  if (!sig.signedHeaders.includes("host")) throw new SigV4Error("AccessDenied", "The host header must be signed.");
  const canonical = canonicalRequest(head, query, sig);
  const scope = `${sig.date}/${sig.region}/${sig.service}/aws4_request`;
  const toSign = `AWS4-HMAC-SHA256\n${sig.amzDate}\n${scope}\n${new Bun.CryptoHasher("sha256").update(canonical).digest("hex")}`;
  const given = Buffer.from(sig.signature, "utf8");
  let good: Buffer | null = null;
  for (const secret of secrets) {
    const key = signingKeyOf(secret, sig.date, sig.region, sig.service);
    const expected = Buffer.from(hmacSha256(key, toSign).toString("hex"), "utf8");
    if (given.length === expected.length && sameBytesConstantTime(given, expected)) good = key;
  }
  if (good === null) throw new SigV4Error("SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method.");
  return { key: good, amzDate: sig.amzDate, scope, seed: sig.signature };
}

/** SigV4's signing key: the HMAC chain of a secret access key over date, region, service. */
export function signingKeyOf(secretAccessKey: string, date: string, region: string, service: string): Buffer {
  const id = `${secretAccessKey}\n${date}\n${region}\n${service}`;
  const known = signingKeys.get(id);
  if (known !== undefined) return known;
  let key = hmacSha256(Buffer.from(`AWS4${secretAccessKey}`), date);
  key = hmacSha256(key, region);
  key = hmacSha256(key, service);
  key = hmacSha256(key, "aws4_request");
  // Four HMACs per request otherwise; a key changes once a day. Past the bound, start over.
  if (signingKeys.size >= SIGNING_KEYS_CACHED_MAX) signingKeys.clear();
  signingKeys.set(id, key);
  return key;
}
/** Signing keys kept (per secret access key, day, region, service): one per client key in use today. */
const SIGNING_KEYS_CACHED_MAX = 1024;
const signingKeys = new Map<string, Buffer>();

/** The signature of an aws-chunked chunk whose data has SHA-256 `dataHash` (hex), after `previous`. */
export function chunkSignatureOf(signing: ChunkSigning, previous: string, emptyHash: string, dataHash: string): string {
  return hmacSha256(signing.key, `AWS4-HMAC-SHA256-PAYLOAD\n${signing.amzDate}\n${signing.scope}\n${previous}\n${emptyHash}\n${dataHash}`).toString("hex");
}

/** The signature of an aws-chunked body's trailers (`name:value\n` each), after the last chunk's. */
export function trailerSignatureOf(signing: ChunkSigning, previous: string, trailers: string): string {
  return hmacSha256(signing.key, `AWS4-HMAC-SHA256-TRAILER\n${signing.amzDate}\n${signing.scope}\n${previous}\n${new Bun.CryptoHasher("sha256").update(trailers).digest("hex")}`).toString("hex");
}

/** HMAC chain of SigV4: the hex signature of `toSign` under a secret access key. */
export function signatureOf(secretAccessKey: string, date: string, region: string, service: string, toSign: string): string {
  return hmacSha256(signingKeyOf(secretAccessKey, date, region, service), toSign).toString("hex");
}

/** The canonical request SigV4 signs, rebuilt from what arrived. */
export function canonicalRequest(head: RequestHead, query: URLSearchParams, sig: SigV4Request): string {
  const params: [string, string][] = [];
  for (const [name, value] of query) if (!(sig.presigned && name === "X-Amz-Signature")) params.push([uriEncode(name, true), uriEncode(value, true)]);
  params.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  const headers = sig.signedHeaders.map((name) => `${name}:${(head.headers.get(name) ?? "").trim().replace(/\s+/g, " ")}\n`).join("");
  return [head.method, canonicalUri(head.path), params.map(([n, v]) => `${n}=${v}`).join("&"), headers, sig.signedHeaders.join(";"), sig.payloadHash].join("\n");
}

/** S3's canonical URI: the path decoded once and encoded again, '/' kept (S3 does not normalize it). */
function canonicalUri(path: string): string {
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    decoded = path;
  }
  return uriEncode(decoded, false);
}

/** SigV4's URI encoding: every byte but A-Z a-z 0-9 - . _ ~ (and '/' in a path) as %XX, upper case. */
export function uriEncode(text: string, encodeSlash: boolean): string {
  // The common cases at native speed (a signature is checked per request; a byte loop here was a
  // fifth of a presigned GET's cost): nothing to encode, or encodeURIComponent, which encodes
  // every byte SigV4 does (upper-case hex) but ! ' ( ) *.
  if (UNRESERVED.test(text)) return text;
  try {
    const encoded = encodeSlash ? encodeURIComponent(text) : text.split("/").map(encodeURIComponent).join("/");
    return encoded.replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  } catch {
    return uriEncodeBytes(text, encodeSlash); // a lone surrogate: encodeURIComponent refuses it
  }
}
const UNRESERVED = /^[A-Za-z0-9\-._~]*$/;

/** uriEncode byte by byte (what TextEncoder makes of the text). */
function uriEncodeBytes(text: string, encodeSlash: boolean): string {
  let out = "";
  for (const byte of Buffer.from(text, "utf8")) {
    const c = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-._~]/.test(c) || (c === "/" && !encodeSlash)) out += c;
    else out += `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}
