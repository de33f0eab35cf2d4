// The per-address limits of ip-guard.ts for several event loops (`loops` > 1): one table in shared
// memory that every loop's thread reads and writes under one lock, so that connectionsPerIpMax and
// the blocks after failed AUTH exchanges are the server's, whichever loop a connection reaches.
//
// An open-addressing table (linear probing, deletion by backward shift) of twice the entries it can
// hold (tableSlots), keyed by a 64-bit hash of the address text (two 32-bit FNV-1a of different seeds: two
// addresses share an entry with odds of 2^-64). Entries follow IpGuard's rules: an address with open
// connections is always kept; past clientAddressesMax the one quiet the longest among those without
// open connections is forgotten (a scan of the table, only when it is full). The lock is held for a
// probe of a few slots, on connection opens and closes and failed AUTH exchanges: never per byte.
import type { Admission, IpGuardLimits } from "./ip-guard";
import type { ClientBudget } from "../storage/partials";

const HEADER_INTS = 4; // lock, entries, blocks, (unused)
const INTS_PER_SLOT = 5; // key hi, key lo, open, failures, resumable uploads
const DOUBLES_PER_SLOT = 4; // window start, blocked until, last active (ms), kept bytes

/** What sizes the table. */
export type TableLimits = Pick<IpGuardLimits, "clientAddressesMax" | "connectionsMax" | "resumableUploadsMax">;

/**
 * Slots of the table: twice the most entries it can hold, which is clientAddressesMax forgettable
 * ones plus those it must keep: an address per open connection, and an address and a token per
 * resumable upload. Half empty at worst, so a probe always ends.
 */
function tableSlots(limits: TableLimits): number {
  return 2 * (limits.clientAddressesMax + limits.connectionsMax + 2 * limits.resumableUploadsMax);
}

/** The shared memory of the table (made by the loop group, given to every loop). */
export function sharedAddressTable(limits: TableLimits): SharedArrayBuffer {
  const slots = tableSlots(limits);
  return new SharedArrayBuffer(8 * slots * DOUBLES_PER_SLOT + 4 * (HEADER_INTS + slots * INTS_PER_SLOT));
}

function hash(text: string, seed: number): number {
  let h = seed;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h | 0;
}

export class SharedIpGuard implements ClientBudget {
  private readonly slots: number;
  private readonly times: Float64Array;
  private readonly ints: Int32Array;

  constructor(
    private readonly limits: IpGuardLimits,
    memory: SharedArrayBuffer,
  ) {
    this.slots = tableSlots(limits);
    const timeBytes = 8 * this.slots * DOUBLES_PER_SLOT;
    this.times = new Float64Array(memory, 0, this.slots * DOUBLES_PER_SLOT);
    this.ints = new Int32Array(memory, timeBytes, HEADER_INTS + this.slots * INTS_PER_SLOT);
  }

  /** Addresses blocked so far, by every loop. */
  get blocks(): number {
    return Atomics.load(this.ints, 2);
  }

  get size(): number {
    return Atomics.load(this.ints, 1);
  }

  admit(ip: string, nowMs: number): Admission {
    return this.locked(() => {
      const s = this.touch(ip, nowMs);
      if (this.times[s * DOUBLES_PER_SLOT + 1]! > nowMs) return "blocked";
      const open = HEADER_INTS + s * INTS_PER_SLOT + 2;
      if (this.ints[open]! >= this.limits.connectionsPerIpMax) return "too many connections";
      this.ints[open]!++;
      return "ok";
    });
  }

  closed(ip: string, nowMs: number): void {
    this.locked(() => {
      const s = this.find(ip);
      if (s < 0) return;
      const base = HEADER_INTS + s * INTS_PER_SLOT;
      const open = Math.max(0, this.ints[base + 2]! - 1);
      this.ints[base + 2] = open;
      this.forgetIfIdle(s, nowMs);
    });
  }

  /** Forgets the client in slot `s` when nothing is counted against it any more (lock held). */
  private forgetIfIdle(s: number, nowMs: number): void {
    const base = HEADER_INTS + s * INTS_PER_SLOT;
    const t = s * DOUBLES_PER_SLOT;
    const quiet = this.ints[base + 3] === 0 || nowMs - this.times[t]! > this.limits.authFailureWindowMs;
    if (this.ints[base + 2] === 0 && this.ints[base + 4] === 0 && this.times[t + 1]! <= nowMs && quiet) this.remove(s);
  }

  takeUpload(clients: readonly string[], nowMs: number): string | null {
    return this.locked(() => {
      for (const c of clients) {
        const s = this.find(c);
        if (s >= 0 && this.ints[HEADER_INTS + s * INTS_PER_SLOT + 4]! >= this.limits.resumableUploadsPerClientMax) return `resumableUploadsPerClientMax (${this.limits.resumableUploadsPerClientMax}) reached for ${c}`;
      }
      for (const c of clients) this.ints[HEADER_INTS + this.touch(c, nowMs) * INTS_PER_SLOT + 4]!++;
      return null;
    });
  }

  releaseUpload(clients: readonly string[], nowMs: number): void {
    this.locked(() => {
      for (const c of clients) {
        const s = this.find(c);
        if (s < 0) continue;
        const at = HEADER_INTS + s * INTS_PER_SLOT + 4;
        this.ints[at] = Math.max(0, this.ints[at]! - 1);
        this.forgetIfIdle(s, nowMs);
      }
    });
  }

  takeBytes(clients: readonly string[], bytes: number): string | null {
    return this.locked(() => {
      for (const c of clients) {
        const s = this.find(c);
        if ((s >= 0 ? this.times[s * DOUBLES_PER_SLOT + 3]! : 0) + bytes > this.limits.resumableBytesPerClientMax) return `resumableBytesPerClientMax (${this.limits.resumableBytesPerClientMax}) would be passed for ${c}`;
      }
      for (const c of clients) {
        const s = this.find(c);
        if (s >= 0) this.times[s * DOUBLES_PER_SLOT + 3]! += bytes; // takeUpload made it, and keeps it
      }
      return null;
    });
  }

  releaseBytes(clients: readonly string[], bytes: number): void {
    this.locked(() => {
      for (const c of clients) {
        const s = this.find(c);
        if (s >= 0) this.times[s * DOUBLES_PER_SLOT + 3] = Math.max(0, this.times[s * DOUBLES_PER_SLOT + 3]! - bytes);
      }
    });
  }

  /** What is charged to `client` now (tests and stats). */
  charged(client: string): { uploads: number; keptBytes: number } {
    return this.locked(() => {
      const s = this.find(client);
      return s < 0 ? { uploads: 0, keptBytes: 0 } : { uploads: this.ints[HEADER_INTS + s * INTS_PER_SLOT + 4]!, keptBytes: this.times[s * DOUBLES_PER_SLOT + 3]! };
    });
  }

  authFailed(ip: string, nowMs: number): boolean {
    return this.locked(() => {
      const s = this.touch(ip, nowMs);
      const base = HEADER_INTS + s * INTS_PER_SLOT;
      const t = s * DOUBLES_PER_SLOT;
      if (nowMs - this.times[t]! > this.limits.authFailureWindowMs) {
        this.times[t] = nowMs;
        this.ints[base + 3] = 0;
      }
      this.ints[base + 3]!++;
      if (this.ints[base + 3]! >= this.limits.authFailuresMax) {
        if (this.times[t + 1]! <= nowMs) this.ints[2]!++;
        this.times[t + 1] = nowMs + this.limits.authBlockMs;
        this.ints[base + 3] = 0;
        this.times[t] = nowMs;
        return true;
      }
      return this.times[t + 1]! > nowMs;
    });
  }

  /** Runs `f` holding the table's lock (a spin lock: held for a few slots' work). */
  private locked<T>(f: () => T): T {
    while (Atomics.compareExchange(this.ints, 0, 0, 1) !== 0) {
      // Another loop is in the table: a microsecond's work at most; wait for its release.
      Atomics.wait(this.ints, 0, 1, 1);
    }
    try {
      return f();
    } finally {
      Atomics.store(this.ints, 0, 0);
      Atomics.notify(this.ints, 0, 1);
    }
  }

  private keyOf(ip: string): [number, number] {
    const hi = hash(ip, 0x811c9dc5 | 0);
    const lo = hash(ip, 0x2545f491);
    return hi === 0 && lo === 0 ? [0, 1] : [hi, lo];
  }

  private home(hi: number): number {
    return (hi >>> 0) % this.slots;
  }

  private empty(s: number): boolean {
    const base = HEADER_INTS + s * INTS_PER_SLOT;
    return this.ints[base] === 0 && this.ints[base + 1] === 0;
  }

  /** The slot of `ip`, or -1. */
  private find(ip: string): number {
    const [hi, lo] = this.keyOf(ip);
    for (let s = this.home(hi), n = 0; n < this.slots; s = (s + 1) % this.slots, n++) {
      const base = HEADER_INTS + s * INTS_PER_SLOT;
      if (this.ints[base] === hi && this.ints[base + 1] === lo) return s;
      if (this.empty(s)) return -1;
    }
    return -1;
  }

  /** The slot of `ip`, made if need be (evicting past the bound), its last activity set to now. */
  private touch(ip: string, nowMs: number): number {
    let s = this.find(ip);
    if (s < 0) {
      if (this.ints[1]! >= this.limits.clientAddressesMax) this.evictOne();
      const [hi, lo] = this.keyOf(ip);
      s = this.home(hi);
      while (!this.empty(s)) s = (s + 1) % this.slots;
      const base = HEADER_INTS + s * INTS_PER_SLOT;
      this.ints.set([hi, lo, 0, 0, 0], base);
      this.times.set([0, 0, nowMs, 0], s * DOUBLES_PER_SLOT);
      this.ints[1]!++;
    }
    this.times[s * DOUBLES_PER_SLOT + 2] = nowMs;
    return s;
  }

  /** Forgets the client quiet the longest among those without open connections or uploads, if any. */
  private evictOne(): void {
    let victim = -1;
    let oldest = Infinity;
    for (let s = 0; s < this.slots; s++) {
      if (this.empty(s) || this.ints[HEADER_INTS + s * INTS_PER_SLOT + 2] !== 0 || this.ints[HEADER_INTS + s * INTS_PER_SLOT + 4] !== 0) continue;
      const last = this.times[s * DOUBLES_PER_SLOT + 2]!;
      if (last < oldest) {
        oldest = last;
        victim = s;
      }
    }
    if (victim >= 0) this.remove(victim);
  }

  /** Empties slot `s`, shifting later entries of its probe run back (no tombstones). */
  private remove(s: number): void {
    let hole = s;
    for (let j = (s + 1) % this.slots; !this.empty(j); j = (j + 1) % this.slots) {
      const home = this.home(this.ints[HEADER_INTS + j * INTS_PER_SLOT]!);
      // Entry j may move into the hole when its home is not cyclically within (hole, j].
      const between = hole < j ? home > hole && home <= j : home > hole || home <= j;
      if (between) continue;
      this.ints.copyWithin(HEADER_INTS + hole * INTS_PER_SLOT, HEADER_INTS + j * INTS_PER_SLOT, HEADER_INTS + (j + 1) * INTS_PER_SLOT);
      this.times.copyWithin(hole * DOUBLES_PER_SLOT, j * DOUBLES_PER_SLOT, (j + 1) * DOUBLES_PER_SLOT);
      hole = j;
    }
    this.ints.fill(0, HEADER_INTS + hole * INTS_PER_SLOT, HEADER_INTS + (hole + 1) * INTS_PER_SLOT);
    this.times.fill(0, hole * DOUBLES_PER_SLOT, (hole + 1) * DOUBLES_PER_SLOT);
    this.ints[1]!--;
  }
}
