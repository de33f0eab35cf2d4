// nginx as the yardstick: what a user would run instead of fsgw to store and serve files (WebDAV
// PUT, static GET with sendfile). Both servers run on loopback on this machine, driven by loads of
// the same shape (500 connections, one request in flight each; fewer for large bodies): `wrk` with
// a Lua script for nginx, fsgw's own generator (what `fsgw bench` runs) for fsgw. Rows alternate
// nginx, fsgw, nginx, fsgw ... so both pay the same machine conditions. Printed per row: ops/s
// and server CPU per exchange (all threads/processes of the server: /proc/<pid>/stat), and the
// ratio fsgw / nginx.
//
//   bun scripts/bench-nginx.ts [--rounds 2] [--only store-5k,serve-50k] [--seconds 5] [--copy]
//
// --copy adds a third contestant: fsgw with zeroCopy off (bodies through memory: read and written
// for downloads, received and written for uploads), to show what sendfile and splice buy.
//
// nginx and wrk come from Debian (`apt-get install nginx-light wrk`, done here when missing and
// running as root). nginx runs from a temporary config: 2 workers (one per core, as its
// `worker_processes auto` would pick here), `sendfile on`, `dav_methods PUT DELETE`, no access log.
// Data stays under .bench/ (nothing is deleted between runs: see BENCHMARKS.md on this disk).
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { runLoad, type LoadOp } from "../src/client/load";
import { freePort, startServer, type TestServer } from "./lib/server-process";
import { args, option, KiB, MiB } from "./lib/options";

const root = resolve(import.meta.dir, "..");
const rounds = Number(option("--rounds", "2"));
const seconds = Number(option("--seconds", "5"));

interface Row {
  name: string;
  /** store: PUT / upload of fresh keys; serve: GET / download of prepared files. */
  kind: "store" | "serve";
  size: number;
  connections: number;
  /** fsgw exchanges per run: sized to last about as long as nginx's timed run. */
  count: number;
  /** Files prepared for serve rows. */
  files: number;
  /** nginx's timed run, as a multiple of --seconds (large bodies need longer for enough exchanges). */
  secondsFactor?: number;
}
const rows: Row[] = [
  { name: "store-5k", kind: "store", size: 5 * KiB, connections: 500, count: 40_000, files: 0 },
  { name: "store-1m", kind: "store", size: MiB, connections: 50, count: 1500, files: 0 },
  { name: "store-64m", kind: "store", size: 64 * MiB, connections: 8, count: 24, files: 0, secondsFactor: 2 },
  { name: "serve-50k", kind: "serve", size: 50 * KiB, connections: 500, count: 60_000, files: 20_000 },
  { name: "serve-64m", kind: "serve", size: 64 * MiB, connections: 8, count: 48, files: 8, secondsFactor: 2 },
];
const only = option("--only", "");
const selected = rows.filter((r) => only === "" || only.split(",").includes(r.name));

const runDir = join(root, ".bench", "nginx-" + new Date().toISOString().replace(/[:.]/g, "-"));
mkdirSync(runDir, { recursive: true });

function cpuMsOf(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
  } catch {
    return 0;
  }
}

/** CPU of a process and its children (nginx's workers), in ms. */
function treeCpuMs(pid: number): number {
  let ms = cpuMsOf(pid);
  for (const task of readdirSync("/proc")) {
    if (!/^\d+$/.test(task)) continue;
    try {
      const stat = readFileSync(`/proc/${task}/stat`, "utf8");
      if (Number(stat.split(") ")[1]!.split(" ")[1]) === pid) ms += cpuMsOf(Number(task));
    } catch {}
  }
  return ms;
}

function ensureTools(): void {
  const missing = ["nginx", "wrk"].filter((t) => Bun.which(t, { PATH: `${process.env.PATH}:/usr/sbin` }) === null);
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) {
    console.error(`bench-nginx: ${missing.join(" and ")} missing; install them: sudo apt-get install nginx-light wrk`);
    process.exit(2);
  }
  console.log(`installing ${missing.join(", ")} (apt-get install nginx-light wrk)`);
  const r = Bun.spawnSync(["apt-get", "install", "-y", "nginx-light", "wrk"], { stdout: "ignore", stderr: "pipe" });
  if (r.exitCode !== 0) {
    console.error(`bench-nginx: apt-get failed: ${r.stderr.toString().trim()}`);
    process.exit(2);
  }
}

interface Nginx {
  pid: number;
  port: number;
  docRoot: string;
  stop(): Promise<void>;
}

async function startNginx(label: string): Promise<Nginx> {
  const dir = join(runDir, `nginx-${label}`);
  const docRoot = join(dir, "root");
  for (const d of ["root", "tmp", "logs"]) mkdirSync(join(dir, d), { recursive: true });
  const port = freePort();
  const conf = join(dir, "nginx.conf");
  writeFileSync(
    conf,
    `worker_processes 2;
daemon off;
user root;
pid ${dir}/nginx.pid;
error_log ${dir}/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_max_body_size 0;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  server {
    listen 127.0.0.1:${port} backlog=4096;
    root ${docRoot};
    location / { dav_methods PUT DELETE; create_full_put_path on; }
  }
}
`,
  );
  const proc = Bun.spawn(["nginx", "-c", conf, "-p", dir], { stdout: "ignore", stderr: "pipe", env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin` } });
  for (let i = 0; i < 100; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/missing`);
      await res.arrayBuffer();
      break;
    } catch {
      await Bun.sleep(50);
    }
  }
  return {
    pid: proc.pid,
    port,
    docRoot,
    async stop() {
      proc.kill("SIGQUIT");
      await proc.exited;
    },
  };
}

/** Runs wrk against nginx for `seconds`; returns the requests completed and non-2xx/errors. */
function wrk(n: Nginx, row: Row, label: string): { requests: number; errors: number } {
  const script = join(runDir, `wrk-${row.name}-${label}.lua`);
  const lua =
    row.kind === "store"
      ? `-- PUT a fresh path each time, ${row.size} bytes
local body = string.rep("x", ${row.size})
local seq = 0
local id = 0
function setup(thread) id = id + 1; thread:set("tid", id) end
function request()
  seq = seq + 1
  return wrk.format("PUT", "/${label}_" .. tid .. "_" .. seq, nil, body)
end
function done(summary, latency, requests) io.write(string.format("non2xx %d\\n", summary.errors.status)) end
`
      : `-- GET the prepared files in turn
local seq = 0
function request()
  seq = seq + 1
  return wrk.format("GET", "/f_" .. (seq % ${row.files}))
end
function done(summary, latency, requests) io.write(string.format("non2xx %d\\n", summary.errors.status)) end
`;
  writeFileSync(script, lua);
  // A 64 MiB PUT can take longer than wrk's default 2 s timeout with 8 in flight: allow a minute.
  const runSeconds = Math.round(seconds * (row.secondsFactor ?? 1));
  const r = Bun.spawnSync(["wrk", "-t", "1", "-c", String(row.connections), "-d", `${runSeconds}s`, "--timeout", "60s", "-s", script, `http://127.0.0.1:${n.port}`], { stdout: "pipe", stderr: "pipe" });
  const out = r.stdout.toString();
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
  const errs = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = Number(/non2xx (\d+)/.exec(out)?.[1] ?? 0);
  const errors = non2xx + (errs ? errs.slice(1).reduce((a, b) => a + Number(b), 0) : 0);
  if (!Number.isFinite(requests)) console.error(`wrk said:\n${out}\n${r.stderr.toString()}`);
  return { requests, errors };
}

function prepareNginxFiles(n: Nginx, row: Row): void {
  const body = new Uint8Array(row.size).fill(120);
  for (let i = 0; i < row.files; i++) {
    const p = join(n.docRoot, `f_${i}`);
    if (!existsSync(p)) writeFileSync(p, body);
  }
}

interface Measured {
  opsPerSec: number;
  cpuUs: number;
  errors: number;
}

async function nginxRun(row: Row, round: number): Promise<Measured> {
  const n = await startNginx(`${row.name}-r${round}`);
  try {
    if (row.kind === "serve") {
      prepareNginxFiles(n, row);
      Bun.spawnSync(["sync"]);
      wrk(n, { ...row }, "warm"); // the page cache and nginx's open files warmed, untimed
    }
    const c0 = treeCpuMs(n.pid);
    const t0 = performance.now();
    const { requests, errors } = wrk(n, row, `r${round}`);
    const ms = performance.now() - t0;
    const cpu = treeCpuMs(n.pid) - c0;
    return { opsPerSec: (requests * 1000) / ms, cpuUs: (cpu * 1000) / requests, errors };
  } finally {
    await n.stop();
  }
}

async function fsgwRun(row: Row, round: number, fields: Record<string, string | number | boolean> = {}): Promise<Measured> {
  const server: TestServer = await startServer({ dataDir: join(runDir, `fsgw-${row.name}-r${round}-${Object.keys(fields).join("")}`, "d"), logLevel: "info", ...fields });
  try {
    const load = { host: "127.0.0.1", port: server.port, connections: row.connections, size: row.size };
    let op: LoadOp = "upload";
    if (row.kind === "serve") {
      await runLoad({ ...load, op: "upload", connections: Math.min(100, row.connections), count: row.files, keyPrefix: "f_" });
      Bun.spawnSync(["sync"]);
      await runLoad({ ...load, op: "download", count: Math.min(row.count, row.files), keyPrefix: "f_" }); // warm, untimed
      op = "download";
    }
    // Downloads cycle over the prepared files on the same connections, as wrk's script does.
    const c0 = cpuMsOf(server.pid);
    const t0 = performance.now();
    const r = await runLoad({ ...load, op, count: row.count, keys: row.kind === "serve" ? row.files : undefined, keyPrefix: row.kind === "serve" ? "f_" : `s${round}_` });
    const ok = r.ok;
    const errors = r.count - r.ok;
    const ms = performance.now() - t0;
    const cpu = cpuMsOf(server.pid) - c0;
    return { opsPerSec: (ok * 1000) / ms, cpuUs: (cpu * 1000) / ok, errors };
  } finally {
    await server.stop();
  }
}

ensureTools();
const withCopy = args.includes("--copy");
type Who = "nginx" | "fsgw" | "fsgw-copy";
const results = new Map<string, Record<Who, Measured[]>>();
for (const row of selected) results.set(row.name, { nginx: [], fsgw: [], "fsgw-copy": [] });
for (let round = 1; round <= rounds; round++) {
  for (const row of selected) {
    const contestants: Who[] = withCopy ? ["nginx", "fsgw", "fsgw-copy"] : ["nginx", "fsgw"];
    for (const who of contestants) {
      const m = who === "nginx" ? await nginxRun(row, round) : await fsgwRun(row, round, who === "fsgw-copy" ? { zeroCopy: false } : {});
      results.get(row.name)![who].push(m);
      console.log(`${row.name.padEnd(10)} r${round} ${who.padEnd(7)} ${m.opsPerSec.toFixed(0).padStart(7)} ops/s  server CPU ${m.cpuUs.toFixed(1).padStart(8)} us/exchange${m.errors ? `  errors ${m.errors}` : ""}`);
    }
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
console.log(`\n| exchange | server | connections | ops/s | server CPU µs/exchange | ÷ nginx (CPU) |`);
console.log(`|---|---|---|---|---|---|`);
for (const row of selected) {
  const r = results.get(row.name)!;
  const n = median(r.nginx.map((m) => m.cpuUs));
  for (const who of ["nginx", "fsgw", "fsgw-copy"] as const) {
    if (r[who].length === 0) continue;
    const cpu = median(r[who].map((m) => m.cpuUs));
    console.log(`| ${row.name} | ${who} | ${row.connections} | ${median(r[who].map((m) => m.opsPerSec)).toFixed(0)} | ${cpu.toFixed(1)} | ${(cpu / n).toFixed(2)} |`);
  }
}
