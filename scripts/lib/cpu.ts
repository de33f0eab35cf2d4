// Server CPU for the benchmarks, to the nanosecond: the sum of every thread's run time from
// /proc/<pid>/task/<tid>/schedstat (/proc/<pid>/stat counts 10 ms ticks, too coarse for differences
// of a few percent). The server's threads live as long as it does.
import { readdirSync, readFileSync } from "node:fs";

export function cpuMsOf(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
    } catch {} // a thread that just exited
  }
  return ns / 1e6;
}
