// The benchmark scripts' command line: `--name value` options with defaults, and bare flags.
export const args = process.argv.slice(2);

/** The value after `name`, or `def` when the option is absent. */
export function option(name: string, def: string): string {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1]! : def;
}

export const KiB = 1024;
export const MiB = 1024 * KiB;
