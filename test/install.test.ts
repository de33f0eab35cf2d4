// Proves `npm install` is clean on the Node versions we support (20 and up): no installed package
// declares an engine above Node 20 (npm's EBADENGINE warning, which protoc-gen-es >= 2.14 caused),
// and every package with an install script is declared in package.json's allowScripts (npm warns
// about the others now, and will skip their scripts: bun's and buf's fetch their binaries).
import { expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const root = join(import.meta.dir, "..");
const modules = join(root, "node_modules");
const OLDEST_NODE_MAJOR = 20;

interface Manifest {
  name: string;
  version: string;
  engines?: { node?: string };
  scripts?: Record<string, string>;
  allowScripts?: Record<string, boolean>;
}

/** Every package npm installed (top level and scoped; nested copies are npm's own choice). */
function installed(): Manifest[] {
  const found: Manifest[] = [];
  const read = (dir: string) => {
    const file = join(dir, "package.json");
    if (existsSync(file)) found.push(JSON.parse(readFileSync(file, "utf8")) as Manifest);
  };
  for (const name of readdirSync(modules)) {
    if (name.startsWith(".")) continue;
    if (name.startsWith("@")) for (const sub of readdirSync(join(modules, name))) read(join(modules, name, sub));
    else read(join(modules, name));
  }
  return found;
}

test("no installed package asks for a Node newer than 20 (no EBADENGINE at npm install)", () => {
  const packages = installed();
  expect(packages.length).toBeGreaterThan(5);
  const tooNew = packages.filter((p) => {
    const range = p.engines?.node;
    if (range === undefined) return false;
    // ">=22", "^22 || ^24", ">= 18.0.0": the lowest major any of its alternatives accepts.
    const lowest = Math.min(...range.split("||").map((alt) => Number(/(\d+)/.exec(alt)?.[1] ?? "0")));
    return lowest > OLDEST_NODE_MAJOR;
  });
  expect(tooNew.map((p) => `${p.name}@${p.version} wants node ${p.engines!.node}`)).toEqual([]);
});

test("every installed package with an install script is in package.json's allowScripts", () => {
  const own = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as Manifest;
  const allowed = own.allowScripts ?? {};
  const withScripts = installed().filter((p) => ["preinstall", "install", "postinstall"].some((s) => p.scripts?.[s] !== undefined));
  expect(withScripts.length).toBeGreaterThan(0);
  const undeclared = withScripts.filter((p) => allowed[p.name] === undefined && allowed[`${p.name}@${p.version}`] === undefined);
  expect(undeclared.map((p) => p.name)).toEqual([]);
});
