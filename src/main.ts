#!/usr/bin/env bun
// The `fsgw` command: `serve` runs the gateway; put, get, stat, rm and bench are its client.
// Each command loads only its own code (a dynamic import): `serve` does not load the client and
// its load generator, and a client command does not load the server.
import type { Io } from "./cli/client-commands";

/** Bad usage (the client commands' exit code for it). */
const EXIT_USAGE = 2;

const usage = `usage: fsgw <command> [options]

commands:
  serve     run the file gateway (what \`npm start\` and \`bun start\` run)
  put       upload a file:          fsgw put ./report.pdf [--key report.pdf]
  get       download a file:        fsgw get report.pdf [-o ./copy.pdf]
  stat      size and type of a key: fsgw stat report.pdf
  rm        delete a key:           fsgw rm report.pdf
  bench     load generator:         fsgw bench upload -c 500 -n 20000 -s 5k
  token     access tokens:          fsgw token create --ops read --prefix photos- --ttl 1h

Client commands take --host and --port (default 127.0.0.1:9999), and --tls, --ca, --token
for a server with TLS and tokens.
Run \`fsgw <command> --help\` for a command's options and examples.`;

function processIo(): Io {
  return {
    stdout: (text) => void process.stdout.write(text),
    stderr: { isTTY: Boolean(process.stderr.isTTY), columns: process.stderr.columns, write: (text) => void process.stderr.write(text) },
    stdoutBytes: (bytes) =>
      process.stdout.write(bytes) ? undefined : new Promise<void>((resolve) => process.stdout.once("drain", () => resolve())),
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
    case "bench":
      return (await import("./cli/client-commands")).runClientCommand(command, rest, processIo());
    case "token":
      return (await import("./cli/token-command")).runTokenCommand(rest, processIo());
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
