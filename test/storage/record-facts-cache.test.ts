// RecordFactsCache: a record's facts come back only for the same volume, offset and sequence
// number; a record that lands on the same slot replaces the one there.
import { expect, test } from "bun:test";
import { RecordFactsCache } from "../../src/storage/record-facts-cache";
import { DIGEST_BYTES } from "../../src/storage/store";

const factsOf = (n: number) => Uint8Array.from({ length: DIGEST_BYTES }, (_, i) => (n * 31 + i) & 255);

test("held by location and sequence number; another record's slot replaces it", () => {
  const cache = new RecordFactsCache(64);
  const out = new Uint8Array(DIGEST_BYTES);
  expect(cache.get(1, 0, 5, out)).toBe(false); // nothing put yet
  cache.put(1, 4096, 7, factsOf(1));
  expect(cache.get(1, 4096, 7, out)).toBe(true);
  expect(out).toEqual(factsOf(1));
  // Another sequence number, volume or offset is another record.
  expect(cache.get(1, 4096, 8, out)).toBe(false);
  expect(cache.get(2, 4096, 7, out)).toBe(false);
  expect(cache.get(1, 4104, 7, out)).toBe(false);
  // Volume 0 is a volume like any other (an empty slot is not volume 0's).
  expect(new RecordFactsCache(8).get(0, 0, 0, out)).toBe(false);
  // Direct-mapped: 64 slots apart by offset is the same slot, and the later put wins.
  cache.put(1, 4096 + 64 * 8, 9, factsOf(2));
  expect(cache.get(1, 4096, 7, out)).toBe(false);
  expect(cache.get(1, 4096 + 64 * 8, 9, out)).toBe(true);
  expect(out).toEqual(factsOf(2));
  // The bound: 64 consecutive records fill 64 slots, each found.
  for (let i = 0; i < 64; i++) cache.put(3, i * 8, i, factsOf(i));
  for (let i = 0; i < 64; i++) expect(cache.get(3, i * 8, i, out) && out[0] === factsOf(i)[0]).toBe(true);
});
