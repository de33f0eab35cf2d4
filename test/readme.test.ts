// Proves README.md documents what the code actually has: the configuration table is the schema's;
// every path it names exists; every `function file:line` of its profile examples points at that
// function's line; every fsgw command it shows exists and takes the flags shown (each command's
// --help names them); every npm script and `bun scripts/…` it runs is there.
import { expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { configTable } from "../src/config";
import { helpTexts } from "../src/cli/client-commands";
import { tokenHelp } from "../src/cli/token-command";
import { volumesHelp } from "../src/cli/volumes-command";
import { serveUsage } from "../src/serve";

const root = join(import.meta.dir, "..");
const readme = readFileSync(join(root, "README.md"), "utf8");

test("README's configuration table is the schema's (regenerate: bun scripts/config-table.ts)", () => {
  expect(readme).toContain(configTable());
});

test("every path the README names exists", () => {
  const paths = new Set([...readme.matchAll(/\b((?:src|scripts|test|docs|ffi|proto)\/[\w./-]+\.(?:ts|c|h|md|proto|json))\b/g)].map((m) => m[1]!));
  expect(paths.size).toBeGreaterThan(10);
  const missing = [...paths].filter((p) => !existsSync(join(root, p)));
  expect(missing).toEqual([]);
});

test("every `function file:line` in the README's profiles is that function's line", () => {
  const refs = [...readme.matchAll(/ (\w+) ((?:src|scripts)\/[\w./-]+\.ts):(\d+)/g)];
  expect(refs.length).toBeGreaterThan(3);
  const wrong = refs.flatMap(([, name, file, line]) => {
    const text = readFileSync(join(root, file!), "utf8").split("\n")[Number(line) - 1] ?? "";
    return new RegExp(`\\b${name}\\b`).test(text) ? [] : [`${name} ${file}:${line} is: ${text.trim()}`];
  });
  expect(wrong).toEqual([]);
});

test("every fsgw command the README shows exists and takes the flags shown", () => {
  const help: Record<string, string> = { ...helpTexts, serve: serveUsage, token: tokenHelp, volumes: volumesHelp };
  // Command lines: in code blocks (after `$ `, or a line of a sh block) and in `inline code`.
  const blocks = [...readme.matchAll(/```(\w*)\n([\s\S]*?)```/g)];
  const inBlocks = blocks.flatMap(([, lang, body]) =>
    body!.split("\n").flatMap((l) => {
      const m = /^(?:\$ )?(?:[A-Z_]+=\S+ )*((?:npx )?fsgw .*)$/.exec(l);
      return m !== null && (l.startsWith("$ ") || lang === "sh") ? [m[1]!] : [];
    }),
  );
  const inline = [...readme.replace(/```[\s\S]*?```/g, "").matchAll(/`((?:npx )?fsgw [^`\n]*)`/g)].map((m) => m[1]!);
  const lines = [...inBlocks, ...inline].map((l) => l.replace(/\s+#.*$/, ""));
  expect(lines.length).toBeGreaterThan(20);
  const wrong: string[] = [];
  for (const line of lines) {
    const words = line.replace(/^npx /, "").split(/\s+/);
    const command = words[1]!;
    if (command === "…" || command === "...") continue; // "fsgw …": any command
    if (command.startsWith("-")) {
      if (!["--help", "-h", "--version", "-V"].includes(command)) wrong.push(`${line}: no such option of fsgw`);
      continue;
    }
    if (help[command] === undefined) {
      wrong.push(`${line}: no command ${command}`);
      continue;
    }
    for (const word of words.slice(2)) {
      const flag = /^(--[a-z][\w-]*|-[a-zA-Z])(=|$)/.exec(word)?.[1];
      if (flag !== undefined && flag !== "--help" && !help[command]!.includes(flag)) wrong.push(`${line}: ${command} --help does not name ${flag}`);
    }
  }
  expect(wrong).toEqual([]);
});

test("every npm script and bun script the README runs is there", () => {
  const scripts = (JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts;
  const npmRuns = [...readme.matchAll(/npm run (?:-s )?([\w:-]+)/g)].map((m) => m[1]!);
  expect(npmRuns.filter((name) => scripts[name] === undefined)).toEqual([]);
  for (const name of ["start", "test"]) expect(scripts[name]).toBeDefined();
  const bunScripts = [...readme.matchAll(/bun (?:--[\w=/.-]+ )*(scripts\/[\w/-]+\.ts)/g)].map((m) => m[1]!);
  expect(bunScripts.length).toBeGreaterThan(1);
  expect(bunScripts.filter((p) => !existsSync(join(root, p)))).toEqual([]);
});
