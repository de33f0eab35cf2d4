// Resumable uploads: what the file store remembers of each, under its upload id. An upload asked to
// be resumable is registered when it starts; if its connection breaks mid-body, whatever reached
// the server is written out and the upload is parked (its temporary file kept, with the hash of
// exactly those bytes); RESUME takes it back and the client sends the rest. Committed, failed and
// expired uploads leave the table, and their partial files go with them.
//
// Bounded: at most `uploadsMax` entries, and `bytesMax` announced bytes over all of them (in
// progress and parked). Parked entries expire after `ttlMs`. Partials live in memory only: a
// restart sweeps their files with the other temporary files.
import { randomBytes } from "node:crypto";
import type { Hasher } from "../engine/io-engine";

export interface PartialUpload {
  readonly id: string;
  /** The key as the client sent it: RESUME must name the same one. */
  readonly keyName: string;
  readonly tmpPath: string;
  readonly size: number;
  /** Bytes of the body in the temporary file, [0, onDisk), while parked. */
  onDisk: number;
  /** The hash of exactly those bytes, while parked (null while a connection sends the body). */
  hasher: Hasher | null;
  /** The digest the whole body must have, from the request (or from RESUME). */
  expected: Uint8Array | null;
  /** When it was parked: it expires ttlMs later. */
  parkedMs: number;
  /** A connection is sending its body now. */
  active: boolean;
}

export interface PartialLimits {
  uploadsMax: number;
  bytesMax: number;
  ttlMs: number;
}

/**
 * A parked upload as it moves from one event loop to another (structured-clone safe): a RESUME may
 * reach any loop, and the loop that parked it hands it over (HandedOver), hash state included.
 */
export interface HandedOver {
  id: string;
  keyName: string;
  tmpPath: string;
  size: number;
  onDisk: number;
  /** The C library's SHA-256 state of the bytes on disk (NativeSha256.state). */
  hashState: Uint8Array;
  expected: Uint8Array | null;
  parkedMs: number;
}

export class Partials {
  private readonly byId = new Map<string, PartialUpload>();
  private bytes = 0;
  /** Uploads resumed, and parked, so far (for stats). */
  resumed = 0;
  parked = 0;

  /**
   * `idPrefix`: "" with one event loop; with several, "<loop>." so that any loop can tell which one
   * holds an upload (and ask it to hand the upload over).
   */
  constructor(
    private readonly limits: PartialLimits,
    private readonly idPrefix = "",
    /**
     * With several event loops: the uploads and announced bytes of every loop's table (element 0
     * each), so that the bounds are the server's; absent, this table's own are.
     */
    private readonly shared: { uploads: Int32Array; bytes: BigInt64Array } | null = null,
  ) {}

  /** Counts an upload of `size` bytes against the bounds: false (nothing counted) when over one. */
  private count(size: number): string | null {
    const shared = this.shared;
    if (shared === null) {
      if (this.byId.size >= this.limits.uploadsMax) return `resumableUploadsMax (${this.limits.uploadsMax}) reached`;
      if (this.bytes + size > this.limits.bytesMax) return `resumableBytesMax (${this.limits.bytesMax}) would be exceeded`;
      return null;
    }
    if (Atomics.add(shared.uploads, 0, 1) >= this.limits.uploadsMax) {
      Atomics.sub(shared.uploads, 0, 1);
      return `resumableUploadsMax (${this.limits.uploadsMax}) reached`;
    }
    if (Number(Atomics.add(shared.bytes, 0, BigInt(size))) + size > this.limits.bytesMax) {
      Atomics.sub(shared.bytes, 0, BigInt(size));
      Atomics.sub(shared.uploads, 0, 1);
      return `resumableBytesMax (${this.limits.bytesMax}) would be exceeded`;
    }
    return null;
  }

  private uncount(size: number): void {
    if (this.shared === null) return;
    Atomics.sub(this.shared.uploads, 0, 1);
    Atomics.sub(this.shared.bytes, 0, BigInt(size));
  }

  get size(): number {
    return this.byId.size;
  }

  /** Registers a new resumable upload, active; or says why not (a bound is reached). */
  register(keyName: string, tmpPath: string, size: number, expected: Uint8Array | null): PartialUpload | string {
    const over = this.count(size);
    if (over !== null) return over;
    const p: PartialUpload = { id: this.idPrefix + randomBytes(16).toString("hex"), keyName, tmpPath, size, onDisk: 0, hasher: null, expected, parkedMs: 0, active: true };
    this.byId.set(p.id, p);
    this.bytes += size;
    return p;
  }

  /** RESUME: the parked upload `id` for `keyName`, now active again; or null (unknown, expired, another key), or "busy" (active). */
  take(id: string, keyName: string, nowMs: number): PartialUpload | null | "busy" {
    const p = this.byId.get(id);
    if (p === undefined || p.keyName !== keyName) return null;
    if (p.active) return "busy";
    if (nowMs - p.parkedMs > this.limits.ttlMs) return null; // the sweeper removes it
    p.active = true;
    this.resumed++;
    return p;
  }

  /**
   * Another loop's RESUME: the parked upload leaves this table for that loop's (its file with it),
   * or null (unknown, expired, another key, or a hash state that cannot move), or "busy".
   */
  handOver(id: string, keyName: string, nowMs: number): HandedOver | null | "busy" {
    const p = this.byId.get(id);
    if (p === undefined || p.keyName !== keyName) return null;
    if (p.active) return "busy";
    const state = p.hasher?.state;
    if (nowMs - p.parkedMs > this.limits.ttlMs || state === undefined) return null;
    this.drop(p);
    return { id: p.id, keyName: p.keyName, tmpPath: p.tmpPath, size: p.size, onDisk: p.onDisk, hashState: state.slice(), expected: p.expected, parkedMs: p.parkedMs };
  }

  /** A parked upload handed over by another loop, active here now (its bounds went with it). */
  adopt(h: HandedOver, hasher: Hasher): PartialUpload {
    const p: PartialUpload = { id: h.id, keyName: h.keyName, tmpPath: h.tmpPath, size: h.size, onDisk: h.onDisk, hasher, expected: h.expected, parkedMs: h.parkedMs, active: true };
    this.byId.set(p.id, p);
    this.bytes += p.size;
    // Counted again here as the loop that handed it over uncounted it (the server's totals hold).
    if (this.shared !== null) {
      Atomics.add(this.shared.uploads, 0, 1);
      Atomics.add(this.shared.bytes, 0, BigInt(p.size));
    }
    this.resumed++;
    return p;
  }

  /** Its connection broke: `onDisk` bytes are in the file, hashed by `hasher`. */
  park(p: PartialUpload, onDisk: number, hasher: Hasher, nowMs: number): void {
    p.onDisk = onDisk;
    p.hasher = hasher;
    p.parkedMs = nowMs;
    p.active = false;
    this.parked++;
  }

  /** Committed, failed or expired: forgotten (its file is the caller's to remove). */
  drop(p: PartialUpload): void {
    if (this.byId.get(p.id) !== p) return;
    this.byId.delete(p.id);
    this.bytes -= p.size;
    this.uncount(p.size);
  }

  /** Parked uploads past their time, removed from the table: their files are the caller's to remove. */
  takeExpired(nowMs: number): PartialUpload[] {
    const out: PartialUpload[] = [];
    for (const p of this.byId.values()) {
      if (!p.active && nowMs - p.parkedMs > this.limits.ttlMs) out.push(p);
    }
    for (const p of out) this.drop(p);
    return out;
  }
}
