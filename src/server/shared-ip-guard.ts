// The per-address limits of ip-guard.ts for several event loops (`loops` > 1): one table in shared
// memory that every loop's thread reads and writes under one lock, so that connectionsPerIpMax and
// the blocks after failed AUTH exchanges are the server's, whichever loop a connection reaches.
//
// An open-addressing table (linear probing, deletion by backward shift) of 2 × clientAddressesMax
// slots, keyed by a 64-bit hash of the address text (two 32-bit FNV-1a of different seeds: two
// addresses share an entry with odds of 2^-64). Entries follow IpGuard's rules: an address with open
// connections is always kept; past clientAddressesMax the one quiet the longest among those without
// open connections is forgotten (a scan of the table, only when it is full). The lock is held for a
// probe of a few slots, on connection opens and closes and failed AUTH exchanges: never per byte.
import type { Admission, IpGuardLimits } from "./ip-guard";

const HEADER_INTS = 4; // lock, entries, blocks, (unused)
const INTS_PER_SLOT = 4; // key hi, key lo, open, failures
const DOUBLES_PER_SLOT = 3; // window start, blocked until, last active (ms)

/** The shared memory for `addressesMax` addresses (made by the loop group, given to every loop). */
export function sharedAddressTable(addressesMax: number): SharedArrayBuffer {
  const slots = 2 * addressesMax;
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

export class SharedIpGuard {
  private readonly slots: number;
  private readonly times: Float64Array;
  private readonly ints: Int32Array;

  constructor(
    private readonly limits: IpGuardLimits,
    memory: SharedArrayBuffer,
  ) {
    this.slots = 2 * limits.clientAddressesMax;
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
      const t = s * DOUBLES_PER_SLOT;
      const quiet = this.ints[base + 3] === 0 || nowMs - this.times[t]! > this.limits.authFailureWindowMs;
      if (open === 0 && this.times[t + 1]! <= nowMs && quiet) this.remove(s);
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
      this.ints.set([hi, lo, 0, 0], base);
      this.times.set([0, 0, nowMs], s * DOUBLES_PER_SLOT);
      this.ints[1]!++;
    }
    this.times[s * DOUBLES_PER_SLOT + 2] = nowMs;
    return s;
  }

  /** Forgets the address quiet the longest among those without open connections, if any. */
  private evictOne(): void {
    let victim = -1;
    let oldest = Infinity;
    for (let s = 0; s < this.slots; s++) {
      if (this.empty(s) || this.ints[HEADER_INTS + s * INTS_PER_SLOT + 2] !== 0) continue;
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
