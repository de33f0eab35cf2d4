// The HTTP front door against nginx (issue 25's figures): server CPU per request and requests per
// second, both driven by `wrk` (500 keep-alive connections, one thread), alternated in every round
// (nginx, fsgw, nginx, fsgw ...):
//
//   get-50k  GET of 2000 files of 50 KiB: nginx static (2 workers, sendfile on) against fsgw's
//            GetObject (default configuration: one loop per CPU)
//   put-5k   PUT of fresh 5 KiB bodies: nginx WebDAV (dav_methods PUT) against fsgw's PutObject
//   put-64m  PUT of 64 MiB bodies over 4 connections (8 keys overwritten in turn, so that the disk
//            does not fill): throughput (MiB/s) and server CPU per MiB
//
//   bun scripts/bench-http.ts [--rounds 3] [--seconds 5] [--only get-50k,put-5k,put-64m] [--loops 0]
//
// --loops: fsgw's event loops (0, the default configuration: one per CPU).
//
// Server CPU: every thread of the server's processes (/proc/<pid>/task/*/schedstat). nginx and wrk
// come from Debian (`apt-get install nginx-light wrk`). Data lives under .bench/ and is never
// deleted between runs (see BENCHMARKS.md on this disk).
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { connect } from "../src/client/client";
import { cpuMsOf } from "./lib/cpu";
import { option } from "./lib/options";
import { freePort, startServer } from "./lib/server-process";

const root = resolve(import.meta.dir, "..");
const rounds = Number(option("--rounds", "3"));
const seconds = Number(option("--seconds", "5"));
const only = option("--only", "get-50k,put-5k,put-64m").split(",");
const loops = Number(option("--loops", "0"));
const ROWS = ["get-50k", "put-5k", "put-64m"];
/** MiB of a put-64m body; its rows report per MiB. */
const BIG_MIB = 64;
const FILES = 2000;
const nginxBin = Bun.which("nginx", { PATH: `${process.env.PATH}:/usr/sbin` });
if (nginxBin === null || Bun.which("wrk") === null) {
  console.error("bench-http: nginx or wrk is missing: apt-get install nginx-light wrk");
  process.exit(2);
}
const bench = join(root, ".bench", "http");
const staticDir = join(bench, "static");
const fsgwData = join(bench, "fsgw-data");
const runDir = join(bench, `run-${Date.now()}`);
mkdirSync(runDir, { recursive: true });

interface Contestant {
  port: number;
  pids: () => number[];
  stop(): Promise<void>;
}

async function startNginx(): Promise<Contestant> {
  const port = freePort();
  const prefix = join(runDir, "nginx");
  mkdirSync(join(prefix, "put"), { recursive: true });
  const conf = join(prefix, "nginx.conf");
  writeFileSync(
    conf,
    `worker_processes 2; daemon off; pid ${prefix}/nginx.pid; error_log ${prefix}/error.log;
user root;
events { worker_connections 4096; }
http { access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000; client_body_temp_path ${prefix}/tmp;
  server { listen 127.0.0.1:${port};
    location /fsgw/ { alias ${staticDir}/; }
    location /put/ { root ${prefix}; dav_methods PUT; create_full_put_path on; client_max_body_size 65m; } } }\n`,
  );
  const proc = Bun.spawn([nginxBin!, "-c", conf, "-p", prefix], { stdout: "ignore", stderr: "ignore" });
  await Bun.sleep(500);
  const pids = () => [proc.pid, ...readFileSync(`/proc/${proc.pid}/task/${proc.pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number)];
  return { port, pids, stop: async () => void proc.kill("SIGQUIT") };
}

/**
 * fsgw on the GET row's prepared files, or (PUT rows) on a data directory of this run's, as fresh
 * as nginx's: a directory that earlier runs filled with files makes every create slower.
 */
async function startFsgw(row: string): Promise<Contestant> {
  const port = freePort();
  const server = await startServer({ dataDir: row === "get-50k" ? fsgwData : join(runDir, "fsgw-put"), httpPort: port, loops });
  return { port, pids: () => [server.pid], stop: async () => void (await server.stop()) };
}

/** The same 2000 files of 50 KiB for both: plain files for nginx, keys for fsgw (uploaded once). */
async function prepare(): Promise<void> {
  const body = new Uint8Array(50 * 1024).fill(98);
  if (!existsSync(join(staticDir, `f_${FILES - 1}`))) {
    mkdirSync(staticDir, { recursive: true });
    for (let i = 0; i < FILES; i++) writeFileSync(join(staticDir, `f_${i}`), body);
  }
  if (!existsSync(join(bench, "fsgw-ready"))) {
    const server = await startServer({ dataDir: fsgwData });
    const client = connect({ port: server.port, poolSize: 16 });
    await Promise.all(Array.from({ length: FILES }, (_, i) => client.upload(`f_${i}`, body)));
    client.close();
    await server.stop();
    writeFileSync(join(bench, "fsgw-ready"), "");
  }
}

function wrk(port: number, script: string, secs: number, connections = 500): { requests: number; non2xx: number } {
  const r = Bun.spawnSync(["wrk", "-t", "1", "-c", String(connections), "-d", `${secs}s`, "--timeout", "30s", "-s", script, `http://127.0.0.1:${port}/`], { stdout: "pipe", stderr: "pipe" });
  const out = r.stdout.toString();
  return { requests: Number(/(\d+) requests in/.exec(out)?.[1] ?? "NaN"), non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? "0") };
}

function scriptFor(row: string, label: string, round: number): string {
  const path = join(runDir, `${row}-${label}-${round}.lua`);
  const base = label === "nginx" ? "put" : "fsgw";
  const lua =
    row === "get-50k"
      ? `counter = 0\nrequest = function()\n  counter = counter + 1\n  return wrk.format("GET", "/fsgw/f_" .. (counter % ${FILES}))\nend\n`
      : row === "put-5k"
        ? `counter = 0\nbody = string.rep("p", 5120)\nrequest = function()\n  counter = counter + 1\n  return wrk.format("PUT", "/${base}/r${round}_" .. counter, nil, body)\nend\n`
        : `counter = 0\nbody = string.rep("q", ${BIG_MIB * 1024 * 1024})\nrequest = function()\n  counter = counter + 1\n  return wrk.format("PUT", "/${base}/big_" .. (counter % 8), nil, body)\nend\n`;
  writeFileSync(path, lua);
  return path;
}

const treeCpu = (pids: number[]) => pids.reduce((sum, pid) => sum + cpuMsOf(pid), 0);
const results: Record<string, number[]> = {};
for (let round = 1; round <= rounds; round++) {
  for (const row of ROWS.filter((r) => only.includes(r))) {
    if (row === "get-50k") await prepare();
    for (const label of ["nginx", "fsgw"]) {
      const c = label === "nginx" ? await startNginx() : await startFsgw(row);
      // Warm, as a server that has been running is: the page cache (GET), Bun's JIT (a fresh
      // fsgw spends ~30 µs per request of its first seconds compiling: measured per thread,
      // JITWorker, in a 5 s PUT run from a cold start, ~8 µs after a 2 s warm-up). The 64 MiB row
      // is warm after its first body.
      if (row !== "put-64m") wrk(c.port, scriptFor(row, label, round), 2);
      const pids = c.pids();
      const cpu0 = treeCpu(pids);
      const big = row === "put-64m";
      const { requests, non2xx } = wrk(c.port, scriptFor(row, label, round + 100), seconds, big ? 4 : 500);
      const cpuMs = treeCpu(pids) - cpu0;
      await c.stop();
      if (non2xx > 0) console.error(`${row} ${label}: ${non2xx} answers were not 2xx`);
      // put-64m: per MiB and MiB/s; the others: per request and requests/s.
      const units = big ? requests * BIG_MIB : requests;
      const us = (cpuMs * 1000) / units;
      (results[`${row} ${label} us`] ??= []).push(us);
      (results[`${row} ${label} rps`] ??= []).push(units / seconds);
      console.log(`round ${round} ${row} ${label.padEnd(6)} ${(units / seconds).toFixed(0).padStart(7)} ${big ? "MiB/s" : "req/s"}  server CPU ${us.toFixed(1).padStart(6)} µs/${big ? "MiB" : "request"}`);
    }
  }
}
// Every timed run is over: the PUT rows' files (the GET row's stay for the next run) go now, not
// between runs (this disk creates files slowly for minutes after a mass delete).
rmSync(runDir, { recursive: true, force: true });

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`\nmedians of ${rounds} rounds (wrk -t1 -c500 -d${seconds}s):`);
console.log("| row | nginx req/s (MiB/s) | nginx µs/request (/MiB) | fsgw req/s (MiB/s) | fsgw µs/request (/MiB) | fsgw ÷ nginx (CPU) | fsgw ÷ nginx (rate) | CPU ratio of each round (its median) |");
console.log("|---|---|---|---|---|---|---|---|");
for (const row of ROWS.filter((r) => only.includes(r))) {
  const n = median(results[`${row} nginx us`]!);
  const f = median(results[`${row} fsgw us`]!);
  const nr = median(results[`${row} nginx rps`]!);
  const fr = median(results[`${row} fsgw rps`]!);
  // Each round's two contestants ran back to back: their ratio shares that round's conditions.
  const perRound = results[`${row} fsgw us`]!.map((x, i) => x / results[`${row} nginx us`]![i]!);
  console.log(`| ${row} | ${nr.toFixed(0)} | ${n.toFixed(1)} | ${fr.toFixed(0)} | ${f.toFixed(1)} | ${(f / n).toFixed(2)} | ${(fr / nr).toFixed(2)} | ${perRound.map((r) => r.toFixed(2)).join(", ")} (${median(perRound).toFixed(2)}) |`);
}
