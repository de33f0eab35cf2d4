// The digests of volume records an event loop read lately, by where each record is (issue 27).
//
// The index keeps no record's digests: an exist or a download reads them from the record's header,
// a system call each (file-store.ts, recordFactsNow). A key asked for again is answered from here
// instead, as the C library answers a file's digest from its cache by inode (digestCacheEntries
// bounds both). An entry never goes stale: a record's bytes never change, and a volume's number is
// not given twice while the process runs (a record written later is at another place); the
// sequence number is checked too. Direct-mapped: a record that lands on a taken slot replaces it.
import { DIGEST_BYTES } from "./store";

export class RecordFactsCache {
  /** Per slot: volume + 1 (0: empty), offset, sequence number. */
  private readonly volumes: Float64Array;
  private readonly offsets: Float64Array;
  private readonly seqs: Float64Array;
  /** Per slot: the facts (DIGEST_BYTES: flags, SHA-256, MD5, time) as a store's facts buffer holds them. */
  private readonly facts: Uint8Array;

  constructor(readonly entries: number) {
    this.volumes = new Float64Array(entries);
    this.offsets = new Float64Array(entries);
    this.seqs = new Float64Array(entries);
    this.facts = new Uint8Array(entries * DIGEST_BYTES);
  }

  private slotOf(volume: number, offset: number): number {
    // Records start at multiples of 8; volumes spread consecutive offsets over other slots.
    return (Math.floor(offset / 8) + volume * 40_503) % this.entries;
  }

  /** Copies the record's facts into `into` when held: true. */
  get(volume: number, offset: number, seq: number, into: Uint8Array): boolean {
    const slot = this.slotOf(volume, offset);
    if (this.volumes[slot] !== volume + 1 || this.offsets[slot] !== offset || this.seqs[slot] !== seq) return false;
    const from = slot * DIGEST_BYTES;
    const facts = this.facts;
    for (let i = 0; i < DIGEST_BYTES; i++) into[i] = facts[from + i]!;
    return true;
  }

  put(volume: number, offset: number, seq: number, facts: Uint8Array): void {
    const slot = this.slotOf(volume, offset);
    this.volumes[slot] = volume + 1;
    this.offsets[slot] = offset;
    this.seqs[slot] = seq;
    this.facts.set(facts.subarray(0, DIGEST_BYTES), slot * DIGEST_BYTES);
  }
}
