// Proves README.md documents the configuration that the code actually has.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { configTable } from "../src/config";

test("README's configuration table is the schema's (regenerate: bun scripts/config-table.ts)", () => {
  const readme = readFileSync(join(import.meta.dir, "..", "README.md"), "utf8");
  expect(readme).toContain(configTable());
});
