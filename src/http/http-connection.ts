// One connection of the HTTP front door (issue 25): an HTTP/1.1 codec on Bun.listen (the machinery
// the TCP protocol runs on: BENCHMARKS.md, "How an HTTP front door sends a body") speaking the S3
// API path-style and plain HTTP, over the same Store as the TCP protocol. The store's keys are the
// objects of bucket `fsgw` (config: the TCP protocol's keys), so TCP and HTTP see the same files.
//
// What it answers: ListBuckets, HeadBucket, GetBucketLocation, ListObjectsV2 and ListObjects (v1),
// GetObject and HeadObject (Range; If-None-Match, If-Match, If-Modified-Since, If-Unmodified-Since),
// PutObject (Content-Length bodies; Content-MD5, x-amz-checksum-sha256 and a signed payload's
// x-amz-content-sha256 checked before commit; the store records the body's MD5, the ETag;
// Expect: 100-continue), DeleteObject, DeleteObjects, CopyObject, and multipart uploads
// (multipart.ts). Access: open when auth is off; with auth "token", AWS Signature V4 with access
// keys that carry a token's scope (sigv4.ts, src/auth/token.ts), or `Authorization: Bearer
// <token>`. One request at a time per connection, in order (keep-alive, pipelining).
//
//   head ──GET/HEAD/DELETE/list──▶ busy ──answer──▶ head (keep-alive) │ closed
//   head ──PUT──▶ busy ──(100 Continue)──▶ body ──last byte──▶ busy ──answer──▶ head │ closed
//   every state ──close, or a malformed head (its 4xx answered)──▶ closed
import type { Socket } from "bun";
import { open as openFile, unlink } from "node:fs/promises";
import type { Logger } from "../log";
import { Access, scopeHasBucket, type TokenScope, type Verified } from "../auth/token";
import { BUCKET_SPACE, bucketKey, bucketMarkerKey, bucketPrefix, checkBucketName, checkKey, type StoreKey } from "../storage/keys";
import { DIGEST_BYTES, Failure, MD5_MISMATCH_CAUSE, mtimeMsOf, sha256Base64Of, type BodyReader, type FailureCause, type FailureKind, type ListPage, type Store, type StoreTarget, type UploadSink } from "../storage/store";
import { parseRequestHead, type RequestHead } from "./request-head";
import { parseSigV4, SigV4Error, STREAMING_PAYLOAD, STREAMING_PAYLOAD_TRAILER, STREAMING_UNSIGNED_TRAILER, verifySigV4, type ChunkSigning } from "./sigv4";
import { BodyError, RequestBody, type BodyForm } from "./request-body";
import { checksumAlgorithmOf, ChecksumHasher } from "./checksums";
import { listingHtml, wantsHtml } from "./listing-html";
import { scopeOfAccessKey } from "../auth/token";
import { BadPartDigest, MultipartError, PARTS_MAX, type MultipartStore, type Part, type PartWriter } from "./multipart";
import { completeMultipartXml, copyObjectXml, deleteResultXml, errorXml, etagOf, initiateMultipartXml, listBucketsXml, listMultipartUploadsXml, listObjectsV1Xml, listObjectsV2Xml, listPartsXml, locationXml, s3ErrorOf, xmlValues, type S3Error } from "./s3-xml";

/** What a connection needs from its server. */
export interface HttpHost {
  readonly store: Store;
  readonly log: Logger;
  /** The default bucket: its objects are the store's keys, the TCP protocol's. */
  readonly bucket: string;
  /** Buckets CreateBucket may make besides the default one. */
  readonly bucketsMax: number;
  readonly startedAt: Date;
  readonly headBytesMax: number;
  readonly uploadBytesMax: number;
  readonly inlineBytesMax: number;
  readonly connectionBufferBytesMax: number;
  readonly listPageBytesMax: number;
  /** S3 multipart uploads' parts (multipartDir), and the least size of a part but the last. */
  readonly multipart: MultipartStore;
  readonly partBytesMin: number;
  /** Origins whose pages may call this door from a browser (httpCorsOrigins; "*": any). */
  readonly corsOrigins: ReadonlySet<string>;
  readonly tokensRequired: boolean;
  /** The server is stopping: an answered connection closes instead of waiting for more. */
  draining(): boolean;
  verifyToken(token: string): Verified;
  /** The secret access keys of an S3 access key id (SigV4), one per accepted server secret. */
  s3SecretKeys(accessKeyId: string): string[];
  /** The socket's kernel descriptor (zero-copy bodies), or -1. */
  socketFdOf(socket: Socket<HttpConnection>): number;
  /** Keeps work (an upload's abort) visible to shutdown until it settles. */
  track(work: Promise<unknown>): void;
  closed(conn: HttpConnection): void;
}

type HttpState = "head" | "busy" | "body" | "closed";

/** Bytes a streamed GET reads at a time when its body goes through memory. */
const READ_BYTES = 256 * 1024;
const SHA256_MISMATCH: S3Error = { status: 400, code: "XAmzContentSHA256Mismatch", message: "The provided 'x-amz-content-sha256' or 'x-amz-checksum-sha256' does not match what was computed." };
/** CORS: the methods a page may use, how long a browser may keep a preflight's answer, and the answer headers its script may read. */
const CORS_METHODS = ["GET", "PUT", "POST", "DELETE", "HEAD"];
const PREFLIGHT_MAX_AGE_S = 600;
const CORS_EXPOSED = "ETag, Content-Length, Content-Range, Last-Modified, x-amz-checksum-sha256, x-amz-checksum-crc32, x-amz-checksum-crc32c, x-amz-checksum-sha1";
/** Bytes CopyObject and CompleteMultipartUpload read at a time from their source. */
const COPY_BYTES = 1024 * 1024;
/** A DeleteObjects body: 1000 keys of up to 1024 bytes, escaped, with their elements. */
const DELETE_BODY_BYTES_MAX = 2 * 1024 * 1024;
/** A CreateBucket body: its CreateBucketConfiguration. */
const CREATE_BUCKET_BODY_BYTES_MAX = 64 * 1024;
/** A CompleteMultipartUpload body: 10,000 parts, each about 120 bytes of XML. */
const COMPLETE_BODY_BYTES_MAX = 2 * 1024 * 1024;
const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();

/** A store call as a promise: its value, or its failure. */
type Outcome<T> = { ok: true; value: T } | { ok: false; failure: FailureKind; cause: FailureCause };

class HttpFailure extends Error {
  constructor(readonly s3: S3Error) {
    super(s3.message);
  }
}

export class HttpConnection {
  state: HttpState = "head";
  private pending: Uint8Array = EMPTY;
  private readonly outQueue: Uint8Array[] = [];
  private outQueued = 0;
  private drained: (() => void) | null = null;
  /** The request whose body is arriving (state "body"). */
  private body: ArrivingBody | null = null;
  /** The request's aws-chunked signatures chain from this (SigV4 with auth), else null. */
  private chunkSigning: ChunkSigning | null = null;
  private paused = false;
  /** The socket's descriptor once checked (-1: none usable; -2: not asked yet). */
  private fd = -2;
  /** The answer being written is the last: a body left unread, or a client that asked to close. */
  private mustClose = false;
  /** The request being answered came with a body that has not been read (all of it). */
  private bodyUnread = false;
  /** The request being answered is a HEAD: its answers carry no body, errors included. */
  private isHead = false;
  /** The request's Origin when CORS lets it read the answer (httpCorsOrigins), else null. */
  private corsOrigin: string | null = null;
  /** When the client last sent a byte or took one (the server's sweep closes it after idleTimeoutMs). */
  lastActiveMs = Date.now();
  /** When the first byte of the head being received arrived (0: none pending): frameTimeoutMs. */
  private headStartedMs = 0;
  /** The bucket of the request being answered, and its key space in the store ("" for the default bucket; keys.ts, bucketPrefix). */
  private bucket = "";
  private space = "";

  /** "/<default bucket>/": the paths quickGet answers start with it. */
  private readonly defaultBucketPath: string;

  constructor(
    private readonly socket: Socket<HttpConnection>,
    private readonly host: HttpHost,
  ) {
    this.defaultBucketPath = `/${host.bucket}/`;
  }

  get remote(): string {
    return `${this.socket.remoteAddress}:${this.socket.remotePort}`;
  }

  /** The client's address (the per-address bounds). */
  get address(): string {
    return this.socket.remoteAddress;
  }

  /** Between requests with nothing received of the next: closing now loses nothing. */
  get idle(): boolean {
    return this.state === "head" && this.pending.length === 0;
  }

  // ---- socket events ----

  onData(chunk: Uint8Array): void {
    if (this.state === "closed") return;
    this.lastActiveMs = Date.now();
    if (this.state === "head" && this.pending.length === 0) this.headStartedMs = this.lastActiveMs;
    this.pending = this.pending.length === 0 ? chunk : concat(this.pending, chunk);
    if (this.state === "body") return this.feedBody();
    if (this.state === "head") return this.nextRequest();
    // busy: held until the answer is out; a client that keeps sending is paused.
    if (this.pending.length > this.host.headBytesMax) this.pause();
  }

  onDrain(): void {
    this.flush();
  }

  onClose(): void {
    if (this.state === "closed") return;
    this.state = "closed";
    this.outQueue.length = 0;
    // A body arriving: its receiver aborts what it was writing.
    this.body?.done(null);
    this.body = null;
    this.drained?.();
    this.host.closed(this);
  }

  close(): void {
    if (this.state === "closed") return;
    this.socket.end();
    this.onClose();
  }

  /**
   * Why the server's sweep should close this connection now, or null: a request head not whole
   * within frameTimeoutMs of its first byte (a client that trickles it), or a client that sent or
   * took nothing for idleTimeoutMs while the connection waited on it (between requests, for a
   * head or a body, or for an answer it does not read). While the server works (a store call) the
   * client owes nothing.
   */
  timedOut(nowMs: number, idleTimeoutMs: number, frameTimeoutMs: number): string | null {
    if (this.state === "head" && this.pending.length > 0 && nowMs - this.headStartedMs > frameTimeoutMs) return `a request head not complete within frameTimeoutMs (${frameTimeoutMs})`;
    const waitingOnClient = this.state === "head" || this.state === "body" || (this.state === "busy" && this.outQueue.length > 0);
    if (waitingOnClient && nowMs - this.lastActiveMs > idleTimeoutMs) return "idle timeout";
    return null;
  }

  // ---- requests ----

  private nextRequest(): void {
    if (this.state !== "head" || this.pending.length === 0) return;
    const parsed = parseRequestHead(this.pending, this.host.headBytesMax);
    if (parsed === null) return;
    if ("error" in parsed) {
      // Nothing after a head we cannot read can be trusted to be the next request: answer, close.
      this.state = "busy";
      this.mustClose = true;
      this.answerError({ status: parsed.error.status, code: parsed.error.status === 431 ? "RequestHeaderSectionTooLarge" : "BadRequest", message: parsed.error.reason }, "");
      void this.whenDrained().then(() => this.close());
      return;
    }
    this.pending = this.pending.subarray(parsed.bytes);
    this.headStartedMs = this.lastActiveMs; // what follows (a pipelined head) started no later than this
    this.state = "busy";
    if (!parsed.head.keepAlive) this.mustClose = true;
    this.bodyUnread = (parsed.head.contentLength ?? 0) > 0 || parsed.head.chunked;
    this.isHead = parsed.head.method === "HEAD";
    this.corsOrigin = this.allowedOrigin(parsed.head);
    const quick = this.quickGet(parsed.head);
    if (quick === "sending") return; // the rest of its answer, then the next request
    if (quick === "answered") {
      this.state = "head";
      return this.nextRequest();
    }
    this.handle(parsed.head)
      .catch((e) => {
        if (e instanceof HttpFailure) return this.answerError(e.s3, parsed.head.path);
        this.host.log.error("http_bug", { remote: this.remote, error: String((e as Error)?.stack ?? e) });
        this.mustClose = true;
        this.answerError({ status: 500, code: "InternalError", message: "internal error" }, parsed.head.path);
      })
      .finally(() => {
        if (this.state === "closed") return;
        this.state = "busy";
        // A body left unread would be taken for the next request: the connection ends instead.
        if (this.mustClose || this.bodyUnread || this.host.draining()) return void this.whenDrained().then(() => this.close());
        this.state = "head";
        this.resumeInput();
        this.nextRequest();
      });
  }

  private async handle(head: RequestHead): Promise<void> {
    // A browser's preflight carries no credentials: it is answered before any are asked for.
    if (head.method === "OPTIONS") return this.preflight(head);
    const q = new URLSearchParams(head.query);
    this.chunkSigning = null;
    const scope = this.authorize(head, q);
    const { bucket, key } = routeOf(head.path);
    const method = head.method;
    if (bucket === "") {
      if (method !== "GET" && method !== "HEAD") throw methodNotAllowed(method);
      return this.listBuckets(scope, method === "HEAD");
    }
    if (bucket !== this.host.bucket) {
      const invalid = checkBucketName(bucket);
      if (invalid !== null) throw new HttpFailure({ status: 400, code: "InvalidBucketName", message: `The specified bucket is not valid: ${invalid}` });
    }
    this.bucket = bucket;
    this.space = bucket === this.host.bucket ? "" : bucketPrefix(bucket);
    if (key === "" && method === "PUT" && !q.has("cors") && !q.has("versioning")) return this.createBucket(head, scope);
    if (key === "" && method === "DELETE") return this.deleteBucket(scope);
    if (this.space !== "" && !(await this.bucketExists(bucket))) throw new HttpFailure({ status: 404, code: "NoSuchBucket", message: `The specified bucket does not exist: ${bucket}` });
    if (key === "") {
      if (method === "HEAD") return this.answer(200, {}, EMPTY, true);
      if (method === "GET" && q.has("location")) return this.answer(200, { "content-type": "application/xml" }, encoder.encode(locationXml()), false);
      if (method === "GET" && q.has("uploads")) return this.listUploads(q, scope);
      if (method === "GET" && isPageRequest(head, q)) return this.listingPage("", q, scope);
      if (method === "GET") return this.listObjects(q, scope);
      if (method === "POST" && q.has("delete")) return this.deleteObjects(head, scope);
      throw methodNotAllowed(method);
    }
    if (method === "GET" && key.endsWith("/") && isPageRequest(head, q)) return this.listingPage(key, q, scope);
    const checked = this.keyIn(key);
    const uploadId = q.get("uploadId");
    switch (method) {
      case "GET":
      case "HEAD":
        this.allow(scope, Access.READ, key);
        if (uploadId !== null) return this.listParts(q, checked, uploadId);
        return this.getObject(head, checked, method === "HEAD");
      case "PUT":
        this.allow(scope, Access.WRITE, key);
        if (uploadId !== null) return this.uploadPart(head, q, checked, uploadId);
        if (head.headers.has("x-amz-copy-source")) return this.copyObject(head, checked, scope);
        return this.putObject(head, checked);
      case "POST":
        this.allow(scope, Access.WRITE, key);
        if (q.has("uploads")) return this.createUpload(checked);
        if (uploadId !== null) return this.completeUpload(head, checked, uploadId);
        throw methodNotAllowed(method);
      case "DELETE":
        this.allow(scope, Access.DELETE, key);
        if (uploadId !== null) return this.abortUpload(checked, uploadId);
        return this.deleteObject(checked);
      default:
        throw methodNotAllowed(method);
    }
  }

  /**
   * The common GET (a whole object, no conditions, no token) answered at once when the store opens
   * it from the caches and the socket takes head and body in one call: no promise, no await.
   * False when any of that does not hold (nothing was sent; the general path answers).
   */
  private quickGet(head: RequestHead): "answered" | "sending" | "declined" {
    if (head.method !== "GET" || !head.keepAlive || this.host.tokensRequired || this.outQueue.length > 0 || head.query !== "") return "declined";
    if (head.headers.has("range") || hasConditions(head)) return "declined";
    const prefix = this.defaultBucketPath;
    if (!head.path.startsWith(prefix) || head.path.includes("%")) return "declined";
    const key = checkKey(head.path.slice(prefix.length));
    if (typeof key === "string") return "declined";
    if (this.fd === -2) this.fd = this.host.socketFdOf(this.socket);
    if (this.fd < 0) return "declined";
    const digest = this.quickDigest;
    const reader = this.host.store.openReader(key, digest);
    if (reader.sendFramedNow === undefined) {
      void reader.close();
      return "declined";
    }
    this.quickSize = -1;
    reader.open(this.quickOpened);
    const size = this.quickSize;
    if (size < 0) {
      // Not opened from the caches (or not there): the general path opens it again.
      void reader.close();
      return "declined";
    }
    const headBytes = this.headOf(200, objectHeaders(size, digest), true);
    const sent = reader.sendFramedNow(this.fd, headBytes, EMPTY);
    if (sent === headBytes.length + size) {
      void reader.close();
      return "answered";
    }
    if (sent === -1) {
      void reader.close();
      return "declined";
    }
    // Part of it went: the rest as the general path sends it.
    this.state = "busy";
    void this.sendRest(reader, headBytes, size, sent).finally(() => {
      void reader.close();
      if (this.state === "closed") return;
      this.state = "head";
      this.nextRequest();
    });
    return "sending";
  }
  private readonly quickDigest = new Uint8Array(DIGEST_BYTES);
  /** The size quickGet's open reports at once (from the caches), else -1; one target per connection, not per request. */
  private quickSize = -1;
  private readonly quickOpened: StoreTarget = { onStoreDone: (size) => void (this.quickSize = size), onStoreFailed: () => {}, onStoreBug: () => {} };

  /**
   * With auth "token": the scope of the request's credentials (AWS Signature V4 with an access key
   * from `fsgw token create --s3`, in a header or a presigned URL; or Authorization: Bearer <token>),
   * or a refusal. Without: null (anyone; signatures are not checked).
   */
  private authorize(head: RequestHead, q: URLSearchParams): TokenScope | null {
    if (!this.host.tokensRequired) return null;
    const bearer = /^Bearer\s+(\S+)$/i.exec(head.headers.get("authorization") ?? "");
    let scope: TokenScope;
    if (bearer !== null) {
      const verified = this.host.verifyToken(bearer[1]!);
      if (!verified.ok) throw new HttpFailure({ status: 403, code: "AccessDenied", message: "unauthorized" });
      scope = verified.scope;
    } else {
      try {
        const sig = parseSigV4(head, q);
        if (sig === null) throw new SigV4Error("AccessDenied", "this gateway needs AWS Signature V4 (an access key from 'fsgw token create --s3') or Authorization: Bearer <token>");
        const carried = scopeOfAccessKey(sig.accessKeyId);
        if (carried === null) throw new SigV4Error("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.");
        this.chunkSigning = verifySigV4(head, q, sig, this.host.s3SecretKeys(sig.accessKeyId), Date.now());
        scope = carried;
      } catch (e) {
        if (!(e instanceof SigV4Error)) throw e;
        const status = e.code === "AuthorizationHeaderMalformed" || e.code === "AuthorizationQueryParametersError" || e.code === "InvalidArgument" ? 400 : 403;
        throw new HttpFailure({ status, code: e.code, message: e.message });
      }
    }
    if (Date.now() >= scope.expiresAtMs) throw new HttpFailure({ status: 403, code: "AccessDenied", message: "token expired" });
    return scope;
  }

  /** Refuses what the request's scope does not allow: `access` to `key` of the request's bucket. */
  private allow(scope: TokenScope | null, access: number, key: string, bucket = this.bucket): void {
    if (scope === null) return;
    if ((scope.access & access) !== access) throw new HttpFailure({ status: 403, code: "AccessDenied", message: "forbidden: operation not allowed" });
    if (!key.startsWith(scope.prefix) || !scopeHasBucket(scope, bucket)) throw new HttpFailure({ status: 403, code: "AccessDenied", message: "forbidden: key outside token scope" });
  }

  // ---- buckets ----

  /** The store key of a client's key in the request's bucket, or its refusal. */
  private keyIn(name: string): StoreKey {
    const key = this.space === "" ? checkKey(name) : bucketKey(this.bucket, name);
    if (typeof key === "string") throw new HttpFailure({ status: 400, code: key.includes("longer") ? "KeyTooLongError" : "InvalidArgument", message: key });
    return key;
  }

  /** A client's key from a store key of the request's bucket. */
  private nameOf(key: StoreKey): string {
    return key.name.slice(this.space.length);
  }

  /** Whether a bucket other than the default one exists (its marker does). */
  private async bucketExists(bucket: string): Promise<boolean> {
    const r = await new Promise<Outcome<number>>((resolve, reject) =>
      this.host.store.stat(bucketMarkerKey(bucket), {
        onStat: (size) => resolve({ ok: true, value: size }),
        onStoreDone: (size) => resolve({ ok: true, value: size }),
        onStoreFailed: (failure, cause) => resolve({ ok: false, failure, cause }),
        onStoreBug: reject,
      }),
    );
    if (r.ok) return true;
    if (r.failure === Failure.NOT_FOUND) return false;
    throw new HttpFailure(s3ErrorOf(r.failure, r.cause.text));
  }

  /** The buckets besides the default one, with their creation times (their markers'), at most bucketsMax + 1. */
  private async otherBuckets(): Promise<{ name: string; created: Date }[]> {
    const out: { name: string; created: Date }[] = [];
    let after = "";
    for (;;) {
      const page = await this.listPage(BUCKET_SPACE, "/", after, after !== "", 1000);
      for (const line of new TextDecoder().decode(page.lines).split("\n")) {
        if (line === "") continue;
        const o = JSON.parse(line) as { key?: string; mtime?: string };
        if (o.key !== undefined) out.push({ name: o.key.slice(BUCKET_SPACE.length), created: new Date(o.mtime ?? 0) });
      }
      if (page.next === "" || out.length > this.host.bucketsMax) return out;
      after = page.next.slice(1);
    }
  }

  /** ListBuckets: the default bucket and those made by CreateBucket, as far as the scope reaches. */
  private async listBuckets(scope: TokenScope | null, headOnly: boolean): Promise<void> {
    const all = [{ name: this.host.bucket, created: this.host.startedAt }, ...(await this.otherBuckets())];
    const seen = scope === null ? all : all.filter((b) => scopeHasBucket(scope, b.name));
    return this.answer(200, { "content-type": "application/xml" }, encoder.encode(listBucketsXml(seen)), headOnly);
  }

  /** CreateBucket: a new key space (its marker stored); one that exists is answered 200, as S3 does in us-east-1. */
  private async createBucket(head: RequestHead, scope: TokenScope | null): Promise<void> {
    this.allow(scope, Access.WRITE, "");
    // A CreateBucketConfiguration (a LocationConstraint) says nothing this gateway acts on: read and let go.
    if ((head.contentLength ?? 0) > 0 || head.chunked) await this.smallBody(head, CREATE_BUCKET_BODY_BYTES_MAX);
    if (this.space !== "" && !(await this.bucketExists(this.bucket))) {
      if ((await this.otherBuckets()).length >= this.host.bucketsMax) throw new HttpFailure({ status: 400, code: "TooManyBuckets", message: `You have attempted to create more buckets than allowed (bucketsMax ${this.host.bucketsMax}).` });
      const r = await storeValue((t) => this.host.store.putWhole(bucketMarkerKey(this.bucket), EMPTY, t, null));
      if (!r.ok) throw new HttpFailure(s3ErrorOf(r.failure, r.cause.text));
    }
    return this.answer(200, { location: `/${this.bucket}` }, EMPTY, false);
  }

  /** DeleteBucket: only an empty one, and never the default bucket (the TCP protocol's keys). */
  private async deleteBucket(scope: TokenScope | null): Promise<void> {
    this.allow(scope, Access.DELETE, "");
    if (this.space === "") throw new HttpFailure({ status: 409, code: "BucketNotEmpty", message: `The bucket ${this.bucket} holds the TCP protocol's keys and cannot be deleted.` });
    if (!(await this.bucketExists(this.bucket))) throw new HttpFailure({ status: 404, code: "NoSuchBucket", message: `The specified bucket does not exist: ${this.bucket}` });
    const page = await this.listPage(this.space, "", "", false, 1);
    if (page.lines.length > 0) throw new HttpFailure({ status: 409, code: "BucketNotEmpty", message: "The bucket you tried to delete is not empty." });
    if ((await multipartCall(() => this.host.multipart.list(this.bucket, this.space))).length > 0) throw new HttpFailure({ status: 409, code: "BucketNotEmpty", message: "The bucket you tried to delete has multipart uploads in progress." });
    const r = await storeValue((t) => this.host.store.remove(bucketMarkerKey(this.bucket), t));
    if (!r.ok && r.failure !== Failure.NOT_FOUND) throw new HttpFailure(s3ErrorOf(r.failure, r.cause.text));
    return this.answer(204, {}, EMPTY, false);
  }

  // ---- CORS ----

  /** The request's Origin when httpCorsOrigins lets its page read the answer, else null. */
  private allowedOrigin(head: RequestHead): string | null {
    const origin = head.headers.get("origin");
    if (origin === undefined || this.host.corsOrigins.size === 0) return null;
    return this.host.corsOrigins.has(origin) || this.host.corsOrigins.has("*") ? origin : null;
  }

  /**
   * A CORS preflight (OPTIONS with Origin and Access-Control-Request-Method): what the browser may
   * send, for an origin of httpCorsOrigins; else 403, as S3 refuses one no rule allows.
   */
  private preflight(head: RequestHead): void {
    const method = head.headers.get("access-control-request-method");
    if (head.headers.get("origin") === undefined || method === undefined) throw new HttpFailure({ status: 400, code: "BadRequest", message: "Insufficient information. Origin request header needed." });
    if (this.corsOrigin === null || !CORS_METHODS.includes(method)) {
      throw new HttpFailure({ status: 403, code: "AccessForbidden", message: "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec." });
    }
    const headers: Record<string, string> = { "access-control-allow-methods": CORS_METHODS.join(", "), "access-control-max-age": String(PREFLIGHT_MAX_AGE_S) };
    const asked = head.headers.get("access-control-request-headers");
    // Any request header may be sent: what a request may do is decided by its signature and scope.
    if (asked !== undefined && /^[!#$%&'*+.^_`|~0-9A-Za-z-]+(\s*,\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+)*$/.test(asked.trim())) headers["access-control-allow-headers"] = asked.trim();
    return this.answer(200, headers, EMPTY, false);
  }

  // ---- ListObjectsV2 ----

  /** ListObjectsV2 (list-type=2) and ListObjects (version 1: marker, NextMarker). */
  private async listObjects(q: URLSearchParams, scope: TokenScope | null): Promise<void> {
    const v2 = q.get("list-type") === "2";
    const prefix = q.get("prefix") ?? "";
    this.allow(scope, Access.READ, prefix);
    const maxKeys = q.has("max-keys") ? Number(q.get("max-keys")) : 1000;
    if (!Number.isInteger(maxKeys) || maxKeys < 0) throw new HttpFailure({ status: 400, code: "InvalidArgument", message: "max-keys must be a whole number" });
    const delimiter = q.get("delimiter") ?? "";
    const marker = v2 ? "" : (q.get("marker") ?? "");
    // Version 1's marker is a key or, as this server's NextMarker gives it with a delimiter, a
    // common prefix: then everything under it was listed already.
    const token = v2 ? (q.get("continuation-token") ?? "") : marker === "" ? "" : (delimiter !== "" && marker.endsWith(delimiter) ? "P" : "K") + marker;
    const startAfter = v2 ? (q.get("start-after") ?? "") : "";
    if (token !== "" && token[0] !== "K" && token[0] !== "P") throw new HttpFailure({ status: 400, code: "InvalidArgument", message: "The continuation token provided is incorrect" });
    const after = token !== "" ? token.slice(1) : startAfter;
    const request = { bucket: this.bucket, prefix, delimiter, maxKeys: Math.min(maxKeys, 1000), startAfter, continuationToken: token, marker };
    const page = request.maxKeys > 0 ? await this.bucketPage(prefix, delimiter, after, token.startsWith("P"), request.maxKeys) : { lines: EMPTY, next: "" };
    const xml = v2 ? listObjectsV2Xml(request, page.lines, page.next) : listObjectsV1Xml(request, page.lines, page.next);
    return this.answer(200, { "content-type": "application/xml" }, encoder.encode(xml), false);
  }

  /**
   * listPage within the request's bucket: its prefix and start in the bucket's key space, the
   * keys, common prefixes and token of the answer without it.
   */
  private async bucketPage(prefix: string, delimiter: string, after: string, afterPrefix: boolean, maxKeys: number): Promise<ListPage> {
    const space = this.space;
    const page = await this.listPage(space + prefix, delimiter, after === "" ? "" : space + after, afterPrefix, maxKeys);
    if (space === "") return page;
    let lines = "";
    for (const line of new TextDecoder().decode(page.lines).split("\n")) {
      if (line === "") continue;
      const o = JSON.parse(line) as { key?: string; prefix?: string };
      if (o.key !== undefined) o.key = o.key.slice(space.length);
      if (o.prefix !== undefined) o.prefix = o.prefix.slice(space.length);
      lines += `${JSON.stringify(o)}\n`;
    }
    return { lines: encoder.encode(lines), next: page.next === "" ? "" : page.next[0] + page.next.slice(1 + space.length) };
  }

  /** One page of the store's listing (the listing index): LIST lines and the token that continues it. */
  private async listPage(prefix: string, delimiter: string, after: string, afterPrefix: boolean, maxKeys: number): Promise<ListPage> {
    const list = this.host.store.list;
    if (list === undefined) throw new HttpFailure({ status: 501, code: "NotImplemented", message: "listing unavailable" });
    const r = await new Promise<Outcome<ListPage>>((resolve, reject) =>
      list.call(this.host.store, { prefix, delimiter, after, afterPrefix, maxKeys, bytesMax: this.host.listPageBytesMax }, {
        onListed: (value) => resolve({ ok: true, value }),
        onStoreFailed: (failure, cause) => resolve({ ok: false, failure, cause }),
        onStoreBug: reject,
      }),
    );
    if (!r.ok) throw new HttpFailure(s3ErrorOf(r.failure, r.cause.text));
    return r.value;
  }

  /** The HTML listing of a prefix for a person's browser (listing-html.ts): "/" as the delimiter, 1000 entries a page. */
  private async listingPage(prefix: string, q: URLSearchParams, scope: TokenScope | null): Promise<void> {
    this.allow(scope, Access.READ, prefix);
    const token = q.get("continuation-token") ?? "";
    if (token !== "" && token[0] !== "K" && token[0] !== "P") throw new HttpFailure({ status: 400, code: "InvalidArgument", message: "The continuation token provided is incorrect" });
    const page = await this.bucketPage(prefix, "/", token.slice(1), token.startsWith("P"), 1000);
    return this.answer(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" }, encoder.encode(listingHtml(this.bucket, prefix, page.lines, page.next)), false);
  }

  // ---- objects ----

  private async getObject(head: RequestHead, key: StoreKey, headOnly: boolean): Promise<void> {
    const digest = new Uint8Array(DIGEST_BYTES);
    const reader = this.host.store.openReader(key, digest);
    try {
      const opened = await storeValue((t) => reader.open(t));
      if (!opened.ok) throw new HttpFailure(s3ErrorOf(opened.failure, opened.cause.text));
      const size = opened.value;
      const headers = objectHeaders(size, digest, reader.etag ?? null);
      const condition = conditionOf(head, headers.etag, mtimeMsOf(digest));
      if (condition === 304) return this.answer(304, notModifiedHeaders(headers), EMPTY, true);
      if (condition === 412) throw new HttpFailure({ status: 412, code: "PreconditionFailed", message: "At least one of the pre-conditions you specified did not hold" });
      const range = rangeOf(head.headers.get("range"), size);
      if (range === "invalid") {
        throw new HttpFailure({ status: 416, code: "InvalidRange", message: `The requested range is not satisfiable (the object has ${size} bytes)` });
      }
      let status = 200;
      let length = size;
      if (range !== null) {
        status = 206;
        length = range.length;
        headers["content-range"] = `bytes ${range.offset}-${range.offset + range.length - 1}/${size}`;
        if (length > 0) reader.range(range.offset, range.length);
      }
      if (range !== null) headers["content-length"] = String(length);
      const headBytes = this.headOf(status, headers, true);
      if (headOnly || length === 0) return this.send(headBytes);
      await this.sendBody(reader, headBytes, length);
    } finally {
      void reader.close();
    }
  }

  /** The head, then `length` bytes of the reader: by sendfile when the store can, else through memory. */
  private async sendBody(reader: BodyReader, headBytes: Uint8Array, length: number): Promise<void> {
    // Checked once per connection: the descriptor stays the socket's while it is open.
    if (this.fd === -2) this.fd = this.host.socketFdOf(this.socket);
    const fd = this.fd;
    if (fd >= 0 && this.outQueue.length === 0 && reader.sendFramedNow !== undefined && reader.sendTo !== undefined) {
      const sent = reader.sendFramedNow(fd, headBytes, EMPTY);
      if (sent === headBytes.length + length) return;
      if (sent >= 0) return this.sendRest(reader, headBytes, length, sent);
    }
    this.send(headBytes);
    const into = new Uint8Array(Math.min(READ_BYTES, length));
    for (let left = length; left > 0 && this.state !== "closed"; ) {
      const r = await storeValue((t) => reader.read(into, t));
      if (!r.ok || r.value === 0) return this.close(); // a body cut short cannot be answered otherwise
      this.send(into.subarray(0, Math.min(r.value, left))); // send copies what the socket does not take
      left -= r.value;
      if (this.outQueued > this.host.connectionBufferBytesMax) await this.whenDrained();
    }
  }

  /**
   * After sendFramedNow sent `sent` bytes of head and body: the rest of the head through our queue,
   * then the body from the store, all of it in the kernel before each send (sendTo's condition).
   */
  private async sendRest(reader: BodyReader, headBytes: Uint8Array, length: number, sent: number): Promise<void> {
    if (sent < headBytes.length) {
      this.send(headBytes.subarray(sent));
      await this.whenDrained();
    }
    let left = headBytes.length + length - Math.max(sent, headBytes.length);
    while (left > 0 && this.state !== "closed") {
      const r = await storeValue((t) => reader.sendTo!(this.fd, t));
      if (!r.ok || r.value === 0) return this.close(); // the client stopped taking bytes, or the store failed mid-body
      left -= r.value;
    }
  }

  private async putObject(head: RequestHead, key: StoreKey): Promise<void> {
    const { form, size } = this.payloadOf(head);
    const expected = expectedSha256(head);
    const checks = this.bodyChecks(head, form);
    const digest = new Uint8Array(DIGEST_BYTES);
    this.continueIfAsked(head);
    if (size === null) return this.putOfUnknownLength(key, form, expected, checks, digest);
    let sink: UploadSink | null = null;
    let ended: Promise<Outcome<number>> | null = null;
    const small = size <= this.host.inlineBytesMax;
    // A store that refuses to open it leaves the body unread: the answer closes the connection (bodyUnread).
    if (!small) {
      // A Content-MD5 the store checks before its commit needs no MD5 here: the body may splice.
      const expectedMd5 = checks.md5 === null ? null : Buffer.from(checks.md5Expected, "base64");
      ({ sink, ended } = await this.startUpload(key, size, expected, digest, () => this.body?.progressed?.(), expectedMd5?.length === 16 ? expectedMd5 : null));
      if (sink.checksMd5 === true) {
        checks.hashers = checks.hashers.filter((h) => h !== checks.md5);
        checks.md5 = null;
      }
    }
    const gather = small ? new Uint8Array(size) : null;
    let at = 0;
    const take = gather !== null ? (part: Uint8Array) => void (gather.set(part, at), (at += part.length)) : (part: Uint8Array) => sink!.push(part);
    // A plain body that nothing in JavaScript must see goes socket -> file by splice, hashed (both
    // digests) by the pool worker that moves it; what is left when that cannot go on is read here.
    let left = size;
    if (sink !== null && sink.receiveFrom !== undefined && form.aws === null && form.contentLength !== null && checks.hashers.length === 0) {
      const spliced = await this.spliceBody(sink, size);
      if (spliced === null) return void this.host.track(sink.abort(true));
      left = spliced;
    }
    const rest: BodyForm = left === size ? form : { contentLength: left, aws: null };
    if ((await this.receiveChecked(rest, left, left, checks, take, () => sink)) === null) return;
    let stored: Outcome<number>;
    if (sink !== null) {
      sink.end();
      stored = await ended!;
    } else {
      stored = await storeValue((t) => this.host.store.putWhole(key, gather!, t, expected, digest, true));
    }
    if (!stored.ok) throw new HttpFailure(storeFailure(stored));
    return this.answer(200, digestHeaders(digest, checks.answer), EMPTY, false);
  }

  /**
   * Moves a Content-Length body from the socket into `sink` by splice (sink.receiveFrom), after
   * the bytes of it that arrived with the head: none of it passes through JavaScript. Bun reads
   * nothing meanwhile (paused), so the socket's bytes are the store's alone. The bytes left to
   * read the usual way (0 when all moved; more when the store could not go on, whose failure comes
   * with the upload's end), or null when the connection closed.
   */
  private async spliceBody(sink: UploadSink, size: number): Promise<number | null> {
    if (this.fd === -2) this.fd = this.host.socketFdOf(this.socket);
    if (this.fd < 0) return size;
    this.pause();
    const early = Math.min(this.pending.length, size);
    if (early > 0) {
      sink.push(this.pending.subarray(0, early));
      this.pending = early === this.pending.length ? EMPTY : this.pending.subarray(early);
    }
    let left = size - early;
    this.state = "body";
    while (left > 0) {
      const r = await storeValue((t) => sink.receiveFrom!(this.fd, t));
      if ((this.state as HttpState) === "closed") return null;
      if (!r.ok) break;
      left -= r.value; // 0: the client sent nothing for a while; the store waits again
      if (r.value > 0) this.lastActiveMs = Date.now();
    }
    this.state = "busy";
    if (left === 0) this.bodyUnread = false;
    this.resumeInput();
    return left;
  }

  /**
   * A PUT whose length is not known before its end (Transfer-Encoding: chunked, no
   * x-amz-decoded-content-length): gathered in memory up to inlineBytesMax, past that spooled to a
   * file (multipartDir) and then streamed into the store with its size known.
   */
  private async putOfUnknownLength(key: StoreKey, form: BodyForm, expected: Uint8Array | null, checks: BodyChecks, digest: Uint8Array): Promise<void> {
    const parts: Uint8Array[] = [];
    let gathered = 0;
    let spool: PartWriter | null = null;
    const take = (part: Uint8Array) => {
      if (spool !== null) return spool.push(part);
      if (gathered + part.length <= this.host.inlineBytesMax) {
        parts.push(part);
        gathered += part.length;
        return;
      }
      spool = this.host.multipart.spool({ progressed: () => this.body?.progressed?.() });
      for (const p of parts) spool.push(p);
      spool.push(part);
      parts.length = 0;
    };
    if ((await this.receiveChecked(form, null, this.host.uploadBytesMax, checks, take, () => spool)) === null) return;
    const spooled = spool as PartWriter | null;
    if (spooled === null) {
      const stored = await storeValue((t) => this.host.store.putWhole(key, concatAll(parts, gathered), t, expected, digest, true));
      if (!stored.ok) throw new HttpFailure(storeFailure(stored));
      return this.answer(200, digestHeaders(digest, checks.answer), EMPTY, false);
    }
    const { path, size } = await spooled.finish().catch((e: NodeJS.ErrnoException) => {
      this.host.track(spooled.abort());
      throw new HttpFailure(e.code === "ENOSPC" ? { status: 507, code: "InsufficientStorage", message: "no space left to spool the body" } : { status: 500, code: "InternalError", message: `spooling the body failed: ${e.code ?? e.message}` });
    });
    const file = await openFile(path, "r");
    try {
      await this.streamInto(key, size, digest, async (into) => (await file.read(into, 0, into.length)).bytesRead, expected);
    } finally {
      await file.close().catch(() => {});
      await unlink(path).catch(() => {});
    }
    return this.answer(200, digestHeaders(digest, checks.answer), EMPTY, false);
  }

  /**
   * How a request's body is framed and coded, and the size of its payload when known before its
   * end: Content-Length, or an aws-chunked body's x-amz-decoded-content-length; null for a plain
   * chunked one. Too large a body is refused here, before any of it is read.
   */
  private payloadOf(head: RequestHead): { form: BodyForm; size: number | null } {
    const hash = head.headers.get("x-amz-content-sha256") ?? "";
    const codings = (head.headers.get("content-encoding") ?? "").toLowerCase().split(",").map((t) => t.trim());
    let form: BodyForm;
    let size: number | null;
    if (!hash.startsWith("STREAMING-") && !codings.includes("aws-chunked")) {
      size = head.chunked ? null : (head.contentLength ?? 0);
      form = { contentLength: size, aws: null };
    } else {
      if (hash.startsWith("STREAMING-") && hash !== STREAMING_PAYLOAD && hash !== STREAMING_PAYLOAD_TRAILER && hash !== STREAMING_UNSIGNED_TRAILER) {
        throw new HttpFailure({ status: 501, code: "NotImplemented", message: `x-amz-content-sha256 ${hash} is not supported (SigV4A): use SigV4 (STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER) or UNSIGNED-PAYLOAD` });
      }
      const decoded = head.headers.get("x-amz-decoded-content-length");
      if (decoded === undefined || !/^\d{1,15}$/.test(decoded)) throw new HttpFailure({ status: 411, code: "MissingContentLength", message: "An aws-chunked body needs x-amz-decoded-content-length." });
      if (!head.chunked && head.contentLength === null) throw new HttpFailure({ status: 411, code: "MissingContentLength", message: "You must provide the Content-Length HTTP header." });
      const signed = hash === STREAMING_PAYLOAD || hash === STREAMING_PAYLOAD_TRAILER;
      const trailer = head.headers.get("x-amz-trailer")?.trim().toLowerCase() || null;
      size = Number(decoded);
      form = { contentLength: head.chunked ? null : head.contentLength, aws: { signed, trailer, signing: signed ? this.chunkSigning : null } };
    }
    if (size !== null && size > this.host.uploadBytesMax) {
      this.mustClose = true; // the body is not read: the connection cannot go on
      throw new HttpFailure({ status: 400, code: "EntityTooLarge", message: `Your proposed upload exceeds the maximum allowed size (uploadBytesMax ${this.host.uploadBytesMax})` });
    }
    return { form, size };
  }

  /**
   * What a body is checked against before its commit, besides the SHA-256 the store checks: its
   * Content-MD5, and an x-amz-checksum-<algorithm> from a header or an aws-chunked trailer.
   */
  private bodyChecks(head: RequestHead, form: BodyForm, withMd5 = true): BodyChecks {
    const checks: BodyChecks = { md5: null, md5Expected: "", checksum: null, checksumName: "", checksumExpected: null, hashers: [], answer: {} };
    const md5 = head.headers.get("content-md5");
    if (md5 !== undefined && withMd5) {
      checks.md5 = new Bun.CryptoHasher("md5");
      checks.md5Expected = md5;
      checks.hashers.push(checks.md5);
    }
    let name = form.aws?.trailer ?? null;
    let expected: string | null = null;
    if (name === null) {
      for (const [header, value] of head.headers) {
        // x-amz-checksum-sha256 is the store's own check (expectedSha256).
        if (header === "x-amz-checksum-sha256" || checksumAlgorithmOf(header) === null) continue;
        name = header;
        expected = value;
      }
    }
    if (name === null) return checks;
    const algorithm = checksumAlgorithmOf(name);
    if (algorithm === null) throw new HttpFailure({ status: 400, code: "InvalidRequest", message: `x-amz-trailer ${name} is not a checksum this gateway takes` });
    if (algorithm === "unsupported") throw new HttpFailure({ status: 501, code: "NotImplemented", message: `${name} is not supported: send CRC32, CRC32C, SHA1 or SHA256 checksums` });
    checks.checksum = new ChecksumHasher(algorithm);
    checks.checksumName = name;
    checks.checksumExpected = expected;
    checks.hashers.push(checks.checksum);
    return checks;
  }

  /** A received body against its checks (bodyChecks): BadDigest when one fails. */
  private check(checks: BodyChecks, decoder: RequestBody): void {
    if (checks.md5 !== null && checks.md5.digest("base64") !== checks.md5Expected) throw new HttpFailure({ status: 400, code: "BadDigest", message: "The Content-MD5 you specified did not match what we received." });
    if (checks.checksum === null) return;
    const computed = checks.checksum.base64();
    const expected = checks.checksumExpected ?? decoder.trailers.get(checks.checksumName);
    if (expected !== computed) throw new HttpFailure({ status: 400, code: "BadDigest", message: `The ${checks.checksumName} you specified did not match the calculated checksum.` });
    checks.answer[checks.checksumName] = computed;
  }

  /**
   * receive() and then check(): the body whole and as its checks say (its decoder), or null when
   * the connection closed first. On a failure or a close, what the body was going into (`into()`,
   * when there is one yet) is aborted: nothing of it is kept.
   */
  private async receiveChecked(form: BodyForm, size: number | null, limit: number, checks: BodyChecks, take: (part: Uint8Array) => void, into: () => { readonly backlogBytes: number; abort(): Promise<void> } | null): Promise<RequestBody | null> {
    let ok = false;
    try {
      const decoder = await this.receive(form, size, limit, checks.hashers, take, () => into()?.backlogBytes ?? 0);
      if (decoder !== null) this.check(checks, decoder);
      ok = decoder !== null;
      return decoder;
    } finally {
      const sink = ok ? null : into();
      if (sink !== null) this.host.track(sink.abort());
    }
  }

  /**
   * A request's body as it arrives (onData, feedBody), decoded (request-body.ts), its payload
   * handed to `take` and the hashers: its decoder (the trailers) once all of it arrived, null when
   * the connection closed first. A malformed body, or one larger than `limit`, is an HttpFailure (the connection
   * closes after its answer). `backlog` is what the payload's destination holds unwritten: past
   * connectionBufferBytesMax, reading pauses until it drains.
   */
  private async receive(form: BodyForm, size: number | null, limit: number, hashers: { update(b: Uint8Array): unknown }[], take: (part: Uint8Array) => void, backlog: () => number): Promise<RequestBody | null> {
    const decoder = new RequestBody(form);
    const failure = await new Promise<BodyError | null>((done) => {
      const body: ArrivingBody = { decoder, size, got: 0, backlog, done, progressed: null, emit: EMPTY_EMIT };
      // One closure per request, not per arriving chunk: the payload, bounded, hashed, taken.
      body.emit = (part) => {
        if (body.got + part.length > limit) {
          throw size !== null
            ? new BodyError(400, "IncompleteBody", `the body holds more than the ${size} bytes announced`)
            : new BodyError(400, "EntityTooLarge", `Your proposed upload exceeds the maximum allowed size (${limit} bytes)`);
        }
        for (const h of hashers) h.update(part);
        take(part);
        body.got += part.length;
      };
      this.body = body;
      this.state = "body";
      this.feedBody();
    });
    this.body = null;
    if ((this.state as HttpState) === "closed") return null;
    this.state = "busy";
    if (failure !== null) {
      this.bodyUnread = true; // the rest of it cannot be told from a next request: the connection closes
      throw new HttpFailure({ status: failure.status, code: failure.code, message: failure.message });
    }
    return decoder;
  }

  /** A small request body whole (DeleteObjects, CompleteMultipartUpload's part list), at most `max` bytes. */
  private async smallBody(head: RequestHead, max: number): Promise<string> {
    const { form, size } = this.payloadOf(head);
    if (size !== null && size > max) {
      this.mustClose = true;
      throw new HttpFailure({ status: 400, code: "MaxMessageLengthExceeded", message: `Your request was too big (at most ${max} bytes here).` });
    }
    const checks = this.bodyChecks(head, form);
    const expected = expectedSha256(head);
    this.continueIfAsked(head);
    const parts: Uint8Array[] = [];
    let got = 0;
    const take = (part: Uint8Array) => void (parts.push(part), (got += part.length));
    const decoder = await this.receive(form, size, max, checks.hashers, take, () => 0);
    if (decoder === null) throw new HttpFailure({ status: 400, code: "IncompleteBody", message: "closed" });
    this.check(checks, decoder);
    const body = concatAll(parts, got);
    if (expected !== null && !Buffer.from(expected).equals(new Bun.CryptoHasher("sha256").update(body).digest() as Buffer)) throw new HttpFailure(SHA256_MISMATCH);
    return new TextDecoder().decode(body);
  }

  private continueIfAsked(head: RequestHead): void {
    if ((head.headers.get("expect") ?? "").toLowerCase() === "100-continue") this.send(encoder.encode("HTTP/1.1 100 Continue\r\n\r\n"));
  }

  // ---- DeleteObjects, CopyObject ----

  private async deleteObjects(head: RequestHead, scope: TokenScope | null): Promise<void> {
    const xml = await this.smallBody(head, DELETE_BODY_BYTES_MAX);
    const keys = xmlValues(xml, "Key");
    if (keys.length > 1000) throw new HttpFailure({ status: 400, code: "MalformedXML", message: "at most 1000 keys per DeleteObjects" });
    const quiet = xmlValues(xml, "Quiet")[0]?.trim() === "true";
    const deleted: string[] = [];
    const errors: { key: string; code: string; message: string }[] = [];
    for (const name of keys) {
      const key = this.space === "" ? checkKey(name) : bucketKey(this.bucket, name);
      if (typeof key === "string") {
        errors.push({ key: name, code: "InvalidArgument", message: key });
        continue;
      }
      if (scope !== null && ((scope.access & Access.DELETE) !== Access.DELETE || !name.startsWith(scope.prefix) || !scopeHasBucket(scope, this.bucket))) {
        errors.push({ key: name, code: "AccessDenied", message: "Access Denied" });
        continue;
      }
      const r = await storeValue((t) => this.host.store.remove(key, t));
      if (r.ok || r.failure === Failure.NOT_FOUND) deleted.push(name);
      else {
        const s3 = s3ErrorOf(r.failure, r.cause.text);
        errors.push({ key: name, code: s3.code, message: s3.message });
      }
    }
    return this.answer(200, { "content-type": "application/xml" }, encoder.encode(deleteResultXml(quiet ? [] : deleted, errors)), false);
  }

  /** CopyObject within the store: the source streamed into a new upload of the destination. */
  private async copyObject(head: RequestHead, key: StoreKey, scope: TokenScope | null): Promise<void> {
    let source = head.headers.get("x-amz-copy-source")!;
    const q = source.indexOf("?");
    if (q >= 0) source = source.slice(0, q);
    const { bucket, key: sourceName } = routeOf(source.startsWith("/") ? source : `/${source}`);
    const other = bucket !== this.host.bucket;
    if (other && (checkBucketName(bucket) !== null || !(await this.bucketExists(bucket)))) throw new HttpFailure({ status: 404, code: "NoSuchBucket", message: `The specified bucket does not exist: ${bucket}` });
    const sourceKey = other ? bucketKey(bucket, sourceName) : checkKey(sourceName);
    if (typeof sourceKey === "string") throw new HttpFailure({ status: 400, code: "InvalidArgument", message: `x-amz-copy-source: ${sourceKey}` });
    this.allow(scope, Access.READ, sourceName, bucket);
    const facts = new Uint8Array(DIGEST_BYTES);
    const reader = this.host.store.openReader(sourceKey, facts);
    try {
      const opened = await storeValue((t) => reader.open(t));
      if (!opened.ok) throw new HttpFailure(s3ErrorOf(opened.failure, opened.cause.text));
      const condition = conditionOf(copySourceConditions(head), etagOf(facts) ?? undefined, mtimeMsOf(facts));
      if (condition !== 200) throw new HttpFailure({ status: 412, code: "PreconditionFailed", message: "At least one of the pre-conditions you specified did not hold" });
      const digest = new Uint8Array(DIGEST_BYTES);
      await this.streamInto(key, opened.value, digest, async (into) => {
        const r = await storeValue((t) => reader.read(into, t));
        if (!r.ok) throw new HttpFailure(s3ErrorOf(r.failure, r.cause.text));
        return r.value;
      });
      return this.answer(200, { "content-type": "application/xml" }, encoder.encode(copyObjectXml(etagOf(digest) ?? '""', new Date())), false);
    } finally {
      void reader.close();
    }
  }

  /**
   * A streamed upload of `key` (with its MD5: the ETag), once the store has opened it: its sink and
   * the promise of its end. A store that cannot open it is an HttpFailure.
   */
  private async startUpload(key: StoreKey, size: number, expected: Uint8Array | null, digest: Uint8Array, progressed: () => void, expectedMd5: Uint8Array | null = null): Promise<{ sink: UploadSink; ended: Promise<Outcome<number>> }> {
    let ready!: (o: Outcome<number>) => void;
    const opened = new Promise<Outcome<number>>((r) => (ready = r));
    let finish!: (o: Outcome<number>) => void;
    const ended = new Promise<Outcome<number>>((r) => (finish = r));
    const sink = this.host.store.beginUpload(key, size, {
      onStoreDone: (v) => ready({ ok: true, value: v }),
      onStoreFailed: (failure, cause) => {
        ready({ ok: false, failure, cause });
        finish({ ok: false, failure, cause });
      },
      onStoreBug: (e) => {
        this.host.log.error("http_bug", { remote: this.remote, error: String((e as Error)?.stack ?? e) });
        ready({ ok: false, failure: Failure.IO, cause: { text: "internal error" } as FailureCause });
      },
      onUploadProgress: progressed,
      onUploadDone: (n) => finish({ ok: true, value: n }),
      onUploadFailed: (failure, cause) => finish({ ok: false, failure, cause }),
    }, expected, digest, undefined, true, expectedMd5);
    const o = await opened;
    if (!o.ok) throw new HttpFailure(s3ErrorOf(o.failure, o.cause.text));
    return { sink, ended };
  }

  /**
   * Stores `size` bytes that `next` reads (each call fills the front of a buffer and says how many;
   * 0 before the end is a failure) as one upload of `key`, with its MD5: CopyObject and
   * CompleteMultipartUpload. Reads wait while the store's backlog is past the connection's bound.
   */
  private async streamInto(key: StoreKey, size: number, digest: Uint8Array, next: (into: Uint8Array) => Promise<number>, expected: Uint8Array | null = null): Promise<void> {
    let progressed: (() => void) | null = null;
    const { sink, ended } = await this.startUpload(key, size, expected, digest, () => progressed?.());
    try {
      for (let left = size; left > 0; ) {
        if (this.state === "closed") throw new HttpFailure({ status: 400, code: "RequestTimeout", message: "the client went away" });
        // A fresh buffer per read: the sink keeps what it is given until it is stored.
        const into = new Uint8Array(Math.min(COPY_BYTES, left));
        const n = await next(into);
        if (n <= 0) throw new HttpFailure({ status: 500, code: "InternalError", message: "a source ended before its size" });
        sink.push(into.subarray(0, n));
        left -= n;
        while (sink.backlogBytes > this.host.connectionBufferBytesMax) await new Promise<void>((r) => (progressed = r));
        progressed = null;
      }
    } catch (e) {
      this.host.track(sink.abort());
      throw e;
    }
    sink.end();
    const stored = await ended;
    if (!stored.ok) throw new HttpFailure(storeFailure(stored));
  }

  // ---- multipart uploads ----

  private async createUpload(key: StoreKey): Promise<void> {
    const id = await multipartCall(() => this.host.multipart.create(this.bucket, this.nameOf(key), key));
    if (id === null) throw new HttpFailure({ status: 503, code: "SlowDown", message: `Please reduce your request rate (multipart uploads in progress: multipartUploadsMax ${this.host.multipart.uploadsMax}).` });
    return this.answer(200, { "content-type": "application/xml" }, encoder.encode(initiateMultipartXml(this.bucket, this.nameOf(key), id)), false);
  }

  private async upload(key: StoreKey, uploadId: string) {
    const upload = await multipartCall(() => this.host.multipart.get(uploadId, this.bucket, this.nameOf(key), key));
    if (upload === null) throw new HttpFailure({ status: 404, code: "NoSuchUpload", message: "The specified multipart upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed." });
    return upload;
  }

  private async uploadPart(head: RequestHead, q: URLSearchParams, key: StoreKey, uploadId: string): Promise<void> {
    const n = Number(q.get("partNumber"));
    if (!Number.isInteger(n) || n < 1 || n > PARTS_MAX) throw new HttpFailure({ status: 400, code: "InvalidArgument", message: `Part number must be an integer between 1 and ${PARTS_MAX}, inclusive` });
    const { form, size } = this.payloadOf(head);
    const expected = expectedSha256(head);
    // The part's writer computes the MD5 (the part's ETag) and checks a Content-MD5 itself.
    const checks = this.bodyChecks(head, form, false);
    await this.upload(key, uploadId);
    this.continueIfAsked(head);
    const writer = this.host.multipart.part(uploadId, n, key, { progressed: () => this.body?.progressed?.() }, expected);
    if ((await this.receiveChecked(form, size, size ?? this.host.uploadBytesMax, checks, (part) => writer.push(part), () => writer)) === null) return;
    try {
      const { etag } = await writer.commit(head.headers.get("content-md5"));
      return this.answer(200, { etag: `"${etag}"`, ...checks.answer }, EMPTY, false);
    } catch (e) {
      if (e instanceof BadPartDigest) throw new HttpFailure(e.sha256 ? SHA256_MISMATCH : { status: 400, code: "BadDigest", message: e.message });
      this.host.track(writer.abort());
      if (e instanceof HttpFailure) throw e;
      if (e instanceof MultipartError) throw new HttpFailure({ status: e.status, code: e.code, message: e.message });
      const errno = (e as NodeJS.ErrnoException).code;
      if (errno === "ENOENT") throw new HttpFailure({ status: 404, code: "NoSuchUpload", message: "The specified multipart upload does not exist (aborted meanwhile)." });
      if (errno === "ENOSPC") throw new HttpFailure({ status: 507, code: "InsufficientStorage", message: "no space left for the part" });
      throw e;
    }
  }

  private async completeUpload(head: RequestHead, key: StoreKey, uploadId: string): Promise<void> {
    const xml = await this.smallBody(head, COMPLETE_BODY_BYTES_MAX);
    await this.upload(key, uploadId);
    const numbers = xmlValues(xml, "PartNumber").map(Number);
    const etags = xmlValues(xml, "ETag").map((e) => e.trim().replace(/^"|"$/g, "").toLowerCase());
    if (numbers.length === 0 || numbers.length !== etags.length) throw new HttpFailure({ status: 400, code: "MalformedXML", message: "The XML you provided was not well-formed or did not validate against our published schema." });
    const have = new Map((await multipartCall(() => this.host.multipart.parts(uploadId, key))).map((p) => [p.number, p]));
    const chosen: Part[] = [];
    let total = 0;
    for (let i = 0; i < numbers.length; i++) {
      if (i > 0 && numbers[i]! <= numbers[i - 1]!) throw new HttpFailure({ status: 400, code: "InvalidPartOrder", message: "The list of parts was not in ascending order. Parts must be ordered by part number." });
      const part = have.get(numbers[i]!);
      if (part === undefined || part.etag !== etags[i]) throw new HttpFailure({ status: 400, code: "InvalidPart", message: `One or more of the specified parts could not be found (part ${numbers[i]}).` });
      if (i < numbers.length - 1 && part.size < this.host.partBytesMin) throw new HttpFailure({ status: 400, code: "EntityTooSmall", message: `Your proposed upload is smaller than the minimum allowed object size (part ${part.number}: ${part.size} bytes, at least ${this.host.partBytesMin} but the last).` });
      chosen.push(part);
      total += part.size;
    }
    if (total > this.host.uploadBytesMax) throw new HttpFailure({ status: 400, code: "EntityTooLarge", message: `Your proposed upload exceeds the maximum allowed size (uploadBytesMax ${this.host.uploadBytesMax})` });
    const etag = await multipartCall(() =>
      this.host.multipart.complete(uploadId, key, chosen, total, async (size, next) => {
        const digest = new Uint8Array(DIGEST_BYTES);
        await this.streamInto(key, size, digest, next);
        return etagOf(digest) ?? '""';
      }),
    );
    return this.answer(200, { "content-type": "application/xml" }, encoder.encode(completeMultipartXml(`/${this.bucket}/${this.nameOf(key)}`, this.bucket, this.nameOf(key), etag)), false);
  }

  private async abortUpload(key: StoreKey, uploadId: string): Promise<void> {
    await this.upload(key, uploadId);
    await multipartCall(() => this.host.multipart.remove(uploadId, key));
    return this.answer(204, {}, EMPTY, false);
  }

  private async listParts(q: URLSearchParams, key: StoreKey, uploadId: string): Promise<void> {
    await this.upload(key, uploadId);
    const marker = Number(q.get("part-number-marker") ?? "0") || 0;
    const max = Math.min(Math.max(Number(q.get("max-parts") ?? "1000") || 1000, 1), 1000);
    const after = (await multipartCall(() => this.host.multipart.parts(uploadId, key))).filter((p) => p.number > marker);
    const page = after.slice(0, max);
    return this.answer(200, { "content-type": "application/xml" }, encoder.encode(listPartsXml(this.bucket, this.nameOf(key), uploadId, page, marker, max, after.length > max)), false);
  }

  private async listUploads(q: URLSearchParams, scope: TokenScope | null): Promise<void> {
    const prefix = q.get("prefix") ?? "";
    this.allow(scope, Access.READ, prefix);
    const uploads = (await multipartCall(() => this.host.multipart.list(this.bucket, this.space))).filter((u) => u.key.startsWith(prefix)).slice(0, 1000);
    return this.answer(200, { "content-type": "application/xml" }, encoder.encode(listMultipartUploadsXml(this.bucket, prefix, uploads)), false);
  }

  /** Decodes what arrived of a request's body into its receiver; the rest stays for the next request. */
  private feedBody(): void {
    const b = this.body;
    if (b === null || this.state !== "body") return;
    // Fed even when nothing is pending: an empty body is whole at once.
    let taken: number;
    try {
      taken = b.decoder.feed(this.pending, b.emit);
    } catch (e) {
      if (!(e instanceof BodyError)) throw e;
      this.pending = EMPTY;
      return b.done(e);
    }
    this.pending = taken === this.pending.length ? EMPTY : this.pending.subarray(taken);
    if (b.decoder.done) {
      this.bodyUnread = false;
      if (b.size !== null && b.got !== b.size) return b.done(new BodyError(400, "IncompleteBody", `the body ended after ${b.got} of the ${b.size} bytes announced`));
      return b.done(null);
    }
    // The destination holds what it has not stored: past the bound, stop reading until it drains;
    // below it, read on (input held while the upload opened may have paused the socket).
    if (b.backlog() > this.host.connectionBufferBytesMax) {
      this.pause();
      b.progressed = () => {
        if (b.backlog() <= this.host.connectionBufferBytesMax / 2) {
          b.progressed = null;
          this.resumeInput();
        }
      };
    } else {
      this.resumeInput();
    }
  }

  private async deleteObject(key: StoreKey): Promise<void> {
    const r = await storeValue((t) => this.host.store.remove(key, t));
    // S3 answers 204 whether or not the key was there.
    if (!r.ok && r.failure !== Failure.NOT_FOUND) throw new HttpFailure(s3ErrorOf(r.failure, r.cause.text));
    return this.answer(204, {}, EMPTY, false);
  }

  // ---- output ----

  private headOf(status: number, headers: Record<string, string>, hasLength: boolean): Uint8Array {
    let text = `HTTP/1.1 ${status} ${REASONS[status] ?? ""}\r\nserver: fsgw\r\ndate: ${httpDateNow()}\r\n`;
    for (const name in headers) text += `${name}: ${headers[name]}\r\n`;
    if (this.corsOrigin !== null) text += `access-control-allow-origin: ${this.corsOrigin}\r\naccess-control-expose-headers: ${CORS_EXPOSED}\r\n`;
    // With CORS on, answers differ by Origin: a cache must not give one origin's to another.
    if (this.host.corsOrigins.size > 0) text += "vary: Origin\r\n";
    if (!hasLength) text += "content-length: 0\r\n";
    if (this.mustClose && headers.connection === undefined) text += "connection: close\r\n";
    return encoder.encode(text + "\r\n");
  }

  /** A whole answer: head and body (none for HEAD, though its length is said). */
  private answer(status: number, headers: Record<string, string>, body: Uint8Array, headOnly: boolean): void {
    const withLength = { ...headers, "content-length": String(body.length) };
    this.send(this.headOf(status, withLength, true));
    if (!headOnly && body.length > 0 && status !== 204 && status !== 304) this.send(body);
  }

  /** An S3 error answer; when the connection ends after it, it says so (Connection: close). */
  private answerError(error: S3Error, resource: string): void {
    if (this.state === "closed") return;
    if (this.bodyUnread) this.mustClose = true;
    const body = encoder.encode(errorXml(error, resource));
    const headers: Record<string, string> = { "content-type": "application/xml", "content-length": String(body.length) };
    if (this.mustClose) headers.connection = "close";
    this.send(this.headOf(error.status, headers, true));
    if (!this.isHead) this.send(body);
  }

  private send(bytes: Uint8Array): void {
    if (this.state === "closed" || bytes.length === 0) return;
    if (this.outQueue.length === 0) {
      const n = this.socket.write(bytes);
      if (n < 0) return;
      if (n === bytes.length) return;
      bytes = bytes.subarray(n);
    }
    // The socket took part of it: the rest waits (copied: callers reuse their buffers).
    this.outQueue.push(bytes.slice());
    this.outQueued += bytes.length;
  }

  private flush(): void {
    while (this.outQueue.length > 0) {
      const bytes = this.outQueue[0]!;
      const n = this.socket.write(bytes);
      if (n < 0) return;
      if (n > 0) this.lastActiveMs = Date.now();
      this.outQueued -= n;
      if (n < bytes.length) {
        this.outQueue[0] = bytes.subarray(n);
        return;
      }
      this.outQueue.shift();
    }
    const d = this.drained;
    this.drained = null;
    d?.();
  }

  /** Resolves once every queued byte is in the kernel (or the connection closed). */
  private whenDrained(): Promise<void> {
    if (this.outQueue.length === 0 || this.state === "closed") return Promise.resolve();
    return new Promise((resolve) => (this.drained = resolve));
  }

  private pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.socket.pause();
  }

  private resumeInput(): void {
    if (!this.paused || this.state === "closed") return;
    this.paused = false;
    this.socket.resume();
  }
}

const EMPTY_EMIT = (): void => {};

/** A request body being received (receive, feedBody). */
interface ArrivingBody {
  decoder: RequestBody;
  /** The payload's size when announced (Content-Length, x-amz-decoded-content-length), else null. */
  size: number | null;
  got: number;
  /** Takes the payload the decoder emits (at most receive()'s limit, hashed, handed on). */
  emit: (part: Uint8Array) => void;
  /** Bytes the destination holds unwritten. */
  backlog: () => number;
  /** All of it arrived (null), it was malformed (the error), or the connection closed (null, state closed). */
  done: (failure: BodyError | null) => void;
  /** The destination wrote some: reading may resume. */
  progressed: (() => void) | null;
}

/** What a body is checked against before its commit (bodyChecks). */
interface BodyChecks {
  md5: Bun.CryptoHasher | null;
  md5Expected: string;
  checksum: ChecksumHasher | null;
  /** x-amz-checksum-<algorithm>: its header or trailer name. */
  checksumName: string;
  /** The header's value; null when it comes as a trailer. */
  checksumExpected: string | null;
  hashers: { update(b: Uint8Array): unknown }[];
  /** Headers of the answer: the checksum checked, as S3 echoes it. */
  answer: Record<string, string>;
}

function concatAll(parts: Uint8Array[], total: number): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * An HTTP date (RFC 9110 5.6.7) of a time in ms. Every answer carries Date, and an object's
 * Last-Modified: each is remembered for the second it names (toUTCString costs more than the rest
 * of a GET's head).
 */
class HttpDate {
  private second = NaN;
  private text = "";
  of(ms: number): string {
    const second = Math.floor(ms / 1000);
    if (second !== this.second) {
      this.second = second;
      this.text = new Date(second * 1000).toUTCString();
    }
    return this.text;
  }
}
const dateNow = new HttpDate();
const lastModified = new HttpDate();
const httpDateNow = (): string => dateNow.of(Date.now());

const REASONS: Record<number, string> = { 100: "Continue", 200: "OK", 204: "No Content", 206: "Partial Content", 304: "Not Modified", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 411: "Length Required", 412: "Precondition Failed", 416: "Range Not Satisfiable", 431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable", 505: "HTTP Version Not Supported", 507: "Insufficient Storage" };

/**
 * A whole object's answer headers (GetObject, HeadObject): its size, modification time and
 * digests; the store's own ETag (`storeEtag`) when the digests give none.
 */
function objectHeaders(size: number, facts: Uint8Array, storeEtag: string | null = null): Record<string, string> {
  const headers: Record<string, string> = { "content-type": "application/octet-stream", "accept-ranges": "bytes", "content-length": String(size) };
  const mtime = mtimeMsOf(facts);
  if (mtime !== null) headers["last-modified"] = lastModified.of(mtime);
  digestHeaders(facts, headers);
  if (headers.etag === undefined && storeEtag !== null && /^"[^"\r\n]{1,200}"$/.test(storeEtag)) headers.etag = storeEtag;
  return headers;
}

/** The ETag (etagOf) and x-amz-checksum-sha256 of an object's facts, added to `headers`. */
function digestHeaders(facts: Uint8Array, headers: Record<string, string>): Record<string, string> {
  const etag = etagOf(facts);
  if (etag !== null) headers.etag = etag;
  const sha256 = sha256Base64Of(facts);
  if (sha256 !== null) headers["x-amz-checksum-sha256"] = sha256;
  return headers;
}

/** The headers a 304 repeats of the 200 it stands for (RFC 9110, 15.4.5). */
function notModifiedHeaders(headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  if (headers.etag !== undefined) out.etag = headers.etag;
  if (headers["last-modified"] !== undefined) out["last-modified"] = headers["last-modified"];
  return out;
}

/** CopyObject's x-amz-copy-source-if-* headers as the conditions of a GET of the source. */
function copySourceConditions(head: RequestHead): RequestHead {
  const headers = new Map<string, string>();
  for (const name of ["if-match", "if-none-match", "if-modified-since", "if-unmodified-since"]) {
    const value = head.headers.get(`x-amz-copy-source-${name}`);
    if (value !== undefined) headers.set(name, value);
  }
  return { ...head, headers };
}

/** A browser asking for a listing page: Accept text/html, and none of S3's listing parameters. */
function isPageRequest(head: RequestHead, q: URLSearchParams): boolean {
  if (!wantsHtml(head.headers.get("accept"))) return false;
  for (const name of q.keys()) if (name !== "continuation-token" && !name.startsWith("X-Amz-")) return false;
  return true;
}

function hasConditions(head: RequestHead): boolean {
  const h = head.headers;
  return h.has("if-none-match") || h.has("if-match") || h.has("if-modified-since") || h.has("if-unmodified-since");
}

/**
 * The conditional headers of a GET or HEAD against an object's ETag and modification time, in
 * RFC 9110's order (13.2.2): 412 when If-Match or If-Unmodified-Since fails, 304 when
 * If-None-Match or If-Modified-Since says the client's copy is current, else 200.
 */
function conditionOf(head: RequestHead, etag: string | undefined, mtimeMs: number | null): 200 | 304 | 412 {
  const h = head.headers;
  const matches = (list: string) => list.split(",").some((t) => t.trim() === "*" || (etag !== undefined && t.trim() === etag));
  const date = (text: string | undefined) => (text === undefined ? NaN : Date.parse(text));
  // HTTP dates have whole seconds: the file's time is compared at that precision.
  const seconds = mtimeMs === null ? null : Math.floor(mtimeMs / 1000) * 1000;
  const ifMatch = h.get("if-match");
  if (ifMatch !== undefined) {
    if (!matches(ifMatch)) return 412;
  } else {
    const since = date(h.get("if-unmodified-since"));
    if (!Number.isNaN(since) && seconds !== null && seconds > since) return 412;
  }
  const ifNoneMatch = h.get("if-none-match");
  if (ifNoneMatch !== undefined) return matches(ifNoneMatch) ? 304 : 200;
  const modifiedSince = date(h.get("if-modified-since"));
  if (!Number.isNaN(modifiedSince) && seconds !== null && seconds <= modifiedSince) return 304;
  return 200;
}

function methodNotAllowed(method: string): HttpFailure {
  return new HttpFailure({ status: 405, code: "MethodNotAllowed", message: `The specified method is not allowed against this resource: ${method}` });
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Path-style: /<bucket>/<key>, percent-decoded ("" for a missing part). */
function routeOf(path: string): { bucket: string; key: string } {
  const rest = path.startsWith("/") ? path.slice(1) : path;
  const slash = rest.indexOf("/");
  const decode = (s: string) => {
    try {
      return decodeURIComponent(s);
    } catch {
      throw new HttpFailure({ status: 400, code: "InvalidURI", message: "Couldn't parse the specified URI." });
    }
  };
  return slash < 0 ? { bucket: decode(rest), key: "" } : { bucket: decode(rest.slice(0, slash)), key: decode(rest.slice(slash + 1)) };
}

/** A Range header against a size: null (the whole body), a range, or "invalid" (416). One range only. */
function rangeOf(header: string | undefined, size: number): { offset: number; length: number } | null | "invalid" {
  if (header === undefined) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (m === null || (m[1] === "" && m[2] === "")) return null; // not one we understand: the whole body, as RFC 9110 allows
  if (m[1] === "") {
    const n = Math.min(Number(m[2]), size);
    return n === 0 ? "invalid" : { offset: size - n, length: n };
  }
  const first = Number(m[1]);
  const last = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (first >= size || last < first) return "invalid";
  return { offset: first, length: last - first + 1 };
}

/**
 * The body's expected SHA-256, or null: x-amz-checksum-sha256 (base64), or the signed payload's
 * x-amz-content-sha256 (hex; not UNSIGNED-PAYLOAD), which a client sends whether or not the
 * server checks signatures. Both: they must agree.
 */
function expectedSha256(head: RequestHead): Uint8Array | null {
  const b64 = head.headers.get("x-amz-checksum-sha256");
  const hex = head.headers.get("x-amz-content-sha256");
  const signed = hex !== undefined && /^[0-9a-f]{64}$/.test(hex) ? new Uint8Array(Buffer.from(hex, "hex")) : null;
  if (b64 === undefined) return signed;
  const bytes = Buffer.from(b64, "base64");
  if (bytes.length !== 32) throw new HttpFailure({ status: 400, code: "InvalidArgument", message: "x-amz-checksum-sha256 must be 32 bytes in base64" });
  if (signed !== null && !bytes.equals(signed)) throw new HttpFailure({ status: 400, code: "XAmzContentSHA256Mismatch", message: "x-amz-checksum-sha256 and x-amz-content-sha256 disagree." });
  return new Uint8Array(bytes);
}

/** A store's refusal of an upload as the S3 error: a digest that does not match is the SHA-256's or the Content-MD5's. */
function storeFailure(r: { failure: FailureKind; cause: FailureCause }): S3Error {
  if (r.failure !== Failure.DIGEST_MISMATCH) return s3ErrorOf(r.failure, r.cause.text);
  return r.cause.text === MD5_MISMATCH_CAUSE.text ? { status: 400, code: "BadDigest", message: "The Content-MD5 you specified did not match what we received." } : SHA256_MISMATCH;
}

/** A call of the multipart store, its refusal (the S3 store's bucket's) as the S3 error the client gets. */
async function multipartCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (e) {
    if (e instanceof MultipartError) throw new HttpFailure({ status: e.status, code: e.code, message: e.message });
    throw e;
  }
}

/** A store call with a StoreTarget, as a promise of its value or failure (a bug rejects). */
function storeValue(call: (target: { onStoreDone(v: number): void; onStoreFailed(f: FailureKind, c: FailureCause): void; onStoreBug(e: unknown): void }) => void): Promise<Outcome<number>> {
  return new Promise((resolve, reject) =>
    call({
      onStoreDone: (value) => resolve({ ok: true, value }),
      onStoreFailed: (failure, cause) => resolve({ ok: false, failure, cause }),
      onStoreBug: reject,
    }),
  );
}
