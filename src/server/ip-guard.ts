// Per-address limits: open connections from one client address (connectionsPerIpMax), and failed
// AUTH exchanges, after authFailuresMax of which within authFailureWindowMs the address's new
// connections are closed at once for authBlockMs.
//
// Memory is bounded by clientAddressesMax entries. An address with open connections is always
// remembered (there are at most connectionsMax of those); past the bound, the address quiet for the
// longest among those without open connections is forgotten first. (An attacker with more
// addresses than the bound can so shorten a block; each of its addresses still gets at most
// authFailuresMax tries per window before that.)

export interface IpGuardLimits {
  connectionsPerIpMax: number;
  authFailuresMax: number;
  authFailureWindowMs: number;
  authBlockMs: number;
  clientAddressesMax: number;
}

class Entry {
  open = 0;
  failures = 0;
  windowStartMs = 0;
  blockedUntilMs = 0;
}

export type Admission = "ok" | "blocked" | "too many connections";

export class IpGuard {
  /** Insertion order is last-activity order: an entry is re-inserted whenever it is touched. */
  private readonly entries = new Map<string, Entry>();
  /** Addresses blocked so far (for stats). */
  blocks = 0;

  constructor(private readonly limits: IpGuardLimits) {}

  get size(): number {
    return this.entries.size;
  }

  /** Whether a new connection from `ip` may stay; when "ok", it is counted until closed(ip). */
  admit(ip: string, nowMs: number): Admission {
    const entry = this.touch(ip);
    if (entry.blockedUntilMs > nowMs) return "blocked";
    if (entry.open >= this.limits.connectionsPerIpMax) return "too many connections";
    entry.open++;
    return "ok";
  }

  closed(ip: string, nowMs: number): void {
    const entry = this.entries.get(ip);
    if (entry === undefined) return;
    entry.open = Math.max(0, entry.open - 1);
    if (entry.open === 0 && entry.blockedUntilMs <= nowMs && (entry.failures === 0 || nowMs - entry.windowStartMs > this.limits.authFailureWindowMs)) {
      this.entries.delete(ip);
    }
  }

  /** Counts a failed AUTH from `ip`; true when that blocks the address (now or already). */
  authFailed(ip: string, nowMs: number): boolean {
    const entry = this.touch(ip);
    if (nowMs - entry.windowStartMs > this.limits.authFailureWindowMs) {
      entry.windowStartMs = nowMs;
      entry.failures = 0;
    }
    entry.failures++;
    if (entry.failures >= this.limits.authFailuresMax) {
      if (entry.blockedUntilMs <= nowMs) this.blocks++;
      entry.blockedUntilMs = nowMs + this.limits.authBlockMs;
      entry.failures = 0;
      entry.windowStartMs = nowMs;
      return true;
    }
    return entry.blockedUntilMs > nowMs;
  }

  /** The entry of `ip`, created if need be, moved to the most-recent end; evicts past the bound. */
  private touch(ip: string): Entry {
    let entry = this.entries.get(ip);
    if (entry !== undefined) {
      this.entries.delete(ip);
    } else {
      entry = new Entry();
      if (this.entries.size >= this.limits.clientAddressesMax) this.evictOne();
    }
    this.entries.set(ip, entry);
    return entry;
  }

  /** Forgets the least recently active address without open connections, if there is one. */
  private evictOne(): void {
    for (const [ip, entry] of this.entries) {
      if (entry.open === 0) {
        this.entries.delete(ip);
        return;
      }
    }
  }
}
