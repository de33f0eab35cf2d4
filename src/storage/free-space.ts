// The file store's floor of free space. A volume's record is deleted by appending a tombstone, and
// a compaction copies live records before it frees a volume: both need room on a disk that new
// bodies may have filled. So new bodies (records and files) are refused as "disk full" while the
// data directory's file system would keep less than `floorBytes` free, and what is below the floor
// stays for deletes and compaction (SeaweedFS keeps a minimum free space for the same reason).
import { statfsSync } from "node:fs";

/** How long a measure of the free space is trusted, less what was taken since (then statfs again). */
const FREE_SPACE_FRESH_MS = 100;

export class FreeSpace {
  /** Free bytes at the last statfs, less what was taken since. */
  private free = 0;
  private measuredAt = -Infinity;

  constructor(
    private readonly dir: string,
    /** Bytes kept free for deletes and compaction (0: no floor). */
    readonly floorBytes: number,
  ) {}

  /**
   * Takes `bytes` of the free space for a new body: false (nothing taken) when that would leave less
   * than the floor. A refusal measures again first, so room made by a delete is seen at once.
   */
  take(bytes: number): boolean {
    if (this.floorBytes === 0) return true;
    const now = performance.now();
    if (now - this.measuredAt > FREE_SPACE_FRESH_MS) this.measure(now);
    if (this.free - bytes < this.floorBytes) {
      this.measure(now);
      if (this.free - bytes < this.floorBytes) return false;
    }
    this.free -= bytes;
    return true;
  }

  private measure(now: number): void {
    try {
      const s = statfsSync(this.dir);
      this.free = s.bavail * s.bsize;
    } catch {
      this.free = Infinity; // unmeasurable: the kernel's own ENOSPC still answers
    }
    this.measuredAt = now;
  }
}
