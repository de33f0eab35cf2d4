// fsgw against the Go original it descends from (issue 26's table), driven by the original's own
// load generator, FsClient, which speaks the same protocol to both:
//
//   go-plain     the original's FsServer, file I/O in each connection's goroutine
//   go-pool      the same with its goroutine pool (UserPoolIoSched "G", 32 IoThreads)
//   fsgw         fsgw in its default configuration (`loops: 0`: one loop per CPU but one)
//   fsgw-1loop   fsgw with one event loop; fsgw-2loops with two, and so on
//   fsgw-1loop@DIR, fsgw@DIR   the same from another checkout of fsgw (a before and after)
//
// Rows (connections × requests, as the issue measured them): bench 500×200k, upload-5k 500×50k,
// upload-50k 500×20k, download-50k 500×20k, exist 500×200k, delete 500×20k, upload-1m 50×1000.
// download, exist and delete run against 20k keys of 50 KiB uploaded first (so exist asks for 10×
// more keys than there are: most of its answers are misses, as in the issue's run). Every
// contestant gets a fresh server and data directory per row (a directory of the run's, moved aside
// and never deleted between timed runs: this disk creates files slowly for minutes after a mass
// delete); contestants alternate, in reverse order every other round. Server CPU: every thread of
// the server process (/proc/<pid>/task/*/schedstat), per exchange (per MiB for upload-1m), and of
// it the kernel's (system time). Upload rows also run scripts/kernel-floor.c in each round: the
// CPU the kernel alone charges to create, write, close and rename a file of the row's size (no
// network, no runtime), the floor of the file work under each upload.
//
//   bun scripts/bench-vs-go.ts --peer DIR [--rounds 3] [--rows bench,exist,...] [--contestants go-plain,fsgw,...]
//
// DIR holds the original built from its public repository (github.com/yangxianjungree/GoFsBench,
// commit 5a579a4): DIR/bin/FsServer and DIR/bin/FsClient, built with Go in GOPATH mode with
// MaxOpenFiles lowered to this machine's open-file limit. Its server also binds pprof on port 6060.
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { cpuMsOf, userSysMsOf } from "./lib/cpu";
import { option } from "./lib/options";
import { freePort, startServer } from "./lib/server-process";

const root = resolve(import.meta.dir, "..");
const peer = option("--peer", process.env.PEER_DIR ?? "");
if (peer === "" || !existsSync(join(peer, "bin/FsClient")) || !existsSync(join(peer, "bin/FsServer"))) {
  console.error("bench-vs-go: --peer DIR must hold the Go original's bin/FsServer and bin/FsClient (see this file's head)");
  process.exit(2);
}
const rounds = Number(option("--rounds", "3"));
interface Row {
  op: "bench" | "upload" | "download" | "exist" | "delete";
  conns: number;
  count: number;
  size: number;
  /** Keys of 50 KiB uploaded before the timed run (download, exist, delete read them). */
  prepared: number;
}
const ROWS: Record<string, Row> = {
  bench: { op: "bench", conns: 500, count: 200_000, size: 0, prepared: 0 },
  "upload-5k": { op: "upload", conns: 500, count: 50_000, size: 5 * 1024, prepared: 0 },
  "upload-50k": { op: "upload", conns: 500, count: 20_000, size: 50 * 1024, prepared: 0 },
  "download-50k": { op: "download", conns: 500, count: 20_000, size: 50 * 1024, prepared: 20_000 },
  exist: { op: "exist", conns: 500, count: 200_000, size: 0, prepared: 20_000 },
  delete: { op: "delete", conns: 500, count: 20_000, size: 0, prepared: 20_000 },
  "upload-1m": { op: "upload", conns: 50, count: 1000, size: 1024 * 1024, prepared: 0 },
};
const rows = option("--rows", Object.keys(ROWS).join(",")).split(",");
const contestants = option("--contestants", "go-plain,go-pool,fsgw,fsgw-1loop").split(",");
for (const r of rows) if (ROWS[r] === undefined) throw new Error(`unknown row ${r}: ${Object.keys(ROWS).join(", ")}`);
const runDir = join(root, ".bench", "vs-go", `run-${Date.now()}`);
mkdirSync(runDir, { recursive: true });

/** The original reads its settings from ./config.json: one directory per process. */
function configDir(name: string, port: number, dataDir: string, sched: string | null): string {
  const dir = join(runDir, name);
  mkdirSync(dir, { recursive: true });
  const config: Record<string, unknown> = { Port: String(port), UserProtoMsg: true, PageSize: 4096, MaxOpenFiles: 20000, LogCountPerFile: 2_000_000, DataDir: dataDir };
  if (sched !== null) Object.assign(config, { UserPoolIoSched: sched, IoThreads: 32, PriorIoThreads: 0, SetCpuAffinity: false, WaitingQueueLen: 1_000_000 });
  writeFileSync(join(dir, "config.json"), JSON.stringify(config));
  return dir;
}

/** FsClient: the successes and requests per second it reports. */
function client(op: string, port: number, conns: number, count: number, size: number): { ok: number; qps: number } {
  const dir = configDir(`client-${port}-${op}`, port, "/nonexistent", null);
  const r = Bun.spawnSync([join(peer, "bin/FsClient"), op, String(conns), String(count), String(size || 5120)], { cwd: dir, stdout: "pipe", stderr: "pipe" });
  const out = r.stdout.toString();
  return { ok: Number(/Total success tasks:\s*(\d+)/.exec(out)?.[1] ?? "0"), qps: Number(/qps:\s*([\d.]+)/.exec(out)?.[1] ?? "0") };
}

async function start(name: string, dataDir: string): Promise<{ port: number; pid: number; stop(): Promise<void> }> {
  if (name.startsWith("go-")) {
    const port = freePort();
    mkdirSync(join(dataDir, "stroges"), { recursive: true }); // the original does not create these
    mkdirSync(join(dataDir, "tmp"), { recursive: true });
    const dir = configDir(`server-${port}`, port, dataDir, name === "go-pool" ? "G" : "");
    const proc = Bun.spawn([join(peer, "bin/FsServer")], { cwd: dir, stdout: "ignore", stderr: "ignore" });
    await Bun.sleep(1000);
    return { port, pid: proc.pid, stop: async () => void (proc.kill(), await proc.exited) };
  }
  const [kind, checkout] = name.split("@") as [string, string | undefined];
  const loops = Number(/^fsgw-(\d+)loops?$/.exec(kind)?.[1] ?? "0");
  const server = await startServer({ dataDir, loops }, {}, [], checkout ?? root);
  return { port: server.port, pid: server.pid, stop: async () => void (await server.stop()) };
}

const results: Record<string, { us: number; qps: number; sysUs: number }[]> = {};

/** scripts/kernel-floor.c's commit: the kernel's CPU per file of `size` bytes, µs (null: not built). */
function kernelFloorUs(files: number, size: number, label: string): number | null {
  const bin = join(runDir, "kernel-floor");
  if (!existsSync(bin) && Bun.spawnSync(["gcc", "-O2", "-o", bin, join(root, "scripts/kernel-floor.c")]).exitCode !== 0) return null;
  const r = Bun.spawnSync([bin, join(runDir, `floor-${label}`), String(files), String(size), "keep"], { stdout: "pipe", stderr: "pipe" });
  const m = /commit ([\d.]+) us/.exec(r.stdout.toString());
  return m === null ? null : Number(m[1]);
}
const floors: Record<string, number[]> = {};
for (let round = 1; round <= rounds; round++) {
  const order = round % 2 === 1 ? contestants : [...contestants].reverse();
  for (const row of rows) {
    const spec = ROWS[row]!;
    for (const name of order) {
      const server = await start(name, join(runDir, `data-${name.replace(/[@/]/g, "_")}-${row}-${round}`));
      if (spec.prepared > 0) client("upload", server.port, 100, spec.prepared, 50 * 1024);
      const cpu0 = cpuMsOf(server.pid);
      const split0 = userSysMsOf(server.pid);
      const { ok, qps } = client(spec.op, server.port, spec.conns, spec.count, spec.size);
      const cpuMs = cpuMsOf(server.pid) - cpu0;
      const sysMs = userSysMsOf(server.pid).sys - split0.sys;
      await server.stop();
      // exist and delete count a miss as a success, as the original's client does.
      if (ok !== spec.count) console.error(`${row} ${name}: ${ok} of ${spec.count} succeeded`);
      const units = row === "upload-1m" ? (spec.count * spec.size) / (1024 * 1024) : spec.count;
      const us = (cpuMs * 1000) / units;
      const sysUs = (sysMs * 1000) / units;
      (results[`${row} ${name}`] ??= []).push({ us, qps, sysUs });
      console.log(`round ${round} ${row.padEnd(12)} ${name.padEnd(10)} ${qps.toFixed(0).padStart(7)}/s  server CPU ${us.toFixed(1).padStart(7)} µs/${row === "upload-1m" ? "MiB" : "exchange"}, of it in the kernel ${sysUs.toFixed(1)}`);
    }
    if (spec.op === "upload") {
      const floor = kernelFloorUs(Math.min(spec.count, 10_000), spec.size, `${row}-${round}`);
      if (floor !== null) (floors[row] ??= []).push(floor * (row === "upload-1m" ? (1024 * 1024) / spec.size : 1));
      console.log(`round ${round} ${row.padEnd(12)} kernel floor of the file work: ${floor === null ? "not built" : `${floor.toFixed(1)} µs per file`}`);
    }
  }
}

// Every timed run is over: the run's data (gigabytes: a round writes ~2.5 GB per contestant) goes
// now, not between runs. File creation on this disk is slow for minutes after: wait ~5 minutes
// before timing creates again.
rmSync(runDir, { recursive: true, force: true });
console.error(`bench-vs-go: removed ${runDir}; wait ~5 minutes before timing file creation again`);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
console.log(`\nmedians of ${rounds} rounds: ops/s, server CPU µs per exchange (per MiB for upload-1m), and of it the kernel's (system time)`);
console.log(`| row | ${contestants.join(" | ")} | fsgw ÷ best Go (ops/s) | fsgw CPU ÷ best Go CPU |`);
console.log(`|---|${contestants.map(() => "---").join("|")}|---|---|`);
for (const row of rows) {
  const cell = (name: string) => {
    const r = results[`${row} ${name}`];
    return r === undefined ? null : { us: median(r.map((x) => x.us)), qps: median(r.map((x) => x.qps)), sysUs: median(r.map((x) => x.sysUs)) };
  };
  const go = contestants.filter((c) => c.startsWith("go-")).map(cell).filter((c) => c !== null);
  const fsgw = cell("fsgw") ?? cell("fsgw-1loop");
  const bestQps = Math.max(...go.map((c) => c.qps));
  const bestUs = Math.min(...go.map((c) => c.us));
  const ratios = fsgw === null || go.length === 0 ? "| – | – |" : `| ${(fsgw.qps / bestQps).toFixed(2)} | ${(fsgw.us / bestUs).toFixed(2)} |`;
  console.log(`| ${row} | ${contestants.map((c) => { const x = cell(c)!; return `${x.qps.toFixed(0)}, ${x.us.toFixed(1)} (kernel ${x.sysUs.toFixed(1)})`; }).join(" | ")} ${ratios}`);
}
for (const [row, f] of Object.entries(floors)) console.log(`${row}: the kernel's floor for the file work alone (scripts/kernel-floor.c), median ${median(f).toFixed(1)} µs per ${row === "upload-1m" ? "MiB" : "file"}`);
