// Proves the pprof-style table: self and total time per function from a .cpuprofile's samples, idle
// gaps capped, hottest first.
import { expect, test } from "bun:test";
import { formatTop, topOf, type CpuProfile } from "../../src/observe/profile-top";

const frame = (functionName: string, url = "file:///app/src/server/connection.ts", lineNumber = 9) => ({ functionName, url, lineNumber, columnNumber: 0 });

// root -> onData -> decode ; root -> onData -> send ; root -> idleGap
const profile: CpuProfile = {
  startTime: 0,
  endTime: 10_000,
  nodes: [
    { id: 1, callFrame: frame("(root)", ""), children: [2] },
    { id: 2, callFrame: frame("onData"), children: [3, 4] },
    { id: 3, callFrame: frame("decode", "file:///app/src/protocol/fast-proto.ts", 73) },
    { id: 4, callFrame: frame("write", "") },
  ],
  // Samples every 1 ms: decode x3, write x1, onData x1; the last gap (50 ms) is idle time.
  samples: [3, 3, 3, 4, 2, 3],
  timeDeltas: [0, 1000, 1000, 1000, 1000, 1000, 50_000],
};

test("self and total per function, idle gaps capped at twice the usual interval", () => {
  const { totalMs, rows } = topOf(profile);
  const by = Object.fromEntries(rows.map((r) => [r.name.split(" ")[0], r]));
  expect(totalMs).toBe(7); // 5 samples of 1 ms and one capped at 2 ms
  expect(by.decode!.selfMs).toBe(5); // 3 x 1 ms + the capped last one (2 ms)
  expect(by.write!.selfMs).toBe(1);
  expect(by.onData!.selfMs).toBe(1);
  expect(by.onData!.totalMs).toBe(7);
  expect(rows[0]!.name).toBe("decode src/protocol/fast-proto.ts:74");
});

test("formatted like pprof -top", () => {
  const text = formatTop(profile, 10);
  const lines = text.split("\n");
  expect(lines[0]).toBe("Showing top 3 functions, 7.0ms of 7.0ms sampled (100.00%); the JavaScript thread was busy 7.0ms of the 0.0 s window (70%), idle in the event loop the rest");
  expect(lines[1]).toBe("      flat  flat%        cum   cum%  function");
  expect(lines[2]).toBe("     5.0ms 71.43%      5.0ms 71.43%  decode src/protocol/fast-proto.ts:74");
  expect(text).toContain("     1.0ms 14.29%      7.0ms 100.00%  onData src/server/connection.ts:10");
});

test("an idle window says it has no samples instead of printing an empty table", () => {
  const idle: CpuProfile = { startTime: 0, endTime: 1_000_000, nodes: [{ id: 1, callFrame: frame("(root)", "") }], samples: [], timeDeltas: [] };
  expect(formatTop(idle)).toBe("No samples in the 1.0 s window: the JavaScript thread was idle throughout (the profiler samples only while it runs).");
});
