// Per-client limits. Per address: open connections (connectionsPerIpMax), and failed AUTH
// exchanges, after authFailuresMax of which within authFailureWindowMs the address's new
// connections are closed at once for authBlockMs. Per client, an address or a token id (the key
// "token:<id>", which no address text can be): resumable uploads held (resumableUploadsPerClientMax)
// and the bytes their parked partial files keep (resumableBytesPerClientMax), so that one tenant
// cannot take the resumable bounds of every tenant (see ClientBudget in src/storage/partials.ts).
//
// Memory is bounded by clientAddressesMax entries. A client with open connections or resumable
// uploads is always remembered (there are at most connectionsMax + 2 × resumableUploadsMax of
// those); past the bound, the one quiet for the longest among the others is forgotten first. (An
// attacker with more addresses than the bound can so shorten a block; each of its addresses still
// gets at most authFailuresMax tries per window before that.)
import type { ClientBudget } from "../storage/partials";

export interface IpGuardLimits {
  connectionsPerIpMax: number;
  authFailuresMax: number;
  authFailureWindowMs: number;
  authBlockMs: number;
  clientAddressesMax: number;
  /** Only size the shared table (shared-ip-guard.ts): the entries it must keep. */
  connectionsMax: number;
  resumableUploadsMax: number;
  resumableUploadsPerClientMax: number;
  resumableBytesPerClientMax: number;
}

class Entry {
  open = 0;
  failures = 0;
  windowStartMs = 0;
  blockedUntilMs = 0;
  /** Resumable uploads charged to this client (in progress or parked), and their kept bytes. */
  resumable = 0;
  keptBytes = 0;
}

export type Admission = "ok" | "blocked" | "too many connections";

export class IpGuard implements ClientBudget {
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
    this.forgetIfIdle(ip, entry, nowMs);
  }

  /** Forgets a client nothing is counted against any more. */
  private forgetIfIdle(ip: string, entry: Entry, nowMs: number): void {
    if (entry.open === 0 && entry.resumable === 0 && entry.blockedUntilMs <= nowMs && (entry.failures === 0 || nowMs - entry.windowStartMs > this.limits.authFailureWindowMs)) {
      this.entries.delete(ip);
    }
  }

  takeUpload(clients: readonly string[], _nowMs: number): string | null {
    for (const c of clients) {
      if ((this.entries.get(c)?.resumable ?? 0) >= this.limits.resumableUploadsPerClientMax) return `resumableUploadsPerClientMax (${this.limits.resumableUploadsPerClientMax}) reached for ${c}`;
    }
    for (const c of clients) this.touch(c).resumable++;
    return null;
  }

  releaseUpload(clients: readonly string[], nowMs: number): void {
    for (const c of clients) {
      const entry = this.entries.get(c);
      if (entry === undefined) continue;
      entry.resumable = Math.max(0, entry.resumable - 1);
      this.forgetIfIdle(c, entry, nowMs);
    }
  }

  takeBytes(clients: readonly string[], bytes: number): string | null {
    for (const c of clients) {
      if ((this.entries.get(c)?.keptBytes ?? 0) + bytes > this.limits.resumableBytesPerClientMax) return `resumableBytesPerClientMax (${this.limits.resumableBytesPerClientMax}) would be passed for ${c}`;
    }
    for (const c of clients) {
      const entry = this.entries.get(c);
      if (entry !== undefined) entry.keptBytes += bytes; // takeUpload made it, and keeps it
    }
    return null;
  }

  releaseBytes(clients: readonly string[], bytes: number): void {
    for (const c of clients) {
      const entry = this.entries.get(c);
      if (entry !== undefined) entry.keptBytes = Math.max(0, entry.keptBytes - bytes);
    }
  }

  /** What is charged to `client` now (tests and stats). */
  charged(client: string): { uploads: number; keptBytes: number } {
    const entry = this.entries.get(client);
    return { uploads: entry?.resumable ?? 0, keptBytes: entry?.keptBytes ?? 0 };
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

  /** Forgets the least recently active client without open connections or uploads, if there is one. */
  private evictOne(): void {
    for (const [ip, entry] of this.entries) {
      if (entry.open === 0 && entry.resumable === 0) {
        this.entries.delete(ip);
        return;
      }
    }
  }
}
