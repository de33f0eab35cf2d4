// Progress of a transfer, for `fsgw put` and `fsgw get`: a bar redrawn in place on a TTY, plain
// lines (at most one a second) otherwise. Nothing is shown for the first second, so quick
// transfers print only their result. A put hashes its file before sending it: that phase is shown
// as such ("(hashing)"), and the transfer's rate and ETA count from its end.

export interface ProgressOutput {
  isTTY: boolean;
  columns?: number;
  write(text: string): void;
}

/** Transfers shorter than this print no progress. FSGW_PROGRESS_AFTER_MS overrides it (tests). */
const SHOW_AFTER_MS = Number(process.env.FSGW_PROGRESS_AFTER_MS ?? 1000);
const REDRAW_MS = 100;
const LINE_EVERY_MS = 1000;

export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${Math.round(n)} B` : `${v.toFixed(1)} ${units[i]}`;
}

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "--:--";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

export class Progress {
  /** When the command began: nothing is shown for its first SHOW_AFTER_MS. */
  private readonly startMs: number;
  /** When the transfer began (after hashing, if the file was hashed first): rates count from here. */
  private transferStartMs: number;
  private lastDrawMs = 0;
  private shown = false;
  private done = 0;
  private total = 0;
  /** Hashing the file before the transfer (its own phase: reading, not sending). */
  private hashingNow = false;

  constructor(
    private readonly label: string,
    private readonly out: ProgressOutput,
    private readonly now: () => number = Date.now,
  ) {
    this.startMs = now();
    this.transferStartMs = this.startMs;
  }

  /** The file is being hashed (before the transfer): shown as "hashing"; its time is not the transfer's. */
  hashing(done: number, total: number): void {
    this.hashingNow = done < total;
    this.done = done;
    this.total = total;
    const t = this.now();
    if (!this.hashingNow) {
      // Hashed: the transfer starts now, and its bar from zero.
      this.transferStartMs = t;
      this.done = 0;
      return;
    }
    this.maybeDraw(t);
  }

  update(done: number, total: number): void {
    this.hashingNow = false;
    this.done = done;
    this.total = total;
    this.maybeDraw(this.now());
  }

  /** Final state: completes the bar (if one was shown) and ends its line. */
  finish(): void {
    if (!this.shown) return;
    this.draw(this.now());
    if (this.out.isTTY) this.out.write("\n");
  }

  private maybeDraw(t: number): void {
    if (t - this.startMs < SHOW_AFTER_MS) return;
    if (t - this.lastDrawMs < (this.out.isTTY ? REDRAW_MS : LINE_EVERY_MS)) return;
    this.lastDrawMs = t;
    this.draw(t);
  }

  private draw(t: number): void {
    this.shown = true;
    const seconds = Math.max(0.001, (t - (this.hashingNow ? this.startMs : this.transferStartMs)) / 1000);
    const rate = this.done / seconds;
    const eta = rate > 0 ? (this.total - this.done) / rate : Infinity;
    const fraction = this.total > 0 ? Math.min(1, this.done / this.total) : 0;
    const stats = `${formatBytes(this.done)}/${formatBytes(this.total)} ${formatBytes(rate)}/s ETA ${formatDuration(eta)}`;
    const percent = `${(fraction * 100).toFixed(0).padStart(3)}%`;
    const label = this.hashingNow ? `${this.label} (hashing)` : this.label;
    if (!this.out.isTTY) {
      this.out.write(`${label} ${percent} ${stats}\n`);
      return;
    }
    const columns = this.out.columns ?? 80;
    const barWidth = Math.max(10, columns - label.length - stats.length - percent.length - 6);
    const filled = Math.round(barWidth * fraction);
    const bar = (this.hashingNow ? "=" : "#").repeat(filled) + "-".repeat(barWidth - filled);
    this.out.write(`\r${label} [${bar}] ${percent} ${stats}\x1b[K`);
  }
}
