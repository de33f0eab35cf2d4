// Resumable uploads: what the file store remembers of each, under its upload id. An upload asked to
// be resumable is registered when it starts; if its connection breaks mid-body, whatever reached
// the server is written out and the upload is parked (its temporary file kept, with the hash of
// exactly those bytes); RESUME takes it back and the client sends the rest. Committed, failed and
// expired uploads leave the table, and their partial files go with them.
//
// Bounded by what is actually held, not by what clients announce (an announced size costs an
// attacker nothing: 64 GiB announced, one byte sent, used to block every resumable upload for a
// day). Server-wide: at most `uploadsMax` entries (in progress and parked), and `bytesMax` bytes
// kept in parked partial files. Per client (its address, and its token id: the ClientBudget, kept
// by the server for every loop): resumableUploadsPerClientMax entries and resumableBytesPerClientMax
// kept bytes. An upload past an entry bound is not resumable (an ordinary upload: its START carries
// no id); a broken upload past a byte bound is discarded instead of parked. Parked entries expire
// after `ttlMs`. Partials live in memory only: a restart sweeps their files with the other
// temporary files.
import { randomBytes } from "../util/crypto";
import type { Hasher } from "../engine/io-engine";
import type { Logger } from "../log";
import type { SharedCounters } from "../server/shared-counters";

/**
 * The server's per-client bounds on resumable uploads (src/server/ip-guard.ts, one table for every
 * loop). A client is an address, or "token:<id>"; an upload is charged to each of its clients.
 */
export interface ClientBudget {
  /** Counts one more upload for every client: null, or the bound that refused it (nothing counted). */
  takeUpload(clients: readonly string[], nowMs: number): string | null;
  releaseUpload(clients: readonly string[], nowMs: number): void;
  /** Charges kept bytes to every client (after takeUpload): null, or the bound that refused them (nothing charged). */
  takeBytes(clients: readonly string[], bytes: number): string | null;
  releaseBytes(clients: readonly string[], bytes: number): void;
}

export interface PartialUpload {
  readonly id: string;
  /** The key as the client sent it: RESUME must name the same one. */
  readonly keyName: string;
  readonly tmpPath: string;
  readonly size: number;
  /** Who it is charged to (ClientBudget): the uploader's address, and its token id. */
  readonly clients: readonly string[];
  /** Bytes charged as kept (the onDisk of its last parking; 0 before it was ever parked). */
  keptBytes: number;
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
  clients: readonly string[];
  keptBytes: number;
  onDisk: number;
  /** The C library's SHA-256 state of the bytes on disk (NativeSha256.state). */
  hashState: Uint8Array;
  expected: Uint8Array | null;
  parkedMs: number;
}

/** Where the server-wide totals live with several event loops: this loop's cells among every loop's. */
export interface SharedTotals {
  counters: SharedCounters;
  loop: number;
}

/**
 * The server-wide totals: this table's own (a store that serves no loop of a group: tests, the
 * group's own instance), or every loop's in shared memory, this loop adding only to its own cells.
 */
class Totals {
  private uploads = 0;
  private bytes = 0;
  constructor(
    private readonly limits: PartialLimits,
    private readonly shared: SharedTotals | null,
  ) {}

  /** One more upload: null, or the bound that refuses it (nothing counted). */
  takeUpload(): string | null {
    const over = `resumableUploadsMax (${this.limits.uploadsMax}) reached`;
    const shared = this.shared;
    if (shared !== null) return shared.counters.resumableUploads.addWithin(shared.loop, 1, this.limits.uploadsMax) ? null : over;
    if (this.uploads >= this.limits.uploadsMax) return over;
    this.uploads++;
    return null;
  }

  /** `n` uploads leave (negative: arrive, unchecked: handed over by another loop). */
  releaseUploads(n: number): void {
    if (this.shared === null) this.uploads -= n;
    else this.shared.counters.resumableUploads.add(this.shared.loop, -n);
  }

  /** `bytes` more kept: null, or the bound that refuses them (nothing counted). */
  takeBytes(bytes: number): string | null {
    const over = `resumableBytesMax (${this.limits.bytesMax}) would be passed`;
    const shared = this.shared;
    if (shared !== null) return shared.counters.resumableBytes.addWithin(shared.loop, bytes, this.limits.bytesMax) ? null : over;
    if (this.bytes + bytes > this.limits.bytesMax) return over;
    this.bytes += bytes;
    return null;
  }

  /** `bytes` no longer kept (negative: kept, unchecked: handed over by another loop). */
  releaseBytes(bytes: number): void {
    if (this.shared === null) this.bytes -= bytes;
    else this.shared.counters.resumableBytes.add(this.shared.loop, -bytes);
  }

  get keptBytes(): number {
    return this.shared === null ? this.bytes : this.shared.counters.resumableBytes.total();
  }
}

export class Partials {
  private readonly byId = new Map<string, PartialUpload>();
  private readonly totals: Totals;
  /** Uploads resumed and parked so far; asked to be resumable and taken as ordinary ones; broken and not kept (for stats). */
  resumed = 0;
  parked = 0;
  refused = 0;
  notKept = 0;
  /** Where refusals and discards are said (the store's logger, once it has one). */
  log: Logger | null = null;

  /**
   * `idPrefix`: "<loop>." so that any loop can tell which one holds an upload (and ask it to hand
   * the upload over). `shared`: the uploads and kept bytes of every loop (this loop's cells among
   * them), so that the bounds are the server's; null, this table's own are.
   */
  constructor(
    private readonly limits: PartialLimits,
    private readonly budget: ClientBudget,
    private readonly idPrefix = "",
    shared: SharedTotals | null = null,
  ) {
    this.totals = new Totals(limits, shared);
  }

  get size(): number {
    return this.byId.size;
  }

  /** Bytes kept by parked uploads, server-wide. */
  get keptBytes(): number {
    return this.totals.keptBytes;
  }

  /**
   * Registers a new resumable upload, active, charged to `clients`; or says which bound refuses it
   * (then it is an ordinary upload).
   */
  register(keyName: string, tmpPath: string, size: number, expected: Uint8Array | null, clients: readonly string[], nowMs: number): PartialUpload | string {
    const over = this.totals.takeUpload();
    if (over !== null) return this.refuse(keyName, clients, over);
    const overClient = this.budget.takeUpload(clients, nowMs);
    if (overClient !== null) {
      this.totals.releaseUploads(1);
      return this.refuse(keyName, clients, overClient);
    }
    const p: PartialUpload = { id: this.idPrefix + randomBytes(16).toString("hex"), keyName, tmpPath, size, clients, keptBytes: 0, onDisk: 0, hasher: null, expected, parkedMs: 0, active: true };
    this.byId.set(p.id, p);
    return p;
  }

  private refuse(keyName: string, clients: readonly string[], reason: string): string {
    this.refused++;
    this.log?.info("resumable_refused", { key: keyName, clients: clients.join(","), reason, effect: "an ordinary upload: not resumable" });
    return reason;
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
   * Another loop's RESUME: the parked upload leaves this table for that loop's (its file, and its
   * charges, with it), or null (unknown, expired, another key, or a hash state that cannot move),
   * or "busy".
   */
  handOver(id: string, keyName: string, nowMs: number): HandedOver | null | "busy" {
    const p = this.byId.get(id);
    if (p === undefined || p.keyName !== keyName) return null;
    if (p.active) return "busy";
    const state = p.hasher?.state;
    if (nowMs - p.parkedMs > this.limits.ttlMs || state === undefined) return null;
    // Client charges are the same whichever loop holds it; the totals move to the adopting loop's cells.
    this.byId.delete(p.id);
    this.totals.releaseUploads(1);
    this.totals.releaseBytes(p.keptBytes);
    return { id: p.id, keyName: p.keyName, tmpPath: p.tmpPath, size: p.size, clients: p.clients, keptBytes: p.keptBytes, onDisk: p.onDisk, hashState: state.slice(), expected: p.expected, parkedMs: p.parkedMs };
  }

  /** A parked upload handed over by another loop, active here now (its charges came with it). */
  adopt(h: HandedOver, hasher: Hasher): PartialUpload {
    const p: PartialUpload = { id: h.id, keyName: h.keyName, tmpPath: h.tmpPath, size: h.size, clients: h.clients, keptBytes: h.keptBytes, onDisk: h.onDisk, hasher, expected: h.expected, parkedMs: h.parkedMs, active: true };
    this.byId.set(p.id, p);
    this.totals.releaseUploads(-1);
    this.totals.releaseBytes(-p.keptBytes);
    this.resumed++;
    return p;
  }

  /**
   * Its connection broke: `onDisk` bytes are in the file, hashed by `hasher`. Kept when the bytes
   * fit the server's and its clients' bounds (null); else the bound that refuses them, and the
   * caller discards the upload (drop, and its file).
   */
  park(p: PartialUpload, onDisk: number, hasher: Hasher, nowMs: number): string | null {
    const more = onDisk - p.keptBytes;
    if (more > 0) {
      const over = this.totals.takeBytes(more);
      if (over !== null) return this.notKeep(p, onDisk, over);
      const overClient = this.budget.takeBytes(p.clients, more);
      if (overClient !== null) {
        this.totals.releaseBytes(more);
        return this.notKeep(p, onDisk, overClient);
      }
      p.keptBytes = onDisk;
    }
    p.onDisk = onDisk;
    p.hasher = hasher;
    p.parkedMs = nowMs;
    p.active = false;
    this.parked++;
    return null;
  }

  private notKeep(p: PartialUpload, onDisk: number, reason: string): string {
    this.notKept++;
    this.log?.warn("resumable_not_kept", { key: p.keyName, upload: p.id, clients: p.clients.join(","), bytes: onDisk, reason, effect: "discarded: a RESUME is answered 'no such upload'" });
    return reason;
  }

  /** Committed, failed, expired or not kept: forgotten, its charges released (its file is the caller's to remove). */
  drop(p: PartialUpload, nowMs = Date.now()): void {
    if (this.byId.get(p.id) !== p) return;
    this.byId.delete(p.id);
    this.totals.releaseUploads(1);
    this.budget.releaseUpload(p.clients, nowMs);
    if (p.keptBytes > 0) {
      this.totals.releaseBytes(p.keptBytes);
      this.budget.releaseBytes(p.clients, p.keptBytes);
    }
  }

  /** Every upload, forgotten and its charges released (a failing loop): their files are the caller's to remove. */
  takeAll(nowMs: number): PartialUpload[] {
    const all = [...this.byId.values()];
    for (const p of all) this.drop(p, nowMs);
    return all;
  }

  /** Parked uploads past their time, removed from the table: their files are the caller's to remove. */
  takeExpired(nowMs: number): PartialUpload[] {
    const out: PartialUpload[] = [];
    for (const p of this.byId.values()) {
      if (!p.active && nowMs - p.parkedMs > this.limits.ttlMs) out.push(p);
    }
    for (const p of out) this.drop(p, nowMs);
    return out;
  }
}
