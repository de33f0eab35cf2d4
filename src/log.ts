// Structured one-line logs on stdout: `time=… level=… event=… key=value …` (logfmt).
// Callers on hot paths test `log.enabled(level)` first, so a disabled level costs one comparison.

export type LogLevel = "debug" | "info" | "warn" | "error";
const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type LogFields = Record<string, string | number | boolean | bigint | undefined | null>;

function quote(value: string): string {
  return /^[\w.:/@+-]+$/.test(value) ? value : JSON.stringify(value);
}

export class Logger {
  private minRank: number;

  constructor(
    level: LogLevel,
    private readonly sink: (line: string) => void = (line) => process.stdout.write(line + "\n"),
  ) {
    this.minRank = rank[level];
  }

  setLevel(level: LogLevel): void {
    this.minRank = rank[level];
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
  }
}
