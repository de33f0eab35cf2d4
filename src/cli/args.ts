// A small, strict argument parser for the client commands: known flags only, a value where one is
// expected, positionals counted. Usage errors exit with code 2.

export class UsageError extends Error {}

export interface FlagSpec {
  /** Long name, e.g. "--port"; `alias` is a short one such as "-o". */
  alias?: string;
  takesValue: boolean;
}

export interface Parsed {
  flags: Map<string, string>;
  positionals: string[];
}

export function parseArgs(argv: string[], specs: Record<string, FlagSpec>): Parsed {
  const byName = new Map<string, [string, FlagSpec]>();
  for (const [name, spec] of Object.entries(specs)) {
    byName.set(name, [name, spec]);
    if (spec.alias) byName.set(spec.alias, [name, spec]);
  }
  const flags = new Map<string, string>();
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "-" || !arg.startsWith("-")) {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const raw = eq > 0 ? arg.slice(0, eq) : arg;
    const found = byName.get(raw);
    if (found === undefined) throw new UsageError(`unknown option ${raw}`);
    const [name, spec] = found;
    if (!spec.takesValue) {
      if (eq > 0) throw new UsageError(`${raw} takes no value`);
      flags.set(name, "true");
    } else if (eq > 0) {
      flags.set(name, arg.slice(eq + 1));
    } else {
      const value = argv[++i];
      if (value === undefined) throw new UsageError(`${raw} needs a value`);
      flags.set(name, value);
    }
  }
  return { flags, positionals };
}

export function intFlag(parsed: Parsed, name: string, def: number, min: number, max: number): number {
  const text = parsed.flags.get(name);
  if (text === undefined) return def;
  if (!/^\d+$/.test(text)) throw new UsageError(`${name} must be a whole number, got ${JSON.stringify(text)}`);
  const n = Number(text);
  if (n < min || n > max) throw new UsageError(`${name} must be in ${min}..${max}, got ${n}`);
  return n;
}

/** `5k` -> 5120, `1m` -> 1048576, `64m`, `2g`, or plain bytes. Units are binary (KiB, MiB, GiB). */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)([kmg]?)(i?b)?$/i.exec(text.trim());
  if (!m) throw new UsageError(`bad size ${JSON.stringify(text)} (examples: 5k, 50k, 1m, 64m)`);
  const unit = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as "" | "k" | "m" | "g"];
  const bytes = Math.round(Number(m[1]) * unit);
  if (bytes < 1) throw new UsageError(`size must be at least 1 byte, got ${JSON.stringify(text)}`);
  return bytes;
}
