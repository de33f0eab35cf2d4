// Proves jsonErrorOffset finds where a JSON text breaks (JSON.parse in Bun does not say), and
// accepts every valid text JSON.parse accepts.
import { expect, test } from "bun:test";
import { jsonErrorOffset, lineAndColumn } from "../../src/util/json-position";

test("valid texts have no error", () => {
  for (const text of ['{"a":1}', " [1, -2.5e3, true, false, null, \"x\\u00e9\\n\"] ", '{"a":{"b":[{}]}}', "0", '""']) {
    expect(() => JSON.parse(text)).not.toThrow();
    expect([text, jsonErrorOffset(text)]).toEqual([text, -1]);
  }
});

test("the first offending character, or the end for a text cut short", () => {
  const cases: [string, number][] = [
    ['{"a" 1}', 5], // missing ':'
    ['{"a":1,}', 7], // trailing comma: '}' where a key should be
    ['{"a":tru}', 8],
    ["[1 2]", 3],
    ['{"a":1} x', 8],
    ['{"a":', 5],
    ['"abc', 4],
    ["", 0],
    ['{"a":01}', 6],
  ];
  for (const [text, at] of cases) {
    expect(() => JSON.parse(text)).toThrow();
    expect([text, jsonErrorOffset(text)]).toEqual([text, at]);
  }
});

test("line and column count from 1", () => {
  const text = '{\n  "port": 7000,\n  "host" "x"\n}';
  expect(lineAndColumn(text, jsonErrorOffset(text))).toBe("line 3, column 10");
});
