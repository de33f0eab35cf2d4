// Progress of a transfer, for `fsgw put` and `fsgw get`: a bar redrawn in place on a TTY, plain
// lines (at most one a second) otherwise. Nothing is shown for the first second, so quick
// transfers print only their result.

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
  private readonly startMs: number;
  private lastDrawMs = 0;
  private shown = false;
  private done = 0;
  private total = 0;

  constructor(
    private readonly label: string,
    private readonly out: ProgressOutput,
    private readonly now: () => number = Date.now,
  ) {
    this.startMs = now();
  }

  update(done: number, total: number): void {
    this.done = done;
    this.total = total;
    const t = this.now();
    if (t - this.startMs < SHOW_AFTER_MS) return;
    if (t - this.lastDrawMs < (this.out.isTTY ? REDRAW_MS : LINE_EVERY_MS)) return;
    this.lastDrawMs = t;
    this.draw(t);
  }

  /** Final state: completes the bar (if one was shown) and ends its line. */
  finish(): void {
    if (!this.shown) return;
    this.draw(this.now());
    if (this.out.isTTY) this.out.write("\n");
  }

  private draw(t: number): void {
    this.shown = true;
    const seconds = Math.max(0.001, (t - this.startMs) / 1000);
    const rate = this.done / seconds;
    const eta = rate > 0 ? (this.total - this.done) / rate : Infinity;
    const fraction = this.total > 0 ? Math.min(1, this.done / this.total) : 0;
    const stats = `${formatBytes(this.done)}/${formatBytes(this.total)} ${formatBytes(rate)}/s ETA ${formatDuration(eta)}`;
    const percent = `${(fraction * 100).toFixed(0).padStart(3)}%`;
    if (!this.out.isTTY) {
      this.out.write(`${this.label} ${percent} ${stats}\n`);
      return;
    }
    const columns = this.out.columns ?? 80;
    const barWidth = Math.max(10, columns - this.label.length - stats.length - percent.length - 6);
    const filled = Math.round(barWidth * fraction);
    const bar = "#".repeat(filled) + "-".repeat(barWidth - filled);
    this.out.write(`\r${this.label} [${bar}] ${percent} ${stats}\x1b[K`);
  }
}
