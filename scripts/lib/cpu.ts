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

/** User and system time of the whole process, ms (/proc/<pid>/stat: 10 ms ticks, so only for runs of
 * seconds), to tell the kernel's share of an exchange from the program's own. */
export function userSysMsOf(pid: number): { user: number; sys: number } {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return { user: Number(f[11]) * 10, sys: Number(f[12]) * 10 };
  } catch {
    return { user: 0, sys: 0 };
  }
}
