// Proves start-up's dealings with the system: SCHED_RR for priorIoThreads where allowed and one clear
// warning where refused, CPU pinning, and the open-file limit raised (or capped, with a message).
import { expect, test } from "bun:test";
import { chmodSync, copyFileSync, cpSync, linkSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { root } from "../../src/ffi/build";
import { startServer, tempDir } from "../helpers/server";

/** Scheduling policy (field 41 of /proc/<pid>/task/<tid>/stat: 0 normal, 2 round-robin) per worker. */
function workerPolicies(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`)
    .map((tid) => readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8"))
    .filter((st) => st.includes("(fsgw-io-"))
    .map((st) => Number(st.split(") ")[1]!.split(" ")[38]));
}

test("priorIoThreads: SCHED_RR for that many workers when the system allows it", async () => {
  const server = await startServer({ ioThreads: 4, priorIoThreads: 2, cpuAffinity: true });
  const refused = server.lines.some((l) => l.includes("event=io_priority_refused"));
  const policies = workerPolicies(server.pid).sort();
  if (refused) expect(policies).toEqual([0, 0, 0, 0]);
  else expect(policies).toEqual([0, 0, 2, 2]);
  expect(server.lines.some((l) => l.includes("event=cpu_affinity_refused"))).toBe(false);
  expect(await server.stop()).toBe(0);
});

const notRoot = process.getuid?.() !== 0;
if (notRoot) console.warn("startup.test.ts: the unprivileged SCHED_RR test is skipped: dropping privileges needs root");

/**
 * A copy of what the server needs at run time, in a directory every user can enter: the checkout
 * itself may sit where only root can (a clone under /root, mode 700), and `nobody` must still be
 * able to execute Bun and read the sources.
 */
function reachableCopy(): string {
  const copy = join(tempDir("reachable"), "fsgw");
  for (const part of ["src", "ffi", "build", "package.json", "tsconfig.json", "bunfig.toml", "node_modules/@bufbuild/protobuf", "node_modules/zod"]) {
    cpSync(join(root, part), join(copy, part), { recursive: true });
  }
  const bunDir = join(copy, "node_modules/bun/bin");
  mkdirSync(bunDir, { recursive: true });
  try {
    linkSync(process.execPath, join(bunDir, "bun.exe")); // 100 MB: a hard link when the file system allows
  } catch {
    copyFileSync(process.execPath, join(bunDir, "bun.exe"));
    chmodSync(join(bunDir, "bun.exe"), 0o755);
  }
  for (let dir = copy; dir !== "/" && dir !== tmpdir(); dir = dirname(dir)) chmodSync(dir, 0o755);
  return copy;
}

test.skipIf(notRoot)(`without the privilege, SCHED_RR is refused with one clear warning and the server carries on${notRoot ? " (skipped: dropping privileges needs root)" : ""}`, async () => {
  const dir = tempDir("unpriv");
  chmodSync(dir, 0o777);
  // As nobody, with no capabilities: the kernel refuses SCHED_RR (an RLIMIT_RTPRIO of 0 too).
  const server = await startServer(
    { dataDir: join(dir, "d"), ioThreads: 3, priorIoThreads: 2 },
    {},
    ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "prlimit", "--rtprio=0", "--"],
    reachableCopy(),
  );
  const warnings = server.lines.filter((l) => l.includes("event=io_priority_refused"));
  expect(warnings.length).toBe(1);
  expect(warnings[0]).toContain("workers=2 of=2");
  expect(warnings[0]).toContain("normal priority");
  expect(workerPolicies(server.pid)).toEqual([0, 0, 0]);
  expect(await server.stop()).toBe(0);
});

test("maxOpenFiles above the hard limit is capped, and the log says so", async () => {
  const server = await startServer({ maxOpenFiles: 1_000_000 });
  const line = server.lines.find((l) => l.includes("event=open_file_limit"))!;
  const hard = Number(/Max open files\s+\d+\s+(\d+)/.exec(readFileSync(`/proc/${server.pid}/limits`, "utf8"))![1]);
  expect(line).toContain("level=warn");
  expect(line).toContain(`wanted=1000000 effective=${hard}`);
  expect(line).toContain("capped by the hard limit");
  await server.stop();
});

test("a soft open-file limit below maxOpenFiles is raised at start", async () => {
  const server = await startServer({ maxOpenFiles: 4096 }, {}, ["prlimit", "--nofile=256:20000", "--"]);
  const soft = Number(/Max open files\s+(\d+)/.exec(readFileSync(`/proc/${server.pid}/limits`, "utf8"))![1]);
  expect(soft).toBeGreaterThanOrEqual(4096);
  expect(server.lines.some((l) => /event=open_file_limit effective=\d+/.test(l))).toBe(true);
  await server.stop();
});
