#!/usr/bin/env bun
// The `fsgw` command: `serve` runs the gateway; put, get, stat, rm and bench are its client.
// Each command loads only its own code (a dynamic import): `serve` does not load the client and
// its load generator, and a client command does not load the server.
import type { Io } from "./cli/client-commands";
import { StdoutClosedError } from "./cli/stdout-closed";

/** Bad usage (the client commands' exit code for it). */
const EXIT_USAGE = 2;

const usage = `usage: fsgw <command> [options]

commands:
  serve     run the file gateway (what \`npm start\` and \`bun start\` run)
  put       upload a file:          fsgw put ./report.pdf [--key report.pdf]
  get       download a file:        fsgw get report.pdf [-o ./copy.pdf]
  stat      size and type of a key: fsgw stat report.pdf
  rm        delete a key:           fsgw rm report.pdf
  ls        list keys by prefix:    fsgw ls photos/ -d / -l
  bench     load generator:         fsgw bench upload -c 500 -n 20000 -s 5k
  token     access tokens:          fsgw token create --ops read --prefix photos- --ttl 1h
  volumes   a data directory's volumes: fsgw volumes stats|verify|compact --data-dir ./data

Client commands take --host and --port (default 127.0.0.1:9999), and --tls, --ca, --token
for a server with TLS and tokens.
Run \`fsgw <command> --help\` for a command's options and examples; \`fsgw --version\` for the version.`;

/**
 * The process's own streams. stdout may be a pipe whose reader goes away (`fsgw get k -o - | head`):
 * a write then fails with EPIPE (Bun ignores SIGPIPE), which is turned into StdoutClosedError so
 * that the command stops its transfer, closes its connection and exits as `cat` would.
 */
function processIo(): Io {
  let closed = false;
  let waiting: { resolve: () => void; reject: (e: Error) => void } | null = null;
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    // Any error of stdout ends the output; only a gone reader is not worth a message.
    closed = true;
    const error = e.code === "EPIPE" ? new StdoutClosedError() : e;
    waiting?.reject(error);
    waiting = null;
  });
  return {
    stdout: (text) => void process.stdout.write(text),
    stderr: { isTTY: Boolean(process.stderr.isTTY), columns: process.stderr.columns, write: (text) => void process.stderr.write(text) },
    stdoutBytes: (bytes) => {
      if (closed) throw new StdoutClosedError();
      let written: boolean;
      try {
        written = process.stdout.write(bytes);
      } catch (e) {
        closed = true;
        throw (e as NodeJS.ErrnoException).code === "EPIPE" ? new StdoutClosedError() : e;
      }
      if (written) return undefined;
      return new Promise<void>((resolve, reject) => {
        waiting = { resolve, reject };
        process.stdout.once("drain", () => {
          waiting = null;
          resolve();
        });
      });
    },
  };
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "serve":
      return (await import("./serve")).serve(rest);
    case "put":
    case "get":
    case "stat":
    case "rm":
    case "ls":
    case "bench":
      return (await import("./cli/client-commands")).runClientCommand(command, rest, processIo());
    case "token":
      return (await import("./cli/token-command")).runTokenCommand(rest, processIo());
    case "volumes":
      return (await import("./cli/volumes-command")).runVolumesCommand(rest, processIo());
    case "--version":
    case "-V":
    case "version":
      console.log(`fsgw ${(await import("../package.json")).version} (Bun ${Bun.version}, protocol v2)`);
      return 0;
    case "--help":
    case "-h":
    case "help":
      console.log(usage);
      return 0;
    case undefined:
      console.error(usage);
      return EXIT_USAGE;
    default:
      console.error(`fsgw: unknown command ${JSON.stringify(command)}\n\n${usage}`);
      return EXIT_USAGE;
  }
}

process.exitCode = await main(process.argv.slice(2));
