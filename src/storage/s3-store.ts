// The S3 store: every key an object of one bucket (under an optional prefix) of any store that
// speaks the S3 API (Ceph RGW, OpenStack Swift, MinIO, Garage, AWS S3, R2). Gateways keep no state
// of their own, so any number of them, on any number of machines, serve one namespace.
//
// exist = HEAD; delete = HEAD then DELETE (S3 answers a DELETE of a missing key with success, and
// the protocol answers `no such key`); a small download = one GET of the first inlineBytesMax
// bytes (its Content-Range says the size); a streamed download = one GET whose body is read only
// as fast as the client takes it. An upload up to s3PartBytes is one PUT; a larger one is a
// multipart upload whose parts are sent while the body streams in (at most
// uploadWritesInFlightMax at once, the connection paused while a full part waits), committed by
// CompleteMultipartUpload: the object appears whole or not at all, like the file store's rename.
// Anything that ends an upload early aborts it, so no part is left behind; an abort the store did
// not hear (it was down) is found by the sweep of stale multipart uploads (at start, then hourly).
//
// SHA-256 digests travel as object metadata (x-amz-meta-fsgw-sha256): a small upload and an upload
// whose client announced its digest record it; a streamed upload without one cannot (S3 metadata
// is fixed when the upload starts, before the body is seen), so exist and download then report
// none, and its END still carries the digest computed while it streamed.
import { S3Multipart } from "../http/s3-multipart";
import type { MultipartStore, MultipartUploads } from "../http/multipart";
import type { Hasher } from "../engine/io-engine";
import type { Logger } from "../log";
import { BUCKET_SPACE, type StoreKey } from "./keys";
import { pageOf } from "./list-page";
import { S3Client, S3Failure, STATUS_TIMEOUT, STATUS_UNREACHABLE, escapeXml, xmlText, type S3BodyReader, type S3Settings } from "./s3-client";
import { DIGEST_MISMATCH_CAUSE, EntryType, Failure, StoreError, type BodyReader, type FailureCause, type FailureKind, type StatTarget, type Store, type StoreTarget, type UploadOwner, type UploadSink, type ListEntry, type ListRequest, type ListTarget, FACT_MTIME, setDigests, sha256Of } from "./store";
import type { ReadCache } from "./read-cache";

const DIGEST_HEADER = "x-amz-meta-fsgw-sha256";
/** S3 allows at most this many parts in one multipart upload. */
const PARTS_MAX = 10_000;
const MiB = 1024 * 1024;
/** How often aborts the store did not hear are sent again. */
const ABORT_RETRY_MS = 5000;

/** What the S3 store said about a failure, for the log: its HTTP status (or STATUS_*) and S3 code. */
export class S3Cause implements FailureCause {
  readonly text: string;
  constructor(
    readonly status: number,
    readonly code: string,
  ) {
    this.text = status === STATUS_UNREACHABLE ? "no answer from the S3 store" : status === STATUS_TIMEOUT ? "S3 request timed out" : `S3 HTTP ${status}${code === "" ? "" : " " + code}`;
  }
}

/** One cause per status and code, made on first use (a miss allocates nothing); bounded, as codes are few. */
const causes = new Map<string, S3Cause>();
const CAUSES_MAX = 256;
function causeOf(f: S3Failure): S3Cause {
  const id = `${f.status} ${f.code}`;
  let cause = causes.get(id);
  if (cause === undefined) {
    cause = new S3Cause(f.status, f.code);
    if (causes.size < CAUSES_MAX) causes.set(id, cause);
  }
  return cause;
}

/** What a failed request means to a client, and to the log. */
export function failureOf(e: unknown): [kind: FailureKind, cause: S3Cause] {
  if (!(e instanceof S3Failure)) throw e; // a bug, not the store: the caller reports it as one
  const s = e.status;
  let kind: FailureKind = Failure.IO;
  if (s === STATUS_UNREACHABLE) kind = Failure.UNAVAILABLE;
  else if (s === STATUS_TIMEOUT || s === 408 || e.code === "RequestTimeout") kind = Failure.TIMEOUT;
  else if (s === 404) kind = e.code === "NoSuchBucket" || e.code === "NoSuchUpload" ? Failure.UNAVAILABLE : Failure.NOT_FOUND;
  else if (s === 401 || s === 403) kind = Failure.PERMISSION;
  else if (s === 413 || e.code === "EntityTooLarge") kind = Failure.TOO_LARGE;
  else if (e.code === "QuotaExceeded" || s === 507) kind = Failure.NO_SPACE;
  else if (s === 429 || s >= 500) kind = Failure.UNAVAILABLE;
  return [kind, causeOf(e)];
}

/** Delivers a failed request to a target; a bug (not an S3Failure) goes to onStoreBug. */
export function report(target: Pick<StoreTarget, "onStoreFailed" | "onStoreBug">, e: unknown): void {
  let kind: FailureKind, cause: S3Cause;
  try {
    [kind, cause] = failureOf(e);
  } catch (bug) {
    return target.onStoreBug(bug);
  }
  target.onStoreFailed(kind, cause);
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

/**
 * Fills a DIGEST_BYTES buffer from an object's answer: the SHA-256 its metadata records, the MD5
 * its ETag is when the bucket stored it in one part (32 hex digits), its Last-Modified.
 */
function digestFromHeaders(headers: Headers, out: Uint8Array | undefined): void {
  if (out === undefined) return;
  out[0] = 0;
  const modified = Date.parse(headers.get("last-modified") ?? "");
  if (!Number.isNaN(modified)) {
    new DataView(out.buffer, out.byteOffset, out.byteLength).setBigInt64(49, BigInt(modified), true);
    out[0] = FACT_MTIME;
  }
  const text = headers.get(DIGEST_HEADER);
  if (text === null || !/^[0-9a-f]{64}$/.test(text)) return;
  const etag = /^"?([0-9a-f]{32})"?$/.exec(headers.get("etag") ?? "");
  setDigests(out, Buffer.from(text, "hex"), etag === null ? null : Buffer.from(etag[1]!, "hex"));
}

function setDigest(out: Uint8Array | undefined, sum: Uint8Array): void {
  if (out === undefined) return;
  setDigests(out, sum);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

/** The object's size from a GET: Content-Range's total for a ranged answer, else Content-Length. */
function objectSize(status: number, headers: Headers): number {
  if (status === 206) {
    const total = /\/(\d+)$/.exec(headers.get("content-range") ?? "");
    if (total !== null) return Number(total[1]);
  }
  return Number(headers.get("content-length") ?? "0");
}

export interface S3StoreOptions {
  s3: S3Settings;
  /** Prepended to every key: gateways of one namespace share it; the sweep looks only under it. */
  prefix: string;
  /** Part size of multipart uploads; a body up to this size is one PUT. */
  partBytes: number;
  /** Parts of one upload in flight at once. */
  partsInFlightMax: number;
  /** Multipart uploads under the prefix older than this are aborted by the sweep. */
  staleUploadMs: number;
  /** Failed aborts kept for retrying. */
  pendingAbortsMax: number;
  /** SHA-256 of bodies (the engine's: the C library's where it is loaded). */
  newHasher: () => Hasher;
  /** The local read cache, or null. */
  cache: ReadCache | null;
  /** Where the read caches are when they are not this instance's (the supervisor's store: the loops hold them). */
  cacheElsewhere?: string;
}

export class S3Store implements Store {
  readonly client: S3Client;
  private readonly prefix: string;
  readonly partBytes: number;
  readonly partsInFlightMax: number;
  private readonly staleUploadMs: number;
  private readonly pendingAbortsMax: number;
  /** Multipart uploads (object, upload id) whose abort failed: retried every ABORT_RETRY_MS. */
  private readonly pendingAborts: [string, string][] = [];
  private abortRetry: ReturnType<typeof setInterval> | null = null;
  readonly newHasher: () => Hasher;
  readonly cache: ReadCache | null;
  private readonly cacheElsewhere: string | undefined;
  private log: Logger | null = null;
  private sweeper: ReturnType<typeof setInterval> | null = null;
  private readonly spareParts: Uint8Array[] = [];
  /** Uploads in progress (for stats and the sweep: never abort one of our own). */
  readonly uploads = new Set<S3Upload>();
  /** Multipart uploads this gateway aborted after a failure, and those whose abort failed. */
  abortedUploads = 0;
  abortFailures = 0;

  constructor(options: S3StoreOptions) {
    this.client = new S3Client(options.s3);
    this.prefix = options.prefix;
    this.partBytes = options.partBytes;
    this.partsInFlightMax = options.partsInFlightMax;
    this.staleUploadMs = options.staleUploadMs;
    this.pendingAbortsMax = options.pendingAbortsMax;
    this.newHasher = options.newHasher;
    this.cache = options.cache;
    this.cacheElsewhere = options.cacheElsewhere;
    this.cache?.attach(this);
  }

  get description(): string {
    const s = this.client.settings;
    return `s3 bucket ${s.bucket} at ${s.endpoint}${this.prefix === "" ? "" : ` under ${this.prefix}`}`;
  }

  /**
   * The object name of a key. The HTTP door's other buckets (keys.ts, BUCKET_SPACE) are named with
   * a backslash where the key has U+0001: a control character cannot be written in S3's XML
   * listings, and no client key holds a backslash, so the two spaces still never meet.
   */
  objectOf(key: StoreKey): string {
    return this.prefix + objectNameOf(key.name);
  }

  /** S3 multipart uploads are the bucket's own (see Store.ownMultipart). */
  ownMultipart(local: MultipartUploads, uploadsMax: number): MultipartStore {
    return new S3Multipart(this, local, uploadsMax);
  }

  /** The key name of an object name under s3Prefix (objectOf undone), or null for one outside it. */
  keyNameOf(object: string): string | null {
    return object.startsWith(this.prefix) ? keyNameOf(object.slice(this.prefix.length)) : null;
  }

  init(log: Logger): void {
    this.log = log;
    this.cache?.init(log);
  }

  /** One loop of several: the group's own instance reached the bucket and sweeps stale uploads. */
  attach(log: Logger): void {
    this.init(log);
  }

  /**
   * Reaches the bucket before the server listens. A store that answers "no such bucket" or refuses
   * the credentials stops the start (a configuration error); a store that does not answer is
   * logged, and the gateway starts anyway, answering `store unavailable` until it returns.
   */
  async open(): Promise<void> {
    const log = this.log!;
    try {
      await this.client.request("GET", "", { query: { "list-type": "2", "max-keys": "1", prefix: this.prefix } });
    } catch (e) {
      if (!(e instanceof S3Failure)) throw e;
      if (e.status === STATUS_UNREACHABLE || e.status === STATUS_TIMEOUT || e.status >= 500) {
        log.warn("store_unreachable", { store: this.description, error: e.message, effect: "exchanges answer 'store unavailable' until it answers" });
      } else {
        throw new StoreError(`${this.description}: ${e.message}${openAdvice(e, this.client.settings.bucket)}`);
      }
    }
    const swept = await this.sweepStaleUploads();
    log.info("store_ready", { store: this.description, partBytes: this.partBytes, staleUploadsAborted: swept, cache: this.cache?.description ?? this.cacheElsewhere ?? "none" });
    this.sweeper = setInterval(() => void this.sweepStaleUploads(), Math.min(3_600_000, Math.max(60_000, Math.floor(this.staleUploadMs / 4))));
    this.sweeper.unref?.();
  }

  close(): void {
    if (this.sweeper !== null) clearInterval(this.sweeper);
    this.sweeper = null;
    if (this.abortRetry !== null) clearInterval(this.abortRetry);
    this.abortRetry = null;
  }

  /** Aborts a multipart upload; one the store does not hear is retried until it does (bounded). */
  abortMultipart(name: string, id: string): Promise<void> {
    this.abortedUploads++;
    return this.client.request("DELETE", name, { query: { uploadId: id } }).then(
      () => {},
      (e) => {
        if (e instanceof S3Failure && e.status === 404) return; // already gone
        this.abortFailures++;
        if (this.pendingAborts.length >= this.pendingAbortsMax) return; // the sweep will find it
        this.pendingAborts.push([name, id]);
        if (this.abortRetry !== null) return;
        this.abortRetry = setInterval(() => this.retryAborts(), ABORT_RETRY_MS);
        this.abortRetry.unref?.();
      },
    );
  }

  private retryAborts(): void {
    const due = this.pendingAborts.splice(0);
    if (due.length === 0 && this.abortRetry !== null) {
      clearInterval(this.abortRetry);
      this.abortRetry = null;
      return;
    }
    for (const [name, id] of due) {
      void this.client.request("DELETE", name, { query: { uploadId: id } }).catch((e) => {
        if (!(e instanceof S3Failure && e.status === 404)) this.pendingAborts.push([name, id]);
      });
    }
  }

  /**
   * Aborts multipart uploads under the prefix initiated more than staleUploadMs ago (a gateway that
   * crashed mid-upload, or an abort the store did not hear), one listing page of up to 1000 at a
   * time, at most 100 pages per sweep. Uploads of other gateways still running are younger.
   */
  async sweepStaleUploads(nowMs = Date.now()): Promise<number> {
    let aborted = 0;
    let keyMarker = "";
    let idMarker = "";
    try {
      for (let page = 0; page < 100; page++) {
        const query: Record<string, string> = { uploads: "", prefix: this.prefix };
        if (keyMarker !== "") query["key-marker"] = keyMarker;
        if (idMarker !== "") query["upload-id-marker"] = idMarker;
        const { text } = await this.client.request("GET", "", { query });
        for (let at = text.indexOf("<Upload>"); at >= 0; at = text.indexOf("<Upload>", at + 1)) {
          const key = xmlText(text, "Key", at);
          const id = xmlText(text, "UploadId", at);
          const initiated = Date.parse(xmlText(text, "Initiated", at) ?? "");
          if (key === null || id === null || !(nowMs - initiated > this.staleUploadMs)) continue;
          await this.client.request("DELETE", key, { query: { uploadId: id } }).catch(() => {});
          aborted++;
        }
        if (xmlText(text, "IsTruncated") !== "true") break;
        keyMarker = xmlText(text, "NextKeyMarker") ?? "";
        idMarker = xmlText(text, "NextUploadIdMarker") ?? "";
        if (keyMarker === "" && idMarker === "") break;
      }
    } catch (e) {
      this.log?.warn("stale_upload_sweep_failed", { error: (e as Error).message });
    }
    if (aborted > 0) this.log?.info("stale_uploads_aborted", { count: aborted });
    return aborted;
  }

  /** LIST through ListObjectsV2 on the bucket, under s3Prefix (see listPage). */
  readonly list: Store["list"] = (request, target) => void this.listPage(request, target);

  /**
   * One page of ListObjectsV2, in the answer's shape of every store: keys without s3Prefix, a
   * page after a common prefix starts past every key under it. ListObjectsV2 carries no user
   * metadata, so an entry has no digest here (exist has it). Two gateways on one bucket answer the
   * same pages: a page depends on the request and the bucket only.
   */
  private async listPage(request: ListRequest, target: ListTarget): Promise<void> {
    const query: Record<string, string> = { "list-type": "2", prefix: this.prefix + objectNameOf(request.prefix), "max-keys": String(request.maxKeys) };
    if (request.delimiter !== "") query.delimiter = request.delimiter;
    // Past every key under a common prefix: after the prefix followed by the greatest character
    // (U+10FFFF, the largest UTF-8 sequence), as S3 compares keys byte by byte.
    if (request.after !== "") query["start-after"] = this.prefix + objectNameOf(request.after) + (request.afterPrefix ? "\u{10FFFF}" : "");
    // The whole key space listed is the default bucket's: the other buckets' objects are left out.
    const everything = request.prefix === "";
    let text: string;
    try {
      text = (await this.client.request("GET", "", { query })).text;
    } catch (e) {
      return report(target, e);
    }
    try {
      const strip = (name: string) => keyNameOf(name.slice(this.prefix.length));
      const hidden = (name: string) => everything && name.startsWith("\\", this.prefix.length);
      const entries: ListEntry[] = [];
      let lastKey: string | undefined;
      for (let at = text.indexOf("<Contents>"); at >= 0; at = text.indexOf("<Contents>", at + 1)) {
        const key = xmlText(text, "Key", at);
        if (key === null || !key.startsWith(this.prefix)) continue;
        lastKey = strip(key);
        if (hidden(key)) continue;
        // A single-part object's ETag is its MD5 (what S3 clients check a listing against).
        const md5 = /^(?:"|&quot;)?([0-9a-f]{32})(?:"|&quot;)?$/.exec(xmlText(text, "ETag", at) ?? "")?.[1];
        entries.push({ key: lastKey, size: Number(xmlText(text, "Size", at) ?? "0"), mtimeMs: Date.parse(xmlText(text, "LastModified", at) ?? "") || 0, digest: null, ...(md5 === undefined ? {} : { md5 }) });
      }
      const prefixes: string[] = [];
      let lastPrefix: string | undefined;
      for (let at = text.indexOf("<CommonPrefixes>"); at >= 0; at = text.indexOf("<CommonPrefixes>", at + 1)) {
        const prefix = xmlText(text, "Prefix", at);
        if (prefix === null || !prefix.startsWith(this.prefix)) continue;
        lastPrefix = strip(prefix);
        if (!hidden(prefix)) prefixes.push(lastPrefix);
      }
      let next = "";
      if (xmlText(text, "IsTruncated") === "true") {
        // The last of the page in key order (left out or not): its last key or its last common prefix.
        if (lastPrefix !== undefined && (lastKey === undefined || Buffer.compare(Buffer.from(lastPrefix), Buffer.from(lastKey)) > 0)) next = `P${lastPrefix}`;
        else if (lastKey !== undefined) next = `K${lastKey}`;
        // A page that ends among the other buckets' objects goes on past all of them ("\\" is
        // no key's prefix: objectNameOf leaves it, and the listing starts after everything under it).
        if (everything && next.startsWith(BUCKET_SPACE, 1)) next = "P\\";
      }
      target.onListed(pageOf(entries, prefixes, next, request.bytesMax));
    } catch (e) {
      target.onStoreBug(e);
    }
  }

  stat(key: StoreKey, target: StatTarget, digest?: Uint8Array): void {
    this.client.request("HEAD", this.objectOf(key)).then(
      (a) => {
        digestFromHeaders(a.headers, digest);
        target.onStat(Number(a.headers.get("content-length") ?? "0"), EntryType.FILE);
      },
      (e) => report(target, e),
    );
  }

  remove(key: StoreKey, target: StoreTarget): void {
    const name = this.objectOf(key);
    this.cache?.forget(key.name);
    this.client
      .request("HEAD", name)
      .then(() => this.client.request("DELETE", name))
      .then(
        () => {
          this.cache?.forget(key.name); // a download may have filled it meanwhile
          target.onStoreDone(0);
        },
        (e) => report(target, e),
      );
  }

  putWhole(key: StoreKey, body: Uint8Array, target: StoreTarget, expected: Uint8Array | null = null, digest?: Uint8Array, md5 = false): void {
    const hasher = this.newHasher();
    hasher.update(body);
    const sum = hasher.digest();
    if (expected !== null && !sameBytes(sum, expected)) return target.onStoreFailed(Failure.DIGEST_MISMATCH, DIGEST_MISMATCH_CAUSE);
    setDigest(digest, sum);
    // One PUT: the bucket's ETag is this MD5, which later reads report (digestFromHeaders).
    if (md5 && digest !== undefined) setDigests(digest, sum, new Bun.CryptoHasher("md5").update(body).digest() as Buffer);
    this.cache?.forget(key.name);
    this.client.request("PUT", this.objectOf(key), { body, headers: { [DIGEST_HEADER]: hex(sum) } }).then(
      (a) => {
        this.cache?.fillWhole(key, a.headers.get("etag"), body, sum);
        target.onStoreDone(body.length);
      },
      (e) => report(target, e),
    );
  }

  readWhole(key: StoreKey, into: Uint8Array, target: StoreTarget, digest?: Uint8Array): void {
    if (this.cache !== null && this.cache.readWhole(key, into, target, digest)) return;
    this.getFirst(key, into, target, digest);
  }

  /**
   * A small download from the store: one GET of the first into.length bytes. The object's size is
   * the result; its bytes are in `into` only when it fits (a larger one is for openReader).
   */
  getFirst(key: StoreKey, into: Uint8Array, target: StoreTarget, digest?: Uint8Array, fill = true): void {
    const name = this.objectOf(key);
    const headers: Record<string, string> = into.length > 0 ? { range: `bytes=0-${into.length - 1}` } : {};
    this.client.request("GET", name, { headers, stream: true }).then(
      async (a) => {
        const size = objectSize(a.status, a.headers);
        digestFromHeaders(a.headers, digest);
        const reader = a.reader!;
        if (size > into.length) {
          reader.cancel();
          return target.onStoreDone(size);
        }
        let at = 0;
        for (let chunk = await reader.read(); chunk !== null; chunk = await reader.read()) {
          if (at + chunk.length > into.length) {
            reader.cancel();
            throw new S3Failure(502, "", `GET ${name}: more bytes than its length`);
          }
          into.set(chunk, at);
          at += chunk.length;
        }
        if (at !== size) throw new S3Failure(502, "", `GET ${name}: ${at} bytes of ${size}`);
        if (fill && this.cache !== null) this.cache.fillWhole(key, a.headers.get("etag"), into.subarray(0, size), digest !== undefined && sha256Of(digest) !== null ? digest.slice(1, 33) : null);
        target.onStoreDone(size);
      },
      (e) => {
        // An empty object has no byte 0 to range over.
        if (e instanceof S3Failure && e.status === 416) return target.onStoreDone(0);
        report(target, e);
      },
    ).catch((e) => report(target, e));
  }

  beginUpload(key: StoreKey, size: number, owner: UploadOwner, expected: Uint8Array | null = null, digest?: Uint8Array): UploadSink {
    // Resumable uploads are the file store's (a parked partial file); here an upload is not parked.
    this.cache?.forget(key.name);
    const upload = new S3Upload(this, key, size, owner, expected, digest);
    upload.start();
    return upload;
  }

  openReader(key: StoreKey, digest?: Uint8Array): BodyReader {
    if (this.cache !== null) return this.cache.openReader(key, digest);
    return new S3Reader(this, key, digest, null);
  }

  get sendsFramed(): boolean {
    return this.cache?.sendsFramed ?? false;
  }

  /**
   * A buffer for one part. Full-size part buffers are kept for the next upload (at most one
   * upload's worth, partsInFlightMax + 2): a stream of large uploads reuses the same memory
   * instead of leaving 8 MiB buffers to the garbage collector.
   */
  takePart(size: number): Uint8Array {
    if (size === this.partBytes) {
      const spare = this.spareParts.pop();
      if (spare !== undefined) return spare;
    }
    return new Uint8Array(size);
  }

  /** A part's bytes are stored: its buffer (any view of a full-size one) may be reused. */
  givePart(view: Uint8Array): void {
    if (view.buffer.byteLength !== this.partBytes || this.spareParts.length >= this.partsInFlightMax + 2) return;
    this.spareParts.push(new Uint8Array(view.buffer, 0, this.partBytes));
  }

  /** Stats for /debug/stats. */
  stats(): Record<string, number> {
    const load = this.client.load;
    return { s3RequestsInFlight: load.inFlight, s3RequestsWaiting: load.waiting, s3Uploads: this.uploads.size, s3UploadsAborted: this.abortedUploads, s3AbortFailures: this.abortFailures, s3AbortsPending: this.pendingAborts.length, ...this.cache?.stats() };
  }
}

/**
 * A streamed upload. Up to partBytes: gathered and sent in one PUT at end(). Larger: a multipart
 * upload (created before the client may send), the body copied into part buffers, each full part
 * sent at once while fewer than partsInFlightMax are in flight, else held (and the connection
 * paused, backlogBytes > 0) until one returns. Memory: (partsInFlightMax + 2) × part size at most.
 *
 * Its states (S3UploadState), changed only by move(), which checks the table S3_UPLOAD_LEGAL:
 *
 *   creating   → receiving   the multipart upload is created (a single PUT starts here)
 *              → failing     ... and the owner went meanwhile: the new upload is aborted
 *              → settled     the create failed: nothing exists at the store
 *   receiving  → completing  the body is whole: the last parts, then the completion (or the PUT)
 *              → failing     a part failed, the body is not the announced one, or the owner went
 *   completing → settled     committed
 *              → failing     a part, the completion or the PUT failed
 *   failing    → aborting    no part in flight any more: the multipart upload is aborted at the store
 *              → settled     a single PUT: nothing at the store to abort
 *   aborting   → settled
 *
 * How it ends is decided once (`ending`). A failure is told when the body is over (at end(), or
 * at once if it already was), as the file store does: until then the rest of the body is read and
 * dropped. A bug is told at once. An owner that has gone hears nothing; a body it left whole is
 * still committed.
 */
export type S3UploadState = "creating" | "receiving" | "completing" | "failing" | "aborting" | "settled";

const S3_UPLOAD_LEGAL: Record<S3UploadState, readonly S3UploadState[]> = {
  creating: ["receiving", "failing", "settled"],
  receiving: ["completing", "failing"],
  completing: ["settled", "failing"],
  failing: ["aborting", "settled"],
  aborting: ["settled"],
  settled: [],
};

/** How an S3 upload ends when it does not commit: a failure the client is told, a bug, or its owner gone. */
type S3Ending = { readonly kind: "failed"; readonly failure: FailureKind; readonly cause: FailureCause } | { readonly kind: "bug"; readonly error: unknown } | { readonly kind: "aborted" };

const S3_ABORTED: S3Ending = { kind: "aborted" };
const S3_DIGEST_MISMATCH: S3Ending = { kind: "failed", failure: Failure.DIGEST_MISMATCH, cause: DIGEST_MISMATCH_CAUSE };

export class S3Upload implements UploadSink {
  /** Changed only by move(); see S3_UPLOAD_LEGAL. */
  state: S3UploadState = "creating";
  private ending: S3Ending | null = null;
  private readonly name: string;
  private readonly hasher: Hasher;
  private readonly partSize: number;
  private readonly multipart: boolean;
  /** The multipart upload's id at the store, once created (live until settled). */
  private multipartId = "";
  /** The part being filled, and how much of it is. */
  private part: Uint8Array | null = null;
  private filled = 0;
  /** Full parts waiting for a slot. */
  private readonly full: Uint8Array[] = [];
  private fullBytes = 0;
  private inFlight = 0;
  private readonly etags: string[] = [];
  private nextPart = 1;
  private pushed = 0;
  /** Every byte of the body has been pushed (end()). */
  private bodyWhole = false;
  /** The owner is gone (abort()): it hears nothing more. */
  private ownerGone = false;
  private settled!: () => void;
  private readonly idle = new Promise<void>((resolve) => (this.settled = resolve));
  private sum: Uint8Array | null = null;

  constructor(
    private readonly store: S3Store,
    private readonly key: StoreKey,
    private readonly size: number,
    private readonly owner: UploadOwner,
    private readonly expected: Uint8Array | null,
    private readonly digest: Uint8Array | undefined,
  ) {
    this.name = store.objectOf(key);
    this.hasher = store.newHasher();
    // S3 allows 10,000 parts: a body too large for that many parts of partBytes gets larger parts.
    this.partSize = Math.max(store.partBytes, Math.ceil(size / PARTS_MAX / MiB) * MiB);
    this.multipart = size > this.partSize;
  }

  private move(to: S3UploadState): void {
    if (!S3_UPLOAD_LEGAL[this.state].includes(to)) throw new Error(`s3 upload: illegal move ${this.state} -> ${to}`);
    this.state = to;
  }

  /** Full parts waiting for a slot; 0 once it will not commit (the rest of the body is dropped as it comes). */
  get backlogBytes(): number {
    return this.ending !== null ? 0 : this.fullBytes;
  }

  start(): void {
    this.store.uploads.add(this);
    if (!this.multipart) {
      this.move("receiving");
      this.part = new Uint8Array(this.size);
      queueMicrotask(() => this.ownerGone || this.owner.onStoreDone(0));
      return;
    }
    // The digest announced by the client is recorded when the upload starts; a body that does not
    // match it is aborted at end().
    const headers: Record<string, string> = this.expected !== null ? { [DIGEST_HEADER]: hex(this.expected) } : {};
    this.store.client.request("POST", this.name, { query: { uploads: "" }, headers }).then(
      (a) => {
        const id = xmlText(a.text, "UploadId");
        if (id === null) return this.createFailed(new S3Failure(502, "", `POST ${this.name}?uploads: no UploadId in the answer`));
        this.multipartId = id;
        if (this.ending !== null) {
          this.move("failing"); // the owner went while it was created
          return this.unwind();
        }
        this.move("receiving");
        this.owner.onStoreDone(0);
      },
      (e) => this.createFailed(e),
    );
  }

  /** Nothing was created at the store: the owner hears why, and that is the end. */
  private createFailed(e: unknown): void {
    this.settle();
    if (!this.ownerGone) report(this.owner, e);
  }

  push(chunk: Uint8Array): void {
    if (this.ending !== null) return;
    this.pushed += chunk.length;
    this.hasher.update(chunk);
    let at = 0;
    while (at < chunk.length) {
      if (this.part === null) this.part = this.store.takePart(this.partSize);
      const n = Math.min(chunk.length - at, this.part.length - this.filled);
      this.part.set(chunk.subarray(at, at + n), this.filled);
      this.filled += n;
      at += n;
      if (this.multipart && this.filled === this.part.length) this.partFull();
    }
  }

  private partFull(): void {
    this.full.push(this.part!.subarray(0, this.filled));
    this.fullBytes += this.filled;
    this.part = null;
    this.filled = 0;
    this.sendParts();
  }

  /** Sends full parts while slots are free (receiving or completing). */
  private sendParts(): void {
    while (this.full.length > 0 && this.inFlight < this.store.partsInFlightMax && (this.state === "receiving" || this.state === "completing")) {
      const body = this.full.shift()!;
      this.fullBytes -= body.length;
      const number = this.nextPart++;
      this.inFlight++;
      this.store.client.request("PUT", this.name, { query: { partNumber: String(number), uploadId: this.multipartId }, body }).then(
        (a) => {
          this.inFlight--;
          this.etags[number - 1] = a.headers.get("etag") ?? "";
          this.store.givePart(body);
          // The socket's chunks of this part are garbage now: a collection hint per part frees them
          // before the next part's arrive. Measured on a 256 MiB upload (8 MiB parts): peak RSS
          // growth 42 MiB with it, 63-87 MiB without; it costs ~0.3 ms per part.
          Bun.gc(false);
          if (this.state === "failing") return this.unwind();
          this.sendParts();
          if (this.state === "receiving") this.owner.onUploadProgress();
          else if (this.inFlight === 0 && this.full.length === 0) this.complete();
        },
        (e) => {
          this.inFlight--;
          if (this.state === "failing") return this.unwind();
          this.fail(e);
        },
      );
    }
  }

  end(): void {
    if (this.ownerGone) return;
    this.bodyWhole = true;
    if (this.ending !== null) return this.tellFailure(); // failed earlier: the body is over now
    const sum = this.hasher.digest();
    this.sum = sum;
    if (this.pushed !== this.size) return this.fail(new S3Failure(400, "", `upload of ${this.name}: ${this.pushed} bytes of ${this.size}`));
    if (this.expected !== null && !sameBytes(sum, this.expected)) return this.endWith(S3_DIGEST_MISMATCH);
    this.move("completing");
    if (!this.multipart) return this.putSingle(sum);
    if (this.filled > 0) this.partFull(); // the last part may be short
    if (this.inFlight === 0 && this.full.length === 0) this.complete();
  }

  private putSingle(sum: Uint8Array): void {
    const body = this.part!.subarray(0, this.filled);
    this.part = null;
    this.store.client.request("PUT", this.name, { body, headers: { [DIGEST_HEADER]: hex(sum) } }).then(
      (a) => this.committed(a.headers.get("etag"), body),
      (e) => this.fail(e),
    );
  }

  private complete(): void {
    const parts = this.etags.map((etag, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${escapeXml(etag)}</ETag></Part>`).join("");
    this.store.client.request("POST", this.name, { query: { uploadId: this.multipartId }, body: `<CompleteMultipartUpload>${parts}</CompleteMultipartUpload>` }).then(
      (a) => {
        // S3 may answer 200 and put the failure in the body (the request took long).
        if (a.text.includes("<Error>")) return this.fail(new S3Failure(500, xmlText(a.text, "Code") ?? "", `complete ${this.name}: ${xmlText(a.text, "Message") ?? "failed"}`));
        this.committed(xmlText(a.text, "ETag"), null);
      },
      (e) => this.fail(e),
    );
  }

  private committed(etag: string | null, body: Uint8Array | null): void {
    this.settle();
    setDigest(this.digest, this.sum!);
    if (body !== null) this.store.cache?.fillWhole(this.key, etag, body, this.sum, true);
    if (!this.ownerGone) this.owner.onUploadDone(this.size);
  }

  /** A request failed: the upload is over (an answer for the client, or a bug if the failure is not understood). */
  private fail(e: unknown): void {
    let ending: S3Ending;
    try {
      const [failure, cause] = failureOf(e);
      ending = { kind: "failed", failure, cause };
    } catch (bug) {
      ending = { kind: "bug", error: bug };
    }
    this.endWith(ending);
  }

  /**
   * Decides how the upload ends (the first decision stands): it stops taking the body, its parts
   * and multipart upload are given up, and the owner hears the failure once the body is over (a
   * paused connection is let go on meanwhile, to read and drop the rest), a bug at once.
   */
  private endWith(ending: S3Ending): void {
    if (this.ending !== null) return;
    this.ending = ending;
    if (this.state === "receiving" || this.state === "completing") {
      this.move("failing");
      this.unwind();
    } // creating: the create's answer unwinds
    if (this.ownerGone) return;
    if (ending.kind === "bug") this.owner.onStoreBug(ending.error);
    else if (this.bodyWhole) this.tellFailure();
    else this.owner.onUploadProgress();
  }

  private tellFailure(): void {
    const ending = this.ending!;
    if (!this.ownerGone && ending.kind === "failed") this.owner.onUploadFailed(ending.failure, ending.cause);
  }

  /** Failing: once no part is in flight, gives the buffers back and aborts the multipart upload. */
  private unwind(): void {
    if (this.inFlight > 0) return;
    for (const part of this.full) this.store.givePart(part);
    if (this.part !== null) this.store.givePart(this.part);
    this.full.length = 0;
    this.fullBytes = 0;
    this.part = null;
    if (!this.multipart) return this.settle();
    this.move("aborting");
    void this.store.abortMultipart(this.name, this.multipartId).finally(() => this.settle());
  }

  private settle(): void {
    this.move("settled");
    this.store.uploads.delete(this);
    this.settled();
  }

  /** The owner is gone: a body cut short is given up; a body already whole is still committed. */
  abort(): Promise<void> {
    if (this.ownerGone) return this.idle;
    this.ownerGone = true;
    if (!this.bodyWhole) this.endWith(S3_ABORTED);
    return this.idle;
  }
}

/** Receives a download's body as it streams from the store (the read cache's fill). */
export interface BodyTee {
  /** The object opened: its size and ETag. */
  begin(size: number, etag: string | null): void;
  /** The next bytes, in order; the tee may keep the view (it is never reused). */
  bytes(chunk: Uint8Array): void;
  /** No more bytes: `complete` when the whole object went through. */
  ended(complete: boolean): void;
  /** Null, or a promise to wait on before reading more: the tee is too far behind. */
  room(): Promise<void> | null;
}

/**
 * A streamed download straight from the store: one GET, its body read only as the client takes it.
 * A range asked after open() drops that GET and makes a ranged one, with If-Match on the ETag so
 * that the range comes from the same object the size came from.
 */
export class S3Reader implements BodyReader {
  size = 0;
  etag: string | null = null;
  private body: S3BodyReader | null = null;
  private leftover: Uint8Array | null = null;
  private rangeAsked: [number, number] | null = null;
  /** Bytes of the current GET's body read so far, and how many it has. */
  private got = 0;
  private expected = 0;
  private closed = false;
  private busy = false;

  constructor(
    private readonly store: S3Store,
    private readonly key: StoreKey,
    private readonly digest: Uint8Array | undefined,
    private readonly tee: BodyTee | null,
  ) {}

  open(target: StoreTarget): void {
    this.busy = true;
    this.store.client.request("GET", this.store.objectOf(this.key), { stream: true }).then(
      (a) => {
        this.busy = false;
        this.body = a.reader;
        if (this.closed) return this.drop();
        this.size = objectSize(a.status, a.headers);
        this.expected = this.size;
        this.etag = a.headers.get("etag");
        digestFromHeaders(a.headers, this.digest);
        this.tee?.begin(this.size, this.etag);
        target.onStoreDone(this.size);
      },
      (e) => {
        this.busy = false;
        if (!this.closed) report(target, e);
      },
    );
  }

  range(offset: number, length: number): void {
    if (offset === 0 && length === this.size) return;
    this.rangeAsked = [offset, length];
    this.drop();
    this.tee?.ended(false);
  }

  read(into: Uint8Array, target: StoreTarget): void {
    if (this.busy || this.closed) throw new Error(`S3Reader.read while ${this.busy ? "busy" : "closed"}`);
    if (this.leftover !== null) return this.give(this.leftover, into, target);
    this.busy = true;
    this.next().then(
      (chunk) => {
        this.busy = false;
        if (this.closed) return this.drop();
        if (chunk === null) return target.onStoreDone(0);
        this.give(chunk, into, target);
      },
      (e) => {
        this.busy = false;
        this.tee?.ended(false);
        if (this.closed) return this.drop();
        report(target, e);
      },
    );
  }

  private async next(): Promise<Uint8Array | null> {
    if (this.body === null) {
      const [offset, length] = this.rangeAsked!;
      const headers: Record<string, string> = { range: `bytes=${offset}-${offset + length - 1}` };
      if (this.etag !== null) headers["if-match"] = this.etag;
      const a = await this.store.client.request("GET", this.store.objectOf(this.key), { headers, stream: true });
      this.body = a.reader;
      this.got = 0;
      this.expected = length;
      if (this.closed) return null;
    }
    const body = this.body!;
    const room = this.tee?.room() ?? null;
    if (room !== null) await room;
    const chunk = await body.read();
    if (chunk === null) {
      this.tee?.ended(false); // shorter than its length
      return null;
    }
    this.got += chunk.length;
    this.tee?.bytes(chunk);
    if (this.got >= this.expected) {
      // The last bytes: read the end too, so that the connection goes back to the pool for reuse.
      if ((await body.read()) !== null) throw new S3Failure(502, "", `GET ${this.key.name}: more bytes than its length`);
      this.tee?.ended(this.got === this.expected);
    }
    return chunk;
  }

  private give(chunk: Uint8Array, into: Uint8Array, target: StoreTarget): void {
    const n = Math.min(chunk.length, into.length);
    into.set(n === chunk.length ? chunk : chunk.subarray(0, n));
    this.leftover = n < chunk.length ? chunk.subarray(n) : null;
    target.onStoreDone(n);
  }

  private drop(): void {
    this.body?.cancel();
    this.body = null;
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.leftover = null;
      this.tee?.ended(false);
      if (!this.busy) this.drop(); // else the read in flight drops it when it returns
    }
    return Promise.resolve();
  }
}

/** What to do about a store that refused the start's first request, where the answer says it. */
function openAdvice(e: S3Failure, bucket: string): string {
  if (e.code === "NoSuchBucket" || e.status === 404) return `: there is no bucket ${JSON.stringify(bucket)} there; create it, or set s3Bucket (and s3Endpoint) to one that exists`;
  if (e.code === "InvalidAccessKeyId" || e.code === "SignatureDoesNotMatch" || e.status === 401 || e.status === 403) {
    return ": the store refused these credentials; check s3AccessKeyId and s3SecretAccessKey (or s3SecretAccessKeyFile), and s3Region";
  }
  return "";
}

/** A key name as an object name under s3Prefix: U+0001 (the start of another bucket's names) becomes a backslash. */
function objectNameOf(name: string): string {
  return name.startsWith(BUCKET_SPACE) ? `\\${name.slice(1)}` : name;
}

/** objectNameOf undone. */
function keyNameOf(name: string): string {
  return name.startsWith("\\") ? `${BUCKET_SPACE}${name.slice(1)}` : name;
}
