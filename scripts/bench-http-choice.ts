// How should fsgw's HTTP front door (issue 25) send a body? Measured before choosing: server CPU per
// GET of a 50 KiB file, 500 keep-alive connections driven by `wrk`, four contestants on the same
// files, alternated in every round (A B C D A B C D ...):
//
//   nginx        Debian nginx, 2 workers, sendfile on (the yardstick)
//   serve-file   Bun.serve answering new Response(Bun.file(path)) (what Bun offers for files)
//   serve-bytes  Bun.serve answering the bytes fsgw's inline read takes from the page cache
//                (fsgw_read_cached into a fresh buffer: one open, fstat, read, close on the loop)
//   listen-send  a minimal HTTP/1.1 codec on Bun.listen (the machinery the TCP protocol runs on),
//                sending the head and the file from the page cache in one call (fsgw_open_cached +
//                fsgw_sendfile_now: the TCP download's path)
//
//   bun scripts/bench-http-choice.ts [--rounds 3] [--seconds 5] [--files 2000]
//
// Each contestant but nginx runs as `bun scripts/bench-http-choice.ts --serve <name> --dir D --port P`.
// Server CPU: every thread of its processes (/proc/<pid>/task/*/schedstat; nginx: master and workers).
// nginx and wrk come from Debian: `apt-get install nginx-light wrk` (scripts/bench-nginx.ts installs
// them when missing, as root).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Socket } from "bun";
import { cpuMsOf } from "./lib/cpu";
import { option } from "./lib/options";
import { freePort } from "./lib/server-process";

const root = resolve(import.meta.dir, "..");
const SIZE = 50 * 1024;

// ---- the contestants' servers (run in their own process) ----

async function serve(name: string, dir: string, port: number): Promise<void> {
  if (name === "serve-file") {
    Bun.serve({ port, hostname: "127.0.0.1", fetch: (req) => new Response(Bun.file(join(dir, new URL(req.url).pathname))) });
  } else if (name === "serve-bytes") {
    const { InlineFs } = await import("../src/ffi/pool-binding");
    const fs = new InlineFs();
    Bun.serve({
      port,
      hostname: "127.0.0.1",
      fetch(req) {
        const into = new Uint8Array(SIZE);
        const n = fs.readCached(join(dir, new URL(req.url).pathname), into);
        return n >= 0 ? new Response(into.subarray(0, n)) : new Response("not cached", { status: 503 });
      },
    });
  } else if (name === "listen-send") {
    const { InlineFs, closeFd } = await import("../src/ffi/pool-binding");
    const fs = new InlineFs();
    const encoder = new TextEncoder();
    const fdOf = (s: Socket<{ buf: string }>) => (s as unknown as { fd: number }).fd;
    let fallbacks = 0;
    process.on("SIGTERM", () => {
      console.error(`listen-send: ${fallbacks} responses not sent whole from the page cache in one call`);
      process.exit(0);
    });
    Bun.listen<{ buf: string }>({
      hostname: "127.0.0.1",
      port,
      socket: {
        open(s) {
          s.data = { buf: "" };
        },
        data(s, chunk) {
          // wrk sends one request at a time per connection: a head ends with CRLFCRLF.
          s.data.buf += chunk.toString("latin1");
          for (let end = s.data.buf.indexOf("\r\n\r\n"); end >= 0; end = s.data.buf.indexOf("\r\n\r\n")) {
            const line = s.data.buf.slice(0, s.data.buf.indexOf("\r\n"));
            s.data.buf = s.data.buf.slice(end + 4);
            const path = join(dir, line.split(" ")[1] ?? "/");
            const fd = fs.openCached(path);
            if (fd < 0) {
              s.write("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
              continue;
            }
            const size = fs.lastSize;
            const head = encoder.encode(`HTTP/1.1 200 OK\r\ncontent-length: ${size}\r\n\r\n`);
            const sent = fs.sendfileNow(fdOf(s), fd, 0, size, head, null);
            closeFd(fd);
            if (sent === head.length + size) continue;
            // Not all of it from the page cache in one call (a page not cached yet, a full socket):
            // the rest through memory, counted (a real codec would send it by the pool's sendfile).
            fallbacks++;
            const body = new Uint8Array(size);
            const n = fs.readCached(path, body);
            const whole = new Uint8Array(head.length + size);
            whole.set(head);
            whole.set(body.subarray(0, Math.max(0, n)), head.length);
            s.write(whole.subarray(Math.max(0, sent)));
          }
        },
      },
    });
  }
  console.log("ready");
  await new Promise(() => {});
}

if (option("--serve", "") !== "") {
  await serve(option("--serve", ""), option("--dir", ""), Number(option("--port", "0")));
}

// ---- the benchmark ----

for (const tool of ["nginx", "wrk"]) {
  if (Bun.which(tool, { PATH: `${process.env.PATH}:/usr/sbin` }) === null) {
    console.error(`bench-http-choice: ${tool} is missing: apt-get install nginx-light wrk (or run scripts/bench-nginx.ts once, which does)`);
    process.exit(2);
  }
}
const rounds = Number(option("--rounds", "3"));
const seconds = Number(option("--seconds", "5"));
const files = Number(option("--files", "2000"));
const dir = join(root, ".bench", `http-choice-${files}`);
if (!existsSync(join(dir, `f_${files - 1}`))) {
  mkdirSync(dir, { recursive: true });
  const body = new Uint8Array(SIZE).fill(97);
  for (let i = 0; i < files; i++) writeFileSync(join(dir, `f_${i}`), body);
}
const luaPath = join(dir, "..", `http-choice-${files}.lua`);
writeFileSync(luaPath, `counter = 0\nrequest = function()\n  counter = counter + 1\n  return wrk.format("GET", "/f_" .. (counter % ${files}))\nend\n`);

function treeCpuMs(pids: number[]): number {
  return pids.reduce((sum, pid) => sum + cpuMsOf(pid), 0);
}

interface Contestant {
  port: number;
  pids: number[];
  stop(): void;
}

async function startNginx(): Promise<Contestant> {
  const port = freePort();
  const conf = join(dir, "..", `nginx-http-choice.conf`);
  const prefix = join(dir, "..", "nginx-http-choice");
  mkdirSync(prefix, { recursive: true });
  writeFileSync(
    conf,
    `worker_processes 2; daemon off; pid ${prefix}/nginx.pid; error_log ${prefix}/error.log;
events { worker_connections 4096; }
http { access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;
  server { listen 127.0.0.1:${port}; root ${dir}; } }\n`,
  );
  const nginx = Bun.which("nginx", { PATH: `${process.env.PATH}:/usr/sbin` })!;
  const proc = Bun.spawn([nginx, "-c", conf, "-p", prefix], { stdout: "ignore", stderr: "ignore" });
  await Bun.sleep(500);
  const children = readFileSync(`/proc/${proc.pid}/task/${proc.pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  return { port, pids: [proc.pid, ...children], stop: () => proc.kill("SIGQUIT") };
}

async function startBun(name: string): Promise<Contestant> {
  const port = freePort();
  const proc = Bun.spawn([process.execPath, import.meta.path, "--serve", name, "--dir", dir, "--port", String(port)], { stdout: "pipe", stderr: "inherit" });
  const reader = proc.stdout.getReader();
  await reader.read(); // "ready"
  return { port, pids: [proc.pid], stop: () => proc.kill() };
}

function wrk(port: number, secs: number): { requests: number; non2xx: number } {
  const r = Bun.spawnSync(["wrk", "-t", "1", "-c", "500", "-d", `${secs}s`, "-s", luaPath, `http://127.0.0.1:${port}/`], { stdout: "pipe", stderr: "pipe" });
  const out = r.stdout.toString();
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? "NaN");
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? "0");
  return { requests, non2xx };
}

const names = ["nginx", "serve-file", "serve-bytes", "listen-send"] as const;
const results: Record<string, { us: number; rps: number }[]> = Object.fromEntries(names.map((n) => [n, []]));
for (let round = 1; round <= rounds; round++) {
  for (const name of names) {
    const c = name === "nginx" ? await startNginx() : await startBun(name);
    wrk(c.port, 1); // warm: JIT, page cache, nginx's open files
    const cpu0 = treeCpuMs(c.pids);
    const { requests, non2xx } = wrk(c.port, seconds);
    const cpuMs = treeCpuMs(c.pids) - cpu0;
    c.stop();
    await Bun.sleep(300);
    if (non2xx > 0) console.error(`${name}: ${non2xx} responses were not 2xx`);
    results[name]!.push({ us: (cpuMs * 1000) / requests, rps: requests / seconds });
    console.log(`round ${round} ${name.padEnd(12)} ${(requests / seconds).toFixed(0).padStart(7)} req/s  server CPU ${((cpuMs * 1000) / requests).toFixed(1).padStart(6)} µs/request`);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const nginxUs = median(results.nginx!.map((r) => r.us));
console.log(`\nmedians of ${rounds} rounds, GET 50 KiB, 500 keep-alive connections (wrk -t1 -c500 -d${seconds}s):`);
console.log("| server | req/s | server CPU µs/request | ÷ nginx |");
console.log("|---|---|---|---|");
for (const name of names) {
  const us = median(results[name]!.map((r) => r.us));
  console.log(`| ${name} | ${median(results[name]!.map((r) => r.rps)).toFixed(0)} | ${us.toFixed(1)} | ${(us / nginxUs).toFixed(2)} |`);
}

