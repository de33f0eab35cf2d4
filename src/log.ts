// Structured one-line logs on stdout: `time=… level=… event=… key=value …` (logfmt), and optionally
// into a file rotated by line count. Callers on hot paths test `log.enabled(level)` first, so a
// disabled level costs one comparison and no formatting.
import { closeSync, existsSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs";

export type LogLevel = "debug" | "info" | "warn" | "error";
const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type LogFields = Record<string, string | number | boolean | bigint | undefined | null>;

/**
 * A value as logfmt shows it: bare when it is plain, else as a JSON string, with the characters
 * JSON leaves raw that a reader would take for a line break or that hide text (U+0085, U+2028,
 * U+2029, and every other control or format character such as U+200B or bidi overrides) escaped as
 * \uXXXX: a key can neither split a log line nor disguise what it holds.
 */
function quote(value: string): string {
  if (/^[\w.:/@+-]+$/.test(value)) return value;
  return JSON.stringify(value).replace(/[\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

/**
 * Lines to stdout, for as long as stdout takes them. A terminal that hung up (EIO) or a pipe
 * whose reader went (EPIPE, e.g. npm killed) ends stdout, not the server: from then on lines go
 * only to the log file, if there is one.
 */
function stdoutSink(): (line: string) => void {
  let lost = false;
  process.stdout.on("error", () => (lost = true));
  return (line) => {
    if (lost) return;
    try {
      process.stdout.write(line + "\n");
    } catch {
      lost = true;
    }
  };
}

export class Logger {
  private readonly minRank: number;
  private file: RotatingFile | null = null;

  constructor(
    level: LogLevel,
    private readonly sink: (line: string) => void = stdoutSink(),
  ) {
    this.minRank = rank[level];
  }

  /** Also writes every line to `path`, rotated after `linesPerFile` lines. */
  toFile(path: string, linesPerFile: number, filesKept: number): void {
    this.file = new RotatingFile(path, linesPerFile, filesKept);
  }

  close(): void {
    this.file?.close();
    this.file = null;
  }

  enabled(level: LogLevel): boolean {
    return rank[level] >= this.minRank;
  }

  debug(event: string, fields?: LogFields): void {
    if (rank.debug >= this.minRank) this.write("debug", event, fields);
  }
  info(event: string, fields?: LogFields): void {
    if (rank.info >= this.minRank) this.write("info", event, fields);
  }
  warn(event: string, fields?: LogFields): void {
    if (rank.warn >= this.minRank) this.write("warn", event, fields);
  }
  error(event: string, fields?: LogFields): void {
    if (rank.error >= this.minRank) this.write("error", event, fields);
  }

  /** A line already formatted by another logger (an event loop's thread), written as is. */
  line(line: string): void {
    this.sink(line);
    this.file?.write(line);
  }

  private write(level: LogLevel, event: string, fields?: LogFields): void {
    let line = `time=${new Date().toISOString()} level=${level} event=${event}`;
    if (fields !== undefined) {
      for (const key in fields) {
        const value = fields[key];
        if (value === undefined || value === null) continue;
        line += ` ${key}=${typeof value === "string" ? quote(value) : String(value)}`;
      }
    }
    this.sink(line);
    this.file?.write(line);
  }
}

/**
 * A log file rotated by line count, like the Go original's: when a line comes to a file holding
 * `linesPerFile` lines, the file is renamed to <file>.1 (older ones shift to .2, .3, ...; beyond `filesKept` they are deleted) and
 * a new file begins. Lines are buffered and written at most every 50 ms, or at 64 KiB, so logging
 * never waits on the disk per line; `close()` writes what is left.
 */
export class RotatingFile {
  private fd: number;
  private linesInFile = 0;
  private pending: string[] = [];
  private pendingBytes = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly path: string,
    private readonly linesPerFile: number,
    private readonly filesKept: number,
  ) {
    this.fd = openSync(path, "a", 0o644);
    this.linesInFile = countLines(path);
  }

  write(line: string): void {
    // Rotated when a line comes to a full file, not when the file fills: the newest lines are
    // always in `path`, never a fresh empty file after the last one.
    if (this.linesInFile >= this.linesPerFile) {
      this.flush();
      this.rotate();
    }
    this.pending.push(line);
    this.pendingBytes += line.length + 1;
    this.linesInFile++;
    if (this.pendingBytes >= 64 * 1024) {
      this.flush();
    } else if (this.timer === null) {
      this.timer = setTimeout(() => this.flush(), 50);
      this.timer.unref();
    }
  }

  flush(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.pending.length === 0) return;
    writeSync(this.fd, this.pending.join("\n") + "\n");
    this.pending = [];
    this.pendingBytes = 0;
  }

  private rotate(): void {
    closeSync(this.fd);
    for (let i = this.filesKept; i >= 1; i--) {
      const from = i === 1 ? this.path : `${this.path}.${i - 1}`;
      if (!existsSync(from)) continue;
      if (i === this.filesKept && existsSync(`${this.path}.${i}`)) unlinkSync(`${this.path}.${i}`);
      renameSync(from, `${this.path}.${i}`);
    }
    this.fd = openSync(this.path, "a", 0o644);
    this.linesInFile = 0;
  }

  close(): void {
    this.flush();
    closeSync(this.fd);
  }
}

function countLines(path: string): number {
  try {
    const text = readFileSync(path, "utf8");
    let n = 0;
    for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) n++;
    return n;
  } catch {
    return 0;
  }
}
