// Proves the progress display: nothing for a short transfer, a bar redrawn in place on a TTY,
// plain lines at most once a second otherwise; with bytes, rate and ETA.
import { expect, test } from "bun:test";
import { formatBytes, Progress } from "../../src/cli/progress";

function capture(isTTY: boolean) {
  const out: string[] = [];
  return { out, sink: { isTTY, columns: 100, write: (t: string) => void out.push(t) } };
}

test("a transfer under a second shows nothing", () => {
  let now = 0;
  const { out, sink } = capture(true);
  const p = new Progress("put x", sink, () => now);
  now = 500;
  p.update(50, 100);
  now = 900;
  p.update(100, 100);
  p.finish();
  expect(out).toEqual([]);
});

test("on a TTY: one line redrawn with \\r, bar, percent, bytes, rate and ETA, ended by a newline", () => {
  let now = 0;
  const { out, sink } = capture(true);
  const p = new Progress("put big", sink, () => now);
  now = 2000;
  p.update(10 * 1024 * 1024, 40 * 1024 * 1024); // 10 MiB in 2 s: 5 MiB/s, 30 MiB left: 6 s
  now = 2050;
  p.update(11 * 1024 * 1024, 40 * 1024 * 1024); // within 100 ms: not redrawn
  now = 4000;
  p.update(40 * 1024 * 1024, 40 * 1024 * 1024);
  p.finish();
  expect(out.length).toBe(4); // two updates, the final draw, the newline
  expect(out[0]).toStartWith("\rput big [");
  expect(out[0]).toContain(" 25% 10.0 MiB/40.0 MiB 5.0 MiB/s ETA 0:06");
  expect(out[0]!.length).toBeLessThanOrEqual(100 + 10);
  expect(out[2]).toContain("100% 40.0 MiB/40.0 MiB");
  expect(out[2]).toContain("#".repeat(20));
  expect(out[3]).toBe("\n");
});

test("not a TTY: plain lines, at most one a second", () => {
  let now = 0;
  const { out, sink } = capture(false);
  const p = new Progress("get f", sink, () => now);
  for (now = 1000; now <= 3500; now += 100) p.update(now, 5000);
  p.finish();
  expect(out.every((l) => l.endsWith("\n") && !l.includes("\r"))).toBe(true);
  expect(out.length).toBe(4); // 1000, 2000, 3000, and the final line
  expect(out[0]).toBe("get f  20% 1000 B/4.9 KiB 1000 B/s ETA 0:04\n");
});

test("formatBytes", () => {
  expect(formatBytes(0)).toBe("0 B");
  expect(formatBytes(1023)).toBe("1023 B");
  expect(formatBytes(5 * 1024)).toBe("5.0 KiB");
  expect(formatBytes(64 * 1024 * 1024)).toBe("64.0 MiB");
});

test("a put's hashing is its own phase, and the transfer's rate and ETA count from its end", () => {
  let now = 0;
  const { out, sink } = capture(false);
  const p = new Progress("put big", sink, () => now);
  now = 1500;
  p.hashing(20 * 1024 * 1024, 40 * 1024 * 1024); // 20 MiB hashed in 1.5 s
  now = 3000;
  p.hashing(40 * 1024 * 1024, 40 * 1024 * 1024); // hashed: the transfer starts at 3 s
  now = 5000;
  p.update(20 * 1024 * 1024, 40 * 1024 * 1024); // 20 MiB sent in 2 s: 10 MiB/s, 2 s left
  p.finish();
  expect(out[0]).toBe("put big (hashing)  50% 20.0 MiB/40.0 MiB 13.3 MiB/s ETA 0:02\n");
  // Before, the hashing time was counted in the rate: 20 MiB in 5 s, "4.0 MiB/s ETA 0:05".
  expect(out[1]).toBe("put big  50% 20.0 MiB/40.0 MiB 10.0 MiB/s ETA 0:02\n");
});
