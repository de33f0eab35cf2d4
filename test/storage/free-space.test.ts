// FreeSpace (the file store's floor of free space): a body that would leave less than the floor is
// refused and takes nothing; with no floor every body fits.
import { expect, test } from "bun:test";
import { statfsSync } from "node:fs";
import { FreeSpace } from "../../src/storage/free-space";
import { tempDir } from "../helpers/server";

test("a body fits while it leaves the floor free; past it, refused; no floor: always", () => {
  const dir = tempDir("free-space");
  const s = statfsSync(dir);
  const free = s.bavail * s.bsize;
  expect(new FreeSpace(dir, 0).take(Number.MAX_SAFE_INTEGER)).toBe(true);
  expect(new FreeSpace(dir, free * 4).take(1)).toBe(false);
  // A floor a gigabyte below what is free: bodies within that gigabyte fit; one larger does not,
  // even after the refusal measures again.
  const floored = new FreeSpace(dir, Math.max(1, free - 2 ** 30));
  expect(floored.take(2 ** 29)).toBe(true);
  expect(floored.take(2 ** 29 - 2 ** 20)).toBe(true);
  expect(floored.take(2 ** 30 + 2 ** 26)).toBe(false);
});
