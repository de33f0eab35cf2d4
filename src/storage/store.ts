// The storage interface: what a connection may ask of a store, shaped by the exchanges of
// docs/PROTOCOL.md (stat, remove, a whole small body in or out, a streamed body in or out), not by
// system calls. A store may be a directory on a local disk (file-store.ts: paths, temporary files
// and renames, descriptors, errno all live behind it) or a bucket of an object store (s3-store.ts:
// requests, multipart uploads, HTTP statuses): nothing here names a path, a descriptor, an errno or
// a request.
//
// Results reach a target through typed methods, never through overloaded numbers: onStoreDone(value),
// where each operation says what its value is (a size, a count); onStat(size, entry) for stat;
// onStoreFailed(failure, cause), where the failure is what the client is told and the cause what the
// log is told (each store's own kind: an errno, an HTTP status and code). No promise, closure or
// error object per operation: causes are interned (one object per errno or status), so a missing key
// is an everyday answer that allocates nothing. A result may arrive synchronously, inside the call
// (a store that answers from a cache), or later on the event-loop thread: a target handles both.
// After a result, nothing more reaches the target for that operation.
//
// Optional capabilities (zero-copy sends and receives, resumable uploads, framed sends) are
// declared members of these interfaces, present or absent per instance from its construction, as
// tusd composes its datastore's: the connection asks `store.x !== undefined`, never which store it
// is.
import type { MultipartStore, MultipartUploads } from "../http/multipart";
import type { Logger } from "../log";
import type { StoreKey } from "./keys";
import type { HandedOver } from "./partials";

/**
 * What the medium said about a failure, for the log: each store's causes add their own fields (an
 * errno; an HTTP status and S3 code). Interned: compare them by identity, keep them freely.
 */
export interface FailureCause {
  /** The log line's text: "ENOENT", "S3 HTTP 503 SlowDown", "digest mismatch". */
  readonly text: string;
}

/** A failure a store itself decides (not its medium's): the body's digest is not the announced one. */
export const DIGEST_MISMATCH_CAUSE: FailureCause = { text: "the body's SHA-256 is not the one announced" };
/** DIGEST_MISMATCH of the MD5 (the HTTP door's Content-MD5) rather than the SHA-256. */
export const MD5_MISMATCH_CAUSE: FailureCause = { text: "the body's MD5 is not the Content-MD5 sent" };
/** A failure a store itself decides: a resumable upload unknown, busy, or out of a bound. */
export const UPLOAD_TABLE_CAUSE: FailureCause = { text: "the resumable uploads' table" };

/** Why an operation failed, whatever the store; the connection turns each into a reply text. */
export const Failure = {
  NOT_FOUND: 1,
  /** The key names something that is not a stored file (a directory). */
  NOT_A_FILE: 2,
  NO_SPACE: 3,
  PERMISSION: 4,
  /** Out of a resource for now (open files, queue slots): a retry may succeed. */
  BUSY: 5,
  /** The store cannot serve at all now (shutting down, unreachable). */
  UNAVAILABLE: 6,
  TIMEOUT: 7,
  TOO_LARGE: 8,
  /** Anything else the medium reported. */
  IO: 9,
  /** The body's SHA-256 is not the one the client announced: nothing was stored. */
  DIGEST_MISMATCH: 10,
  /** RESUME of an upload that is not parked here: unknown, expired, finished, or another key's. */
  NO_UPLOAD: 12,
  /** RESUME of an upload another connection is sending right now. */
  UPLOAD_BUSY: 13,
  /** A symbolic link stands where the store's file or directory should be: refused, never followed. */
  LINK_REFUSED: 14,
} as const;
export type FailureKind = (typeof Failure)[keyof typeof Failure];

/** What a key names, as stat reports it. */
export const EntryType = { OTHER: 0, FILE: 1, DIR: 2 } as const;
export type EntryKind = (typeof EntryType)[keyof typeof EntryType];

/**
 * The receiver of one operation's result: its value, or its failure. Implementations catch their
 * own exceptions: a store delivers other results in the same breath.
 */
export interface StoreTarget {
  /** The operation's value: what each operation says it is (a size, a count, 0). */
  onStoreDone(value: number): void;
  /** The operation failed: what to tell the client (`failure`) and the log (`cause`). */
  onStoreFailed(failure: FailureKind, cause: FailureCause): void;
  /**
   * The store's own code failed (a bug, not a medium error): the operation is over and its
   * exchange cannot go on. `error` carries the stack.
   */
  onStoreBug(error: unknown): void;
}

/** The receiver of stat's result: the entry's size and type (stat never calls onStoreDone). */
export interface StatTarget extends StoreTarget {
  onStat(size: number, entry: EntryKind): void;
}

/** The receiver of a streamed upload's events; its readiness comes through onStoreDone (0). */
export interface UploadOwner extends StoreTarget {
  /** Bytes were stored, so `backlogBytes` shrank: the owner may read more. */
  onUploadProgress(): void;
  /** The body is committed: its size. Not after abort(). */
  onUploadDone(size: number): void;
  /** The body is not committed, and why. Not after abort(). */
  onUploadFailed(failure: FailureKind, cause: FailureCause): void;
}

/** A store's resumable uploads, for /debug/stats and /metrics. */
export interface ResumableStats {
  held: number;
  parked: number;
  resumed: number;
  refused: number;
  notKept: number;
  keptBytes: number;
}

/** An upload asked to be resumable, and who asks: its kept bytes are charged to these clients. */
export interface ResumableRequest {
  /** The uploader's address, and with access tokens "token:<id>" (see ClientBudget). */
  readonly clients: readonly string[];
}

/** A streamed upload in progress. */
export interface UploadSink {
  /** A resumable upload's id (what RESUME names), else undefined. */
  readonly uploadId?: string;
  /** Where this sink's body starts: 0, or how much of a resumed upload's body is already stored. */
  readonly offset?: number;
  /** The whole body's size (a resumed upload's, as its first request announced it). */
  readonly totalBytes?: number;
  /** Bytes pushed and not yet stored: memory this upload holds for its owner. */
  readonly backlogBytes: number;
  /** True when the sink checks the body against the expectedMd5 it was begun with (beginUpload). */
  readonly checksMd5?: boolean;
  /** The next bytes of the body; the sink keeps the view (no copy) until they are stored. */
  push(chunk: Uint8Array): void;
  /** Every byte has been pushed: commit. The sink checks the count against the announced size. */
  end(): void;
  /**
   * Optional (zero-copy): moves the next body bytes from the socket (its descriptor) straight into
   * storage, never into JavaScript, after every byte pushed so far: onStoreDone(bytes moved; 0 when
   * the client sent nothing for a while), or -kind when it cannot (the sink then counts as failed
   * and drops the rest of the body, which the caller reads as usual). The caller keeps the socket
   * from being read meanwhile, and asks no more than the body's remaining bytes.
   */
  receiveFrom?(socket: number, target: StoreTarget): void;
  /**
   * The owner is gone and hears nothing more. A body cut short is discarded (a resumable one is
   * kept for RESUME); a body already ended is still committed. `spliceInterrupted`: the socket
   * was read by someone else while receiveFrom ran, so what that receive moved is not trusted.
   * Resolves once nothing of the upload is left in flight.
   */
  abort(spliceInterrupted?: boolean): Promise<void>;
}

/** A streamed download: open it (onStoreDone(size)), then its bytes in order. */
export interface BodyReader {
  /** Opens the stored file: onStoreDone(size), maybe before this returns (from a cache). */
  open(target: StoreTarget): void;
  readonly size: number;
  /**
   * After open, before any read or send: serve only file[offset, offset + length) (a ranged
   * download). The caller has checked the range against `size`.
   */
  range(offset: number, length: number): void;
  /** Reads the next bytes into `into`: onStoreDone(count), 0 if the body ended early. */
  read(into: Uint8Array, target: StoreTarget): void;
  /**
   * Optional (zero-copy): sends the next bytes of the body (of its range) from storage straight to a socket, given
   * by its descriptor, with no byte through JavaScript: what the socket takes at once, else on a
   * worker that waits for it (boundedly). onStoreDone(bytes sent; 0 when the socket took nothing
   * for a while), or -kind. Call it only when every earlier byte of the connection is in the
   * kernel (nothing queued in user space), and make no other write to the socket until the result.
   */
  sendTo?(socket: number, target: StoreTarget): void;
  /**
   * Optional (zero-copy, with sendTo): one attempt, never waiting, to send `head`, the rest of the
   * body and `tail` (the connection's frames around the body) straight to the socket: the bytes of
   * the three that went, fewer than all when the socket took less (the caller then sends the rest
   * of `head` itself, the body by sendTo, the rest of `tail` itself); or -1 when it could not try
   * now (nothing sent; sendTo waits for what it needs). Same conditions as sendTo.
   */
  sendFramedNow?(socket: number, head: Uint8Array, tail: Uint8Array): number;
  /**
   * Optional, once opened: the store's own entity tag of the object (an S3 bucket's ETag), for
   * when the digests record none (an object the bucket took in parts has no MD5 to give).
   */
  readonly etag?: string | null;
  /** Releases the reader, also mid-operation (no result follows); resolves when released. */
  close(): Promise<void>;
}

/**
 * Digests and the facts that travel with them. Where a call takes `digest`, it is DIGEST_BYTES
 * long (the C library's FSGW_DIGEST_OUT_BYTES): byte 0 holds flags (FACT_*), bytes 1..32 the
 * file's SHA-256 (recorded with the file, or computed as an upload streamed), 33..48 its MD5 (when
 * the upload computed one: the S3 API's ETag), 49..56 its modification time in milliseconds
 * (int64 little-endian, when the store knows it); the store clears byte 0 first and the values are
 * there when the result arrives. Read them with sha256Of, md5Of and mtimeMsOf. `expected` (32
 * bytes): the digest an upload's body must have; a body that has another fails with
 * DIGEST_MISMATCH and nothing is stored (a previous file stays).
 */
export const DIGEST_BYTES = 57;
export const FACT_SHA256 = 1;
export const FACT_MD5 = 2;
export const FACT_MTIME = 4;

/** The SHA-256 in a facts buffer (a view), or null. */
export function sha256Of(facts: Uint8Array): Uint8Array | null {
  return (facts[0]! & FACT_SHA256) !== 0 ? facts.subarray(1, 33) : null;
}

/** The MD5 in a facts buffer (a view), or null. */
export function md5Of(facts: Uint8Array): Uint8Array | null {
  return (facts[0]! & FACT_MD5) !== 0 ? facts.subarray(33, 49) : null;
}

/** Bytes of a view as text, in place: Buffer.from(view) would make an object for each (answers read these per request). */
const hexSlice = Buffer.prototype.hexSlice as (this: Uint8Array, start: number, end: number) => string;
const base64Slice = Buffer.prototype.base64Slice as (this: Uint8Array, start: number, end: number) => string;

/** The SHA-256 in a facts buffer as hex, or null. */
export function sha256HexOf(facts: Uint8Array): string | null {
  return (facts[0]! & FACT_SHA256) !== 0 ? hexSlice.call(facts, 1, 33) : null;
}

/** The SHA-256 in a facts buffer in base64 (x-amz-checksum-sha256), or null. */
export function sha256Base64Of(facts: Uint8Array): string | null {
  return (facts[0]! & FACT_SHA256) !== 0 ? base64Slice.call(facts, 1, 33) : null;
}

/** The MD5 in a facts buffer as hex, or null. */
export function md5HexOf(facts: Uint8Array): string | null {
  return (facts[0]! & FACT_MD5) !== 0 ? hexSlice.call(facts, 33, 49) : null;
}

/** The modification time (ms since the epoch) in a facts buffer, or null. */
export function mtimeMsOf(facts: Uint8Array): number | null {
  if ((facts[0]! & FACT_MTIME) === 0) return null;
  // A time after 1970 (its top byte clear), read from its bytes: no view, no BigInt (every answer
  // of the HTTP door's GET reads it).
  if (facts[56]! < 0x80) {
    const low = facts[49]! + facts[50]! * 0x100 + facts[51]! * 0x10000 + facts[52]! * 0x1000000;
    const high = facts[53]! + facts[54]! * 0x100 + facts[55]! * 0x10000 + facts[56]! * 0x1000000;
    return high * 0x100000000 + low;
  }
  return Number(new DataView(facts.buffer, facts.byteOffset, facts.byteLength).getBigInt64(49, true));
}

/** Records digests in a facts buffer: the SHA-256, and the MD5 when given. */
export function setDigests(facts: Uint8Array, sha256: Uint8Array, md5: Uint8Array | null = null): void {
  // No view made when the digests are exactly their size (the TCP upload's path).
  facts.set(sha256.length === 32 ? sha256 : sha256.subarray(0, 32), 1);
  facts[0] = (facts[0]! & ~(FACT_SHA256 | FACT_MD5)) | FACT_SHA256;
  if (md5 !== null) {
    facts.set(md5.length === 16 ? md5 : md5.subarray(0, 16), 33);
    facts[0] |= FACT_MD5;
  }
}

export interface Store {
  /** A name for logs: the kind of store and where. */
  readonly description: string;
  /**
   * Prepares the store before the server accepts anything; throws StoreError when it cannot.
   * `forLoops`: for a group of event loops, each of which then attach()es an instance of its own.
   */
  init(log: Logger, forLoops?: boolean): void;
  /**
   * Optional, after init(): reaches a remote store before the server listens (rejects with
   * StoreError when it is misconfigured) and starts its timers.
   */
  open?(): Promise<void>;
  /**
   * Optional: prepares this instance to serve as one event loop of several (`loops` > 1), after
   * another instance of the same store did init() and open() for the whole server (the lock, the
   * sweeps, the bucket check): only what each loop needs of its own.
   */
  attach?(log: Logger, loop: number): void;
  /** Optional: stops the store's timers at shutdown. */
  close?(): void;
  /** Optional: counters and gauges for /debug/stats and /metrics (camelCase names). */
  stats?(): Record<string, number>;

  /** The key's size and what it is: onStat. */
  stat(key: StoreKey, target: StatTarget, digest?: Uint8Array): void;
  /** Removes the key: 0. */
  remove(key: StoreKey, target: StoreTarget): void;
  /**
   * Stores a body already whole in memory: its length. The body stays untouched until then.
   * `md5`: also compute the body's MD5, record it with the file where the store records digests,
   * and report it in `digest` (the S3 API's ETag; the TCP protocol does not pay for it).
   */
  putWhole(key: StoreKey, body: Uint8Array, target: StoreTarget, expected?: Uint8Array | null, digest?: Uint8Array, md5?: boolean): void;
  /**
   * Reads a stored file whole when it fits `into`: its size, with the bytes in `into` only when
   * the size fits (a larger file is for openReader). `into` stays untouched until the result.
   */
  readWhole(key: StoreKey, into: Uint8Array, target: StoreTarget, digest?: Uint8Array): void;
  /**
   * Starts a streamed upload of `size` bytes; the owner hears onStoreDone(0) when it may push.
   * `resumable`: the client asks to be able to RESUME it; a store that cannot, or will not (a
   * bound), takes it as an ordinary upload (the sink has no uploadId). `md5`: as putWhole's.
   * `expectedMd5`: the MD5 the body must have (a Content-MD5), checked before the commit
   * (DIGEST_MISMATCH with MD5_MISMATCH_CAUSE) by a sink that says so (checksMd5); another store
   * leaves that check to its caller.
   */
  beginUpload(key: StoreKey, size: number, owner: UploadOwner, expected?: Uint8Array | null, digest?: Uint8Array, resumable?: ResumableRequest, md5?: boolean, expectedMd5?: Uint8Array | null): UploadSink;
  /** Optional: resumable uploads (RESUME), when this store keeps them. */
  readonly resumable?: ResumableUploads;
  /**
   * Optional: one page of an ordered listing (LIST). A store without it answers LIST "listing
   * unavailable". The target hears onListed once, or a failure.
   */
  list?(request: ListRequest, target: ListTarget): void;
  /**
   * Optional: S3 multipart uploads kept by the store itself (an S3 bucket's own), which the HTTP
   * door then passes through, so that gateways keep no state of them. `local` is the gateway's
   * own directory, for spooling a part on its way. Without it the door keeps parts in `local`.
   */
  ownMultipart?(local: MultipartUploads, uploadsMax: number): MultipartStore;
  /** A reader for a streamed download of the key; nothing happens until its open(), which fills `digest`. */
  openReader(key: StoreKey, digest?: Uint8Array): BodyReader;
  /**
   * Optional: true when this store's readers send bodies of any size to sockets (sendFramedNow)
   * more cheaply than readWhole reads small ones into memory; a connection that can hand over its
   * socket then downloads every file through openReader.
   */
  readonly sendsFramed?: boolean;
}

/** The capability of a store that keeps resumable uploads (docs/PROTOCOL.md, "Resumable uploads"). */
export interface ResumableUploads {
  /**
   * Continues the parked upload `id` of `key`. The owner hears onStoreDone(0) when the rest of the
   * body may come (the sink's `offset` says from where), or NO_UPLOAD / UPLOAD_BUSY.
   */
  resume(id: string, key: StoreKey, owner: UploadOwner, expected: Uint8Array | null, digest?: Uint8Array): UploadSink;
  /**
   * With several event loops: another loop's RESUME takes the parked upload `id` of `keyName` from
   * this instance: what moves with it, null (not here, expired, another key's) or "busy".
   */
  handOver(id: string, keyName: string): HandedOver | null | "busy";
  /** A failing or stopping loop forgets every upload and removes their partial files; how many. */
  discardAll(): Promise<number>;
  /** How many are held, parked and resumed so far, refused, not kept, and the bytes kept. */
  stats(): ResumableStats;
}

export class StoreError extends Error {}

/** One page of a listing, as the connection asks for it (docs/PROTOCOL.md, LIST). */
export interface ListRequest {
  /** Keys that start with this (byte for byte). */
  prefix: string;
  /** "" for none; else keys holding it after the prefix are rolled into a common prefix. */
  delimiter: string;
  /** Start after this key ("" from the first), or with afterPrefix after every key under it. */
  after: string;
  afterPrefix: boolean;
  /** Entries and common prefixes at most, and the bytes their records may take. */
  maxKeys: number;
  bytesMax: number;
}

/** A stored file as a listing shows it. */
export interface ListEntry {
  key: string;
  size: number;
  mtimeMs: number;
  /** The recorded SHA-256 (32 bytes), or null. */
  digest: Uint8Array | null;
  /** The body's MD5 (hex) when the store knows it (an S3 bucket's single-part ETag). */
  md5?: string;
}

/**
 * A page: its lines as LIST sends them (docs/PROTOCOL.md: entries, then common prefixes, each a
 * JSON object on a line), and where the next page starts ("K" + a key or "P" + a common prefix;
 * "" when the listing is complete).
 */
export interface ListPage {
  lines: Uint8Array;
  next: string;
}

export interface ListTarget {
  onListed(page: ListPage): void;
  onStoreFailed(failure: FailureKind, cause: FailureCause): void;
  onStoreBug(error: unknown): void;
}
