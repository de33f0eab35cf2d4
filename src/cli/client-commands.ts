// `fsgw put | get | stat | rm | bench`: the client side of the command line.
// Exit codes: 0 ok, 1 the server said no, 2 usage, 3 connection failure (unreachable, dropped,
// timed out, or the server broke the protocol), 4 a local file problem (missing, a directory, not
// readable or writable, would be overwritten). With --json a failure is one JSON object on stdout:
// {"op", "key", "error", "exitCode"}; the same text goes to stderr either way.
import { basename, join } from "node:path";
import { stat } from "node:fs/promises";
import { existsSync, readFileSync, statSync } from "node:fs";
import { checkKey } from "../storage/keys";
import { connect, ConnectionError, DigestMismatchError, ProtocolError, ServerError, TimeoutError, type ByteRange, type ClientTls, type FsgwClient } from "../client/client";
import { loadOps, runLoadThreaded, type LoadOp, type LoadResult } from "../client/load";
import { intFlag, parseArgs, parseSize, UsageError, type FlagSpec, type Parsed } from "./args";
import { formatBytes, Progress, type ProgressOutput } from "./progress";
import { EXIT_BROKEN_PIPE, StdoutClosedError } from "./stdout-closed";

export const EXIT_OK = 0;
export const EXIT_REFUSED = 1;
export const EXIT_USAGE = 2;
export const EXIT_CONNECTION = 3;
export const EXIT_LOCAL = 4;

/** A problem with a file on this machine (not the server's). */
class LocalFileError extends Error {}

/** Node's fs errors carry an errno code and the syscall: a local file problem, said plainly. */
function localFileError(e: unknown, path: string): LocalFileError | null {
  const err = e as { code?: unknown; syscall?: unknown };
  if (typeof err.code !== "string" || typeof err.syscall !== "string") return null;
  const why: Record<string, string> = {
    ENOENT: "no such file or directory",
    EISDIR: "is a directory",
    ENOTDIR: "a part of the path is not a directory",
    EACCES: "permission denied",
    EPERM: "permission denied",
    ENOSPC: "no space left on this machine's disk",
    EROFS: "read-only file system",
  };
  return new LocalFileError(`${path}: ${why[err.code] ?? err.code}`);
}

/** Where a command writes: real stdout/stderr in the CLI, buffers in tests. */
export interface Io {
  stdout: (text: string) => void;
  stderr: ProgressOutput;
  /** Raw bytes for `get -o -`. */
  stdoutBytes: (bytes: Uint8Array) => void | Promise<void>;
}

/**
 * How a command with subcommands (`fsgw token`, `fsgw volumes`) fails: its line on stderr, and with
 * --json one object on stdout (as every command does); returns the exit code.
 */
export function subcommandFailure(io: Io, command: string, sub: string | undefined, json: boolean): (message: string, exitCode: number, hint?: string) => number {
  return (message, exitCode, hint = "") => {
    io.stderr.write(`fsgw ${command}: ${message}\n${hint}`);
    if (json) io.stdout(JSON.stringify({ op: `${command} ${sub ?? ""}`.trim(), error: message, exitCode }) + "\n");
    return exitCode;
  };
}

/** A command with subcommands given none (usage on stderr) or --help (on stdout): its exit code; else null. */
export function subcommandHelp(io: Io, help: string, sub: string | undefined): number | null {
  if (sub === undefined) {
    io.stderr.write(help + "\n");
    return EXIT_USAGE;
  }
  if (sub === "--help" || sub === "-h") {
    io.stdout(help + "\n");
    return EXIT_OK;
  }
  return null;
}

const common: Record<string, FlagSpec> = {
  "--host": { takesValue: true },
  "--port": { takesValue: true },
  "--timeout-ms": { takesValue: true },
  "--json": { takesValue: false },
  "--help": { alias: "-h", takesValue: false },
  "--tls": { takesValue: false },
  "--ca": { takesValue: true },
  "--cert": { takesValue: true },
  "--cert-key": { takesValue: true },
  "--token": { takesValue: true },
};

const commonHelp = `common options:
  --host <host>        server address (default 127.0.0.1)
  --port <port>        server port (default 9999)
  --timeout-ms <ms>    fail a call that makes no progress this long (default 30000)
  --json               print one JSON object instead of text
  --tls                speak TLS (the server's certificate must be signed by a CA this machine
                       trusts, or by --ca)
  --ca <file>          PEM CA certificate that signs the server's certificate (implies --tls)
  --cert <file>        PEM client certificate, for a server that requires one (mutual TLS)
  --cert-key <file>    the private key of --cert
  --token <token>      access token for a server with auth "token" (default: $FSGW_TOKEN)
  -h, --help           this help`;

/** --tls, --ca, --cert, --cert-key: the TLS the client speaks, or undefined for plain TCP. */
function tlsFrom(parsed: Parsed): ClientTls | undefined {
  const ca = parsed.flags.get("--ca");
  const cert = parsed.flags.get("--cert");
  const key = parsed.flags.get("--cert-key");
  if ((cert === undefined) !== (key === undefined)) throw new UsageError("--cert and --cert-key go together");
  if (!parsed.flags.has("--tls") && ca === undefined && cert === undefined) return undefined;
  const read = (path: string) => {
    try {
      return readFileSync(path, "utf8");
    } catch (e) {
      throw localFileError(e, path) ?? e;
    }
  };
  return { ca: ca === undefined ? undefined : read(ca), cert: cert === undefined ? undefined : read(cert), key: key === undefined ? undefined : read(key) };
}

/** --token, else $FSGW_TOKEN, else none. */
function tokenFrom(parsed: Parsed): string | undefined {
  const token = parsed.flags.get("--token") ?? process.env.FSGW_TOKEN;
  return token === undefined || token === "" ? undefined : token;
}

export const helpTexts: Record<string, string> = {
  put: `usage: fsgw put <file> [--key <key>] [--no-digest] [options]
       fsgw put - --key <key> [options]

Uploads a file (streamed from disk; any size), or with - what arrives on stdin (spooled to a
temporary file first when it is a pipe: the protocol sends the size before the body). The key
defaults to the file's name. If the connection drops, an upload of over 1 MiB resumes where the
server's copy ends (up to 5 times); if the server shuts down under it, it is sent again once a
server listens (within --timeout-ms). The file's SHA-256 goes with it (the file is read once to
hash it), and the server stores the file only if the bytes it received hash to the same;
--no-digest sends none (the server still records one). A transfer longer than a second shows
progress on stderr (with --json only if --progress is given), hashing as its own phase.

examples:
  fsgw put ./report.pdf
  fsgw put ./backup.tar --key backups/2026-11-26.tar --port 7000   # '/' organises keys by prefix
  fsgw put ./photo.jpg --key photos/1.jpg --tls --ca ca.pem --token "$(cat photos.token)"
  fsgw put ./big.iso --key big.iso --host 10.0.0.5
  tar c ./photos | fsgw put - --key backups/photos.tar

${commonHelp}`,
  get: `usage: fsgw get <key> [-o <file>] [--range FIRST-LAST] [--no-verify] [options]

Downloads a file. It is written to <file> (default: the key's last segment, in this directory;
a directory: the key's last segment in it) through a temporary file that is renamed into place
only when complete; -o - writes the bytes to stdout. An existing <file> is not replaced unless
--force (-f) is given. --range downloads only bytes FIRST to LAST (both included, as in HTTP;
FIRST- for the rest of the file), clamped at the end of the file; a FIRST past the end is an
error. A whole file is checked against the SHA-256 the server recorded for it: a mismatch fails
(exit 1) and leaves <file> untouched (--no-verify skips the check). Progress goes to stderr
(with --json only if --progress is given).

examples:
  fsgw get report.pdf
  fsgw get report.pdf -o /tmp/copy.pdf
  fsgw get photos/2026/cat.jpg -o ~/Pictures    # into ~/Pictures/cat.jpg
  fsgw get backups/2026-11-26.tar                # into ./2026-11-26.tar
  fsgw get big.iso --range 1000-1999 -o part.bin # 1000 bytes
  fsgw get notes.txt -o - | less

${commonHelp}`,
  stat: `usage: fsgw stat <key> [options]

Prints a stored file's size, type and SHA-256 (when the server recorded one).

examples:
  fsgw stat report.pdf
  fsgw stat report.pdf --json

${commonHelp}`,
  ls: `usage: fsgw ls [<prefix>] [-d <delimiter>] [-l] [--limit <n>] [options]

Lists the keys that start with <prefix> (default: every key), in byte order, as S3 does. With
-d (usually /), keys holding the delimiter after the prefix are shown once as their common
prefix, ending with it, like directories. -l adds each file's size (binary units) and time, as
ls -l does; --json prints one JSON object per line ({"key", "size", "mtime", "sha256"} or
{"prefix"}). --limit stops after <n> lines. With a token, the prefix must lie within its own.

examples:
  fsgw ls
  fsgw ls photos/2026/ -d / -l
  fsgw ls backups/ --json --limit 100

${commonHelp}`,
  rm: `usage: fsgw rm <key> [options]

Deletes a stored file.

examples:
  fsgw rm report.pdf

${commonHelp}`,
  bench: `usage: fsgw bench <bench|upload|download|exist|delete|clean> -c <connections> -n <count> [-s <size>] [options]

The load generator, compatible with the Go original's: <connections> connections run <count>
exchanges on keys bench_mark_file_<i> (i = 0..count-1), uploading in-memory bodies of <size>
bytes (so the client's own disk is not measured). Reports total time, ops/s, MiB/s, latency
percentiles, errors by text and the client's own CPU time. 'clean' deletes the bench files.

  -c, --connections <n>   concurrent connections (default 100)
  -n, --count <n>         exchanges in all (default 10000)
  -s, --size <size>       upload body size: 5k, 50k, 1m, 64m, or bytes (default 5k)
  --key-prefix <prefix>   key prefix (default bench_mark_file_)
  --keys <n>              cycle over keys 0..n-1 (key i % n), so that <count> downloads or exists
                          serve n prepared files many times on the same connections
  --write-chunk <size>    write upload bodies in pieces of this size, each awaited, as the Go
                          original's client does with 4096 (default 0: the body in one write)
  -t, --threads <n>       generator threads, each with its share of the connections (default 1;
                          more for a server on a machine with more cores than the generator's one)

examples:
  fsgw bench upload -c 500 -n 20000 -s 5k
  fsgw bench download -c 500 -n 20000
  fsgw bench download -c 500 -n 200000 --keys 20000
  fsgw bench bench -c 50 -n 200000 --json
  fsgw bench clean -n 20000

${commonHelp}`,
};

const timeoutMs = (parsed: Parsed) => intFlag(parsed, "--timeout-ms", 30_000, 1, 86_400_000);

function clientFrom(parsed: Parsed): FsgwClient {
  return connect({
    host: parsed.flags.get("--host") ?? "127.0.0.1",
    port: intFlag(parsed, "--port", 9999, 1, 65535),
    timeoutMs: timeoutMs(parsed),
    poolSize: 1,
    tls: tlsFrom(parsed),
    token: tokenFrom(parsed),
  });
}

/** `--range A-B` (bytes A to B, both included, as in HTTP) or `A-` (from A to the end). */
function rangeFrom(text: string | undefined): ByteRange | undefined {
  if (text === undefined) return undefined;
  const m = /^(\d+)-(\d*)$/.exec(text.trim());
  if (m === null) throw new UsageError(`bad --range ${JSON.stringify(text)}: use FIRST-LAST (bytes, both included) or FIRST- (to the end), e.g. 1000-1999`);
  const first = Number(m[1]);
  const last = m[2] === "" ? -1 : Number(m[2]);
  if (!Number.isSafeInteger(first) || (last !== -1 && (!Number.isSafeInteger(last) || last < first))) throw new UsageError(`bad --range ${JSON.stringify(text)}: LAST must not be below FIRST`);
  return { offset: first, length: last === -1 ? 0 : last - first + 1 };
}

function one(parsed: Parsed, what: string): string {
  if (parsed.positionals.length !== 1) throw new UsageError(`expected exactly one ${what}`);
  return parsed.positionals[0]!;
}

/** A key the server would refuse is a usage error this side can see (exit 2, the server's words). */
function validKey(key: string): string {
  const checked = checkKey(key);
  if (typeof checked === "string") throw new UsageError(`${checked}: ${JSON.stringify(key)}`);
  return key;
}

function rate(bytes: number, ms: number): string {
  return `${formatBytes(bytes / Math.max(0.001, ms / 1000))}/s`;
}

/** Runs a client command; returns its exit code. Errors become messages and codes, never traces. */
/** Flags each command takes besides the common ones. */
const commandFlags: Record<string, Record<string, FlagSpec>> = {
  put: { "--key": { takesValue: true }, "--no-digest": { takesValue: false }, "--progress": { takesValue: false } },
  get: { "--output": { alias: "-o", takesValue: true }, "--force": { alias: "-f", takesValue: false }, "--range": { takesValue: true }, "--no-verify": { takesValue: false }, "--progress": { takesValue: false } },
  stat: {},
  ls: { "--delimiter": { alias: "-d", takesValue: true }, "--long": { alias: "-l", takesValue: false }, "--limit": { takesValue: true } },
  rm: {},
  bench: {
    "--connections": { alias: "-c", takesValue: true },
    "--count": { alias: "-n", takesValue: true },
    "--size": { alias: "-s", takesValue: true },
    "--key-prefix": { takesValue: true },
    "--keys": { takesValue: true },
    "--write-chunk": { takesValue: true },
    "--threads": { alias: "-t", takesValue: true },
  },
};

/** What a command prints on success: `text`, or with --json the `value` as one JSON line. */
type Print = (text: string, value: unknown) => void;

/** What a failing command was working on, for its JSON error object. */
interface Context {
  key: string | null;
  /** The local file the command reads or writes: its fs errors are local problems. */
  localPath: string | null;
}

/** The commands that hold one client connection; it is closed whatever happens. */
const clientCommands: Record<string, (parsed: Parsed, client: () => FsgwClient, print: Print, io: Io, json: boolean, context: Context) => Promise<void>> = {
  async put(parsed, client, print, io, _json, context) {
    const file = one(parsed, "file");
    if (file === "-") return putStdin(parsed, client, print, io, context);
    const key = validKey(parsed.flags.get("--key") ?? basename(file));
    context.key = key;
    context.localPath = file;
    const info = await stat(file).catch((e) => {
      throw localFileError(e, file) ?? e;
    });
    if (!info.isFile()) throw new LocalFileError(`${file}: is ${info.isDirectory() ? "a directory" : "not a regular file"} (put uploads one file)`);
    const size = info.size;
    const progress = progressFor(parsed, `put ${key}`, io);
    const t0 = performance.now();
    await client().upload(key, file, {
      onProgress: (d, t) => progress.update(d, t),
      onHashProgress: (d, t) => progress.hashing(d, t),
      digest: parsed.flags.has("--no-digest") ? false : undefined,
      // A dropped connection is resumed where the server's copy ends, and said so.
      onResume: (offset, attempt) =>
        io.stderr.write(
          `${io.stderr.isTTY ? "\n" : ""}put ${key}: connection lost; ${offset === 0 ? "the server kept nothing, sending again from the start" : `resumed at ${formatBytes(offset)} of ${formatBytes(size)}`} (attempt ${attempt + 1})\n`,
        ),
      onServerShutdown: () =>
        io.stderr.write(`${io.stderr.isTTY ? "\n" : ""}put ${key}: upload interrupted by server shutdown (it kept nothing); sending it again once a server listens (waiting up to ${timeoutMs(parsed) / 1000} s)\n`),
    });
    progress.finish();
    const ms = performance.now() - t0;
    print(`put ${file} as ${key}: ${formatBytes(size)} in ${ms.toFixed(0)} ms (${rate(size, ms)})`, { op: "put", key, size, ms: Math.round(ms) });
  },
  async get(parsed, client, print, io, json, context) {
    const key = validKey(one(parsed, "key"));
    context.key = key;
    // Default: the key's last segment in this directory (a key "photos/2026/cat.jpg" -> ./cat.jpg);
    // a directory, like cp's and curl -O's, means into it under that name.
    const lastSegment = key.slice(key.lastIndexOf("/") + 1);
    const given = parsed.flags.get("--output");
    const output = given === undefined ? `./${lastSegment}` : given !== "-" && isDirectory(given) ? join(given, lastSegment) : given;
    const range = rangeFrom(parsed.flags.get("--range"));
    const verify = !parsed.flags.has("--no-verify");
    const t0 = performance.now();
    if (output !== "-") {
      context.localPath = output;
      if (existsSync(output) && !parsed.flags.has("--force")) throw new LocalFileError(`${output}: exists; add --force to replace it (or -o another path)`);
    }
    if (output === "-") {
      // The body goes to stdout, so the summary (with --json) goes to stderr.
      const size = await client().download(key, new WritableStream<Uint8Array>({ write: (part) => io.stdoutBytes(part) }), { range, verify });
      const ms = performance.now() - t0;
      if (json) io.stderr.write(JSON.stringify({ op: "get", key, size, ms: Math.round(ms) }) + "\n");
      // A person at a terminal gets the summary a file download prints; a script's stderr stays quiet.
      else if (io.stderr.isTTY) io.stderr.write(`got ${key} to stdout: ${formatBytes(size)} in ${ms.toFixed(0)} ms (${rate(size, ms)})\n`);
      return;
    }
    const progress = progressFor(parsed, `get ${key}`, io);
    const size = await client().download(key, output, { onProgress: (d, t) => progress.update(d, t), range, verify });
    progress.finish();
    const ms = performance.now() - t0;
    print(`got ${key} into ${output}: ${formatBytes(size)} in ${ms.toFixed(0)} ms (${rate(size, ms)})`, { op: "get", key, output, size, ms: Math.round(ms) });
  },
  async stat(parsed, client, print, _io, _json, context) {
    const key = validKey(one(parsed, "key"));
    context.key = key;
    const st = await client().exist(key);
    print(`${key}: ${st.type}, ${st.size} bytes (${formatBytes(st.size)})${st.digest === undefined ? "" : `, sha256 ${st.digest}`}`, { op: "stat", key, ...st });
  },
  async ls(parsed, client, print, _io, _json, context) {
    if (parsed.positionals.length > 1) throw new UsageError("expected at most one prefix");
    const prefix = parsed.positionals[0] ?? "";
    context.key = prefix;
    const delimiter = parsed.flags.get("--delimiter") ?? "";
    const long = parsed.flags.has("--long");
    const limit = intFlag(parsed, "--limit", Number.MAX_SAFE_INTEGER, 1, Number.MAX_SAFE_INTEGER);
    let shown = 0;
    for await (const page of client().list({ prefix, delimiter })) {
      const lines: [string, unknown][] = [
        ...page.entries.map((e): [string, unknown] => [
          long ? `${formatBytes(e.size).padStart(10)}  ${e.mtime.toISOString().slice(0, 16).replace("T", " ")}  ${e.key}` : e.key,
          { key: e.key, size: e.size, mtime: e.mtime.toISOString(), ...(e.sha256 === undefined ? {} : { sha256: e.sha256 }) },
        ]),
        ...page.prefixes.map((p): [string, unknown] => [long ? `${"PRE".padStart(10)}  ${" ".repeat(16)}  ${p}` : p, { prefix: p }]),
      ];
      for (const [text, value] of lines) {
        if (shown === limit) return;
        print(text, value);
        shown++;
      }
    }
  },
  async rm(parsed, client, print, _io, _json, context) {
    const key = validKey(one(parsed, "key"));
    context.key = key;
    await client().delete(key);
    print(`removed ${key}`, { op: "rm", key });
  },
};

/** Progress on stderr; with --json none unless --progress asks for it (a script reads the JSON). */
function progressFor(parsed: Parsed, label: string, io: Io): Progress {
  const quiet = parsed.flags.has("--json") && !parsed.flags.has("--progress");
  return new Progress(label, quiet ? { isTTY: false, write: () => {} } : io.stderr);
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * `fsgw put - --key K`: the body from stdin, whose size the protocol needs first. A regular file
 * redirected in (`< file`) has one; a pipe is spooled to a temporary file by the client (memory
 * stays bounded) and sent from there.
 */
async function putStdin(parsed: Parsed, client: () => FsgwClient, print: Print, io: Io, context: Context): Promise<void> {
  const named = parsed.flags.get("--key");
  if (named === undefined) throw new UsageError("put - (stdin) needs --key: there is no file name to take it from");
  const key = validKey(named);
  context.key = key;
  const t0 = performance.now();
  let size = 0;
  const counted = Bun.stdin.stream().pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, out) {
        size += chunk.length;
        out.enqueue(chunk);
      },
    }),
  );
  const progress = progressFor(parsed, `put ${key}`, io);
  await client().upload(key, counted, { onProgress: (d, t) => progress.update(d, t), digest: parsed.flags.has("--no-digest") ? false : undefined });
  progress.finish();
  const ms = performance.now() - t0;
  print(`put stdin as ${key}: ${formatBytes(size)} in ${ms.toFixed(0)} ms (${rate(size, ms)})`, { op: "put", key, size, ms: Math.round(ms) });
}

export async function runClientCommand(command: string, argv: string[], io: Io): Promise<number> {
  const flags = commandFlags[command];
  if (flags === undefined) throw new Error(`not a client command: ${command}`);
  let parsed: Parsed;
  try {
    parsed = parseArgs(argv, { ...common, ...flags });
  } catch (e) {
    if (e instanceof UsageError) return usage(command, e.message, io, argv.includes("--json"));
    throw e;
  }
  if (parsed.flags.has("--help")) {
    io.stdout(helpTexts[command]! + "\n");
    return EXIT_OK;
  }
  const json = parsed.flags.has("--json");
  const print: Print = (text, value) => io.stdout((json ? JSON.stringify(value) : text) + "\n");
  let client: FsgwClient | null = null;
  const connect = () => (client ??= clientFrom(parsed));
  const context: Context = { key: null, localPath: null };
  try {
    if (command === "bench") return await bench(parsed, json, io);
    await clientCommands[command]!(parsed, connect, print, io, json, context);
    return EXIT_OK;
  } catch (e) {
    // A closed stdout pipe ends the command silently, as it ends `cat`.
    if (e instanceof StdoutClosedError) return EXIT_BROKEN_PIPE;
    const [exitCode, message] = classify(e, context);
    if (exitCode === EXIT_USAGE) return usage(command, message, io, json);
    io.stderr.write(`fsgw ${command}: ${message}\n`);
    if (json) io.stdout(JSON.stringify({ op: command, key: context.key, error: message, exitCode }) + "\n");
    return exitCode;
  } finally {
    (client as FsgwClient | null)?.close();
  }
}

/** A command's failure: the exit code that says what kind, and one line a person can act on. */
function classify(e: unknown, context: Context): [number, string] {
  if (e instanceof UsageError) return [EXIT_USAGE, e.message];
  if (e instanceof LocalFileError) return [EXIT_LOCAL, e.message];
  if (e instanceof ServerError) return [EXIT_REFUSED, `the server said: ${e.text}`];
  if (e instanceof DigestMismatchError) {
    return [EXIT_REFUSED, `${e.message}; ${context.localPath === null ? "the bytes already written to stdout are not the file" : `${context.localPath} was not written`}`];
  }
  if (e instanceof ConnectionError || e instanceof TimeoutError || e instanceof ProtocolError) return [EXIT_CONNECTION, e.message];
  const local = context.localPath === null ? null : localFileError(e, context.localPath);
  if (local !== null) return [EXIT_LOCAL, local.message];
  return [EXIT_REFUSED, String((e as Error)?.message ?? e)];
}

function usage(command: string, message: string, io: Io, json = false): number {
  if (json) io.stdout(JSON.stringify({ op: command, key: null, error: message, exitCode: EXIT_USAGE }) + "\n");
  io.stderr.write(`fsgw ${command}: ${message}\nRun 'fsgw ${command} --help' for usage.\n`);
  return EXIT_USAGE;
}

async function bench(parsed: Parsed, json: boolean, io: Io): Promise<number> {
  const opText = one(parsed, "operation (bench, upload, download, exist, delete or clean)");
  if (opText !== "clean" && !(loadOps as readonly string[]).includes(opText)) {
    throw new UsageError(`unknown bench operation ${JSON.stringify(opText)}: use bench, upload, download, exist, delete or clean`);
  }
  const op: LoadOp = opText === "clean" ? "delete" : (opText as LoadOp);
  const result = await runLoadThreaded(
    {
      host: parsed.flags.get("--host") ?? "127.0.0.1",
      port: intFlag(parsed, "--port", 9999, 1, 65535),
      op,
      connections: intFlag(parsed, "--connections", 100, 1, 100_000),
      count: intFlag(parsed, "--count", 10_000, 1, 1_000_000_000),
      size: parseSize(parsed.flags.get("--size") ?? "5k"),
      keyPrefix: parsed.flags.get("--key-prefix") ?? "bench_mark_file_",
      keys: parsed.flags.has("--keys") ? intFlag(parsed, "--keys", 1, 1, 1_000_000_000) : undefined,
      writeChunk: parsed.flags.has("--write-chunk") ? parseSize(parsed.flags.get("--write-chunk")!) : 0,
      tls: tlsFrom(parsed),
      token: tokenFrom(parsed),
    },
    intFlag(parsed, "--threads", 1, 1, 64),
  );
  const report = { ...result, op: opText };
  if (json) io.stdout(JSON.stringify(report) + "\n");
  else io.stdout(formatLoad(report) + "\n");
  // Nothing got through at all: most likely the server is not there.
  if (result.ok === 0 && Object.keys(result.errors).some((e) => /connect|closed/i.test(e))) return EXIT_CONNECTION;
  if (opText === "clean") return EXIT_OK; // "no such key" is what clean expects for files already gone
  return Object.keys(result.errors).length > 0 ? EXIT_REFUSED : EXIT_OK;
}

export function formatLoad(r: LoadResult | (Omit<LoadResult, "op"> & { op: string })): string {
  const errors = Object.entries(r.errors);
  const cores = r.ms > 0 ? (100 * r.clientCpuMs) / r.ms : 0;
  const lat = r.latencyMs;
  return [
    `${r.op}: ${r.ok} of ${r.count} ok over ${r.connections} connection${r.connections === 1 ? "" : "s"} in ${r.ms.toFixed(1)} ms: ${r.opsPerSec.toFixed(0)} ops/s` +
      (r.mibPerSec === undefined ? "" : `, ${r.mibPerSec.toFixed(2)} MiB/s`),
    lat === undefined ? "latency: none measured (no exchange succeeded)" : `latency ms: p50 ${lat.p50.toFixed(2)}  p90 ${lat.p90.toFixed(2)}  p99 ${lat.p99.toFixed(2)}  max ${lat.max.toFixed(2)}`,
    `errors: ${errors.length === 0 ? "none" : errors.map(([text, n]) => `${n} × ${text}`).join("; ")}`,
    `client CPU: ${r.clientCpuMs.toFixed(0)} ms (${cores.toFixed(0)}% of one core)`,
  ].join("\n");
}
