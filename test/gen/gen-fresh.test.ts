// Proves the committed src/gen/ is exactly what buf + protoc-gen-es generate from proto/ today.
import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { generate } from "../../scripts/gen";
import { tempDir } from "../helpers/server";

test("src/gen is fresh (run `npm run gen` after editing proto/)", () => {
  const root = resolve(import.meta.dir, "../..");
  const out = tempDir("gen");
  generate(out);
  const committed = readdirSync(join(root, "src/gen")).sort();
  expect(readdirSync(join(out, "src/gen")).sort()).toEqual(committed);
  for (const name of committed) {
    expect(readFileSync(join(out, "src/gen", name), "utf8")).toBe(readFileSync(join(root, "src/gen", name), "utf8"));
  }
}, 30_000);
