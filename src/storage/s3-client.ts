// A small S3 client: AWS Signature V4 over Bun's fetch, path-style addressing, for exactly the
// requests the S3 store makes (HEAD, GET with a range, PUT, DELETE, and the five multipart calls).
//
// Why not Bun.S3Client: its multipart writer cannot abort an upload or list stale ones, it takes no
// timeout, and its errors do not carry the HTTP status. The store needs all of those (an upload cut
// short must leave no parts behind, a hung store must answer `store timeout`), so it signs its own
// requests; Bun's fetch does the HTTP, natively, with keep-alive. The test harness still checks
// Bun.S3Client against the same store (the first test of test/storage/s3-store.test.ts).
//
// Every request counts against `requestsMax` (a streamed GET until its body is read or cancelled);
// more wait their turn in order. Their number is bounded by the connections: each has at most
// uploadWritesInFlightMax + 1 requests in flight or waiting.
import { hmacSha256, sha256Hex } from "../util/crypto";

export interface S3Settings {
  /** Base URL of the service, e.g. http://127.0.0.1:8080 or https://s3.eu-west-1.amazonaws.com */
  endpoint: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Of temporary credentials, or "". */
  sessionToken: string;
  /** A request with no progress (headers, or the next bytes of a body) for this long is aborted. */
  timeoutMs: number;
  /** Requests in flight at once. */
  requestsMax: number;
}

/** Why a request failed: its HTTP status (0: no answer, 1: timed out) and S3 error code. */
export class S3Failure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}
export const STATUS_UNREACHABLE = 0;
export const STATUS_TIMEOUT = 1;

const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const UNSIGNED = "UNSIGNED-PAYLOAD";

/** RFC 3986 percent-encoding as SigV4 wants it; '/' kept in paths. */
function encode(text: string, keepSlash: boolean): string {
  let out = encodeURIComponent(text).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
  if (keepSlash) out = out.replaceAll("%2F", "/");
  return out;
}

/** The text of the first <name> element of an XML answer, unescaped; null when absent. */
export function xmlText(xml: string, name: string, from = 0): string | null {
  const open = xml.indexOf(`<${name}>`, from);
  if (open < 0) return null;
  const start = open + name.length + 2;
  const close = xml.indexOf(`</${name}>`, start);
  if (close < 0) return null;
  return unescapeXml(xml.slice(start, close));
}

function unescapeXml(text: string): string {
  return text.replace(/&(lt|gt|amp|quot|apos|#\d+|#x[0-9a-fA-F]+);/g, (_, e: string) => {
    switch (e) {
      case "lt":
        return "<";
      case "gt":
        return ">";
      case "amp":
        return "&";
      case "quot":
        return '"';
      case "apos":
        return "'";
      default:
        return String.fromCodePoint(e[1] === "x" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
    }
  });
}

export function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c]!);
}

export interface RequestOptions {
  query?: Record<string, string>;
  headers?: Record<string, string>;
  /** A Blob (Bun.file) is streamed from its file with its length. */
  body?: Uint8Array | string | Blob;
  /** Keep the response body unread: the caller reads it (a streamed GET) and then calls done(). */
  stream?: boolean;
}

/** An answer with a 2xx status. A streamed one holds its request slot until done(). */
export interface S3Answer {
  status: number;
  headers: Headers;
  /** The body as text, unless streamed. */
  text: string;
  /** Streamed only: the body, read with the request's no-progress timeout. */
  reader: S3BodyReader | null;
}

/** The body of a streamed GET: each read re-arms the no-progress timer. */
export class S3BodyReader {
  private finished = false;
  constructor(
    private readonly stream: ReadableStreamDefaultReader<Uint8Array>,
    private readonly call: Call,
  ) {}

  /** The next bytes, or null at the end. Rejects with S3Failure (timeout, a broken connection). */
  async read(): Promise<Uint8Array | null> {
    this.call.arm();
    try {
      const { done, value } = await this.stream.read();
      if (done) {
        this.release();
        return null;
      }
      return value;
    } catch (e) {
      this.release();
      throw this.call.failure(e);
    } finally {
      this.call.disarm();
    }
  }

  /** Stops reading (the rest of the body is dropped) and frees the request slot. */
  cancel(): void {
    if (this.finished) return;
    this.call.controller.abort();
    void this.stream.cancel().catch(() => {});
    this.release();
  }

  private release(): void {
    if (this.finished) return;
    this.finished = true;
    this.call.client.release();
  }
}

/** One request's abort controller and no-progress timer. */
class Call {
  readonly controller = new AbortController();
  private timer: ReturnType<typeof setTimeout> | null = null;
  timedOut = false;
  constructor(
    readonly client: S3Client,
    private readonly timeoutMs: number,
  ) {}
  arm(): void {
    this.disarm();
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.controller.abort();
    }, this.timeoutMs);
  }
  disarm(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
  /** What a thrown fetch error means: a timeout, or a store that did not answer. */
  failure(e: unknown): S3Failure {
    if (e instanceof S3Failure) return e;
    if (this.timedOut) return new S3Failure(STATUS_TIMEOUT, "", `no answer within ${this.timeoutMs} ms`);
    return new S3Failure(STATUS_UNREACHABLE, "", String((e as Error)?.message ?? e));
  }
}

export class S3Client {
  private readonly base: URL;
  private readonly host: string;
  private inFlight = 0;
  private readonly waiting: (() => void)[] = [];
  /** The signing key of one day (SigV4 derives it from the date): recomputed once a day. */
  private keyDate = "";
  private signingKey: Buffer = Buffer.alloc(0);

  constructor(readonly settings: S3Settings) {
    this.base = new URL(settings.endpoint);
    this.host = this.base.host;
  }

  /** Requests in flight and waiting for a slot (for stats). */
  get load(): { inFlight: number; waiting: number } {
    return { inFlight: this.inFlight, waiting: this.waiting.length };
  }

  private acquire(): Promise<void> | null {
    if (this.inFlight < this.settings.requestsMax) {
      this.inFlight++;
      return null;
    }
    return new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  /** Frees a request slot: the next waiter takes it. */
  release(): void {
    const next = this.waiting.shift();
    if (next !== undefined) next();
    else this.inFlight--;
  }

  /**
   * Sends one request on the object `key` (or the bucket itself when key is ""). Resolves with a
   * 2xx answer; rejects with S3Failure for any other status, no answer, or no progress in time.
   */
  async request(method: string, key: string, options: RequestOptions = {}): Promise<S3Answer> {
    const wait = this.acquire();
    if (wait !== null) await wait;
    const call = new Call(this, this.settings.timeoutMs);
    let streaming = false;
    try {
      const path = `${this.base.pathname.replace(/\/$/, "")}/${encode(this.settings.bucket, false)}${key === "" ? "" : "/" + encode(key, true)}`;
      const query = options.query ?? {};
      const canonicalQuery = Object.keys(query)
        .sort()
        .map((k) => `${encode(k, false)}=${encode(query[k]!, false)}`)
        .join("&");
      const headers = this.sign(method, path, canonicalQuery, options.headers ?? {}, options.body === undefined ? EMPTY_SHA256 : UNSIGNED);
      const url = `${this.base.protocol}//${this.host}${path}${canonicalQuery === "" ? "" : "?" + canonicalQuery}`;
      call.arm();
      let response: Response;
      try {
        response = await fetch(url, { method, headers, body: options.body, signal: call.controller.signal, redirect: "manual", decompress: false } as RequestInit);
      } catch (e) {
        throw call.failure(e);
      }
      if (response.status < 200 || response.status > 299) {
        const text = await response.text().catch(() => "");
        const code = xmlText(text, "Code") ?? "";
        const message = xmlText(text, "Message") ?? text.slice(0, 200);
        throw new S3Failure(response.status, code, `${method} ${key === "" ? "/" : key}: HTTP ${response.status} ${code} ${message}`.trim());
      }
      if (options.stream === true && response.body !== null) {
        streaming = true;
        call.disarm();
        return { status: response.status, headers: response.headers, text: "", reader: new S3BodyReader(response.body.getReader() as ReadableStreamDefaultReader<Uint8Array>, call) };
      }
      const text = method === "HEAD" ? "" : await response.text().catch((e) => Promise.reject(call.failure(e)));
      return { status: response.status, headers: response.headers, text, reader: null };
    } finally {
      call.disarm();
      if (!streaming) this.release();
    }
  }

  /** SigV4 headers for one request (the payload is UNSIGNED-PAYLOAD: TLS protects it in transit). */
  private sign(method: string, path: string, canonicalQuery: string, extra: Record<string, string>, payloadHash: string): Record<string, string> {
    const now = new Date().toISOString().replace(/[-:]|\.\d{3}/g, ""); // 20261127T120000Z
    const date = now.slice(0, 8);
    const headers: Record<string, string> = { host: this.host, "x-amz-content-sha256": payloadHash, "x-amz-date": now };
    if (this.settings.sessionToken !== "") headers["x-amz-security-token"] = this.settings.sessionToken;
    for (const [k, v] of Object.entries(extra)) headers[k.toLowerCase()] = v.trim();
    const names = Object.keys(headers).sort();
    const canonicalHeaders = names.map((n) => `${n}:${headers[n]}\n`).join("");
    const signedHeaders = names.join(";");
    const canonical = `${method}\n${path}\n${canonicalQuery}\n${canonicalHeaders}\n${signedHeaders}\n${payloadHash}`;
    const scope = `${date}/${this.settings.region}/s3/aws4_request`;
    const toSign = `AWS4-HMAC-SHA256\n${now}\n${scope}\n${sha256Hex(canonical)}`;
    if (this.keyDate !== date) {
      const kDate = hmacSha256("AWS4" + this.settings.secretAccessKey, date);
      const kRegion = hmacSha256(kDate, this.settings.region);
      const kService = hmacSha256(kRegion, "s3");
      this.signingKey = hmacSha256(kService, "aws4_request");
      this.keyDate = date;
    }
    const signature = hmacSha256(this.signingKey, toSign).toString("hex");
    headers.authorization = `AWS4-HMAC-SHA256 Credential=${this.settings.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
    delete headers.host; // fetch sets it from the URL, to the same value
    return headers;
  }
}
