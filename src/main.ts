#!/usr/bin/env bun
// The `fsgw` command: `fsgw serve` runs the gateway.
import { serve } from "./serve";

const usage = `usage: fsgw <command> [options]

commands:
  serve     run the file gateway (what \`npm start\` and \`bun start\` run)

Run \`fsgw <command> --help\` for a command's options.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "serve":
      return serve(rest);
    case undefined:
    case "--help":
    case "-h":
    case "help":
      console.log(usage);
      return command === undefined ? 2 : 0;
    default:
      console.error(`fsgw: unknown command ${JSON.stringify(command)}\n\n${usage}`);
      return 2;
  }
}

process.exitCode = await main(process.argv.slice(2));
