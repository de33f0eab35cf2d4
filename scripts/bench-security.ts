// What security costs per exchange: fsgw with security off, with access tokens, with TLS, and with
// both, side by side in one run, alternated in every round; and beside them a bare Bun.listen
// server (scripts/lib/bare-server.ts: the same exchanges answered from memory, no storage) plain
// and with TLS, so that fsgw's cost of TLS can be compared with what Bun's TLS costs by itself.
//
//   bun scripts/bench-security.ts [--rounds 4] [--only bench,exist,upload-5k,download-50k,upload-64m]
//                                 [--before ../fsgw-before] [--variants off,before,token,before-token]
//
// --before: another checkout of fsgw (the code before a change): its server runs as the variants
// "before" (security off) and "before-token", alternated with this checkout's in every round, and
// a second table gives this checkout's CPU per exchange over the other's, so what a change to the
// checks costs on the exchanges they touch is measured side by side, not remembered.
//
// Server CPU per exchange counts every thread of the server process (/proc/<pid>/stat), including
// each connection's TLS handshake and AUTH exchange: connections are long-lived (hundreds of
// exchanges each), as they are for clients that keep their connections. Data stays under .bench/.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Access, createToken, newSecret } from "../src/auth/token";
import { runLoad, type LoadOp, type LoadOptions } from "../src/client/load";
import type { ClientTls } from "../src/client/wire-conn";
import { hasOpenssl, makeCerts } from "./lib/certs";
import { option, KiB, MiB } from "./lib/options";
import { cpuMsOf } from "./lib/cpu";
import { startServer } from "./lib/server-process";

const root = resolve(import.meta.dir, "..");
const rounds = Number(option("--rounds", "4"));

interface Row {
  name: string;
  op: LoadOp;
  size: number;
  connections: number;
  count: number;
}
const rows: Row[] = [
  { name: "bench", op: "bench", size: 0, connections: 100, count: 200_000 },
  { name: "exist", op: "exist", size: 5 * KiB, connections: 100, count: 40_000 },
  { name: "upload-5k", op: "upload", size: 5 * KiB, connections: 100, count: 20_000 },
  { name: "download-50k", op: "download", size: 50 * KiB, connections: 100, count: 40_000 },
  { name: "upload-64m", op: "upload", size: 64 * MiB, connections: 4, count: 12 },
];
const only = option("--only", "");
const selected = rows.filter((r) => only === "" || only.split(",").includes(r.name));

// "copy": security off with zeroCopy off. Over TLS bodies must pass through memory (sendfile and
// splice cannot encrypt), so fsgw's own cost of TLS is TLS minus "copy", not minus "off".
const allVariants = ["off", "copy", "token", "tls", "tls+token", "bare", "bare-tls", "before", "before-token"] as const;
type Variant = (typeof allVariants)[number];
const before = option("--before", "");
const beforeRoot = before === "" ? null : resolve(before);
const variants: readonly Variant[] = option("--variants", "")
  .split(",")
  .filter((v) => v !== "")
  .map((v) => (allVariants.includes(v as Variant) ? (v as Variant) : fail(`unknown variant ${v}`)));
if (variants.length === 0) (variants as Variant[]).push(...allVariants.filter((v) => beforeRoot !== null || !v.startsWith("before")));
if (variants.some((v) => v.startsWith("before")) && beforeRoot === null) fail("the before variants need --before <checkout>");

function fail(message: string): never {
  console.error(`bench-security: ${message}`);
  process.exit(2);
}

if (!hasOpenssl) {
  console.error("bench-security: openssl is needed to make the certificates (apt-get install openssl)");
  process.exit(2);
}
const runDir = join(root, ".bench", "security-" + new Date().toISOString().replace(/[:.]/g, "-"));
mkdirSync(runDir, { recursive: true });
const certs = makeCerts();
const secret = newSecret();
const secretFile = join(runDir, "secret");
writeFileSync(secretFile, secret);
const token = createToken(new TextEncoder().encode(secret), { id: "bench", access: Access.READ | Access.WRITE | Access.DELETE, prefix: "", expiresAtMs: Date.now() + 24 * 3600_000 });
const clientTls: ClientTls = { ca: readFileSync(certs.caCrt, "utf8") };


interface Target {
  pid: number;
  port: number;
  stop(): Promise<unknown>;
}

async function startBare(tls: boolean): Promise<Target> {
  const args = [process.execPath, join(root, "scripts/lib/bare-server.ts"), "0", ...(tls ? [certs.serverCrt, certs.serverKey] : [])];
  const proc = Bun.spawn(args, { stdout: "pipe", stderr: "inherit" });
  const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
  let text = "";
  while (!/listening (\d+)/.test(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`bare server did not start: ${text}`);
    text += new TextDecoder().decode(value);
  }
  return { pid: proc.pid, port: Number(/listening (\d+)/.exec(text)![1]), stop: () => (proc.kill(), proc.exited) };
}

const usesToken = (v: Variant) => v === "token" || v === "tls+token" || v === "before-token";

async function startFsgw(variant: Variant, dataDir: string): Promise<Target> {
  const fields: Record<string, string | number | boolean> = { dataDir, logLevel: "info" };
  if (usesToken(variant)) Object.assign(fields, { auth: "token", authSecretFile: secretFile });
  if (variant === "tls" || variant === "tls+token") Object.assign(fields, { tlsCertFile: certs.serverCrt, tlsKeyFile: certs.serverKey });
  if (variant === "copy") fields.zeroCopy = false;
  const s = await startServer(fields, {}, [], variant.startsWith("before") ? beforeRoot! : root);
  return { pid: s.pid, port: s.port, stop: () => s.stop() };
}

function clientOptions(variant: Variant): Pick<LoadOptions, "tls" | "token"> {
  return {
    ...(variant === "tls" || variant === "tls+token" || variant === "bare-tls" ? { tls: clientTls } : {}),
    ...(usesToken(variant) ? { token } : {}),
  };
}

interface Measured {
  cpuUs: number;
  opsPerSec: number;
  errors: number;
}

async function measure(row: Row, variant: Variant, round: number): Promise<Measured> {
  // Dirty pages of the previous run are written back now, not during this one (a writer that
  // meets the dirty limit does write-back work itself, on its own CPU time).
  Bun.spawnSync(["sync"]);
  // Read rows read one prepared set, the same for every variant (each server its own data directory
  // would be measured on cold caches); write rows each write into one directory per row.
  const dataDir = join(runDir, row.op === "download" || row.op === "exist" ? `read-data-${row.name}` : `data-${row.name}`, "d");
  const target = variant === "bare" || variant === "bare-tls" ? await startBare(variant === "bare-tls") : await startFsgw(variant, dataDir);
  try {
    // Every variant is driven by the same client code (WireConn), TLS and tokens or not.
    const load: LoadOptions = { host: "127.0.0.1", port: target.port, op: row.op, connections: row.connections, count: row.count, size: row.size, wireConnOnly: true, ...clientOptions(variant) };
    const reads = row.op === "download" || row.op === "exist";
    const keyPrefix = reads ? "f_" : `${variant}-r${round}-`;
    if (reads) await runLoad({ ...load, keyPrefix, count: Math.min(row.count, 2000) }); // warm, untimed
    const c0 = cpuMsOf(target.pid);
    const t0 = performance.now();
    const r = await runLoad({ ...load, keyPrefix });
    const ms = performance.now() - t0;
    const cpu = cpuMsOf(target.pid) - c0;
    return { cpuUs: (cpu * 1000) / Math.max(1, r.ok), opsPerSec: (r.ok * 1000) / ms, errors: r.count - r.ok };
  } finally {
    await target.stop();
  }
}

/** The files downloads and exists read, uploaded once (security off) before any timed run. */
async function prepareReads(row: Row): Promise<void> {
  const s = await startFsgw("off", join(runDir, `read-data-${row.name}`, "d"));
  try {
    const r = await runLoad({ host: "127.0.0.1", port: s.port, op: "upload", connections: 100, count: row.count, size: row.size, keyPrefix: "f_" });
    if (r.ok !== row.count) throw new Error(`preparing downloads: ${JSON.stringify(r.errors)}`);
  } finally {
    await s.stop();
  }
  Bun.spawnSync(["sync"]);
}

const results = new Map<string, Map<Variant, Measured[]>>();
for (const row of selected) {
  results.set(row.name, new Map(variants.map((v) => [v, []])));
  if (row.op === "download" || row.op === "exist") await prepareReads(row);
}
for (let round = 1; round <= rounds; round++) {
  for (const row of selected) {
    // Alternate the order between rounds, so that no variant always runs first or last.
    const order = round % 2 === 1 ? variants : [...variants].reverse();
    for (const variant of order) {
      if (row.op === "exist" && variant.startsWith("bare")) continue; // the bare server answers no EXIST
      const m = await measure(row, variant, round);
      results.get(row.name)!.get(variant)!.push(m);
      console.log(`${row.name.padEnd(13)} r${round} ${variant.padEnd(10)} ${m.opsPerSec.toFixed(0).padStart(7)} ops/s  server CPU ${m.cpuUs.toFixed(1).padStart(8)} us/exchange${m.errors ? `  errors ${m.errors}` : ""}`);
    }
  }
}

const median = (xs: number[]) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const ran = (v: Variant) => variants.includes(v);
if (ran("before") || ran("before-token")) {
  console.log(`\nserver CPU µs per exchange, medians of ${rounds} rounds: this checkout against --before ${before} (ratio: this ÷ before)\n`);
  console.log(`| exchange | before, security off | this, security off | this ÷ before | before, tokens | this, tokens | this ÷ before |`);
  console.log(`|---|---|---|---|---|---|---|`);
  for (const row of selected) {
    const r = results.get(row.name)!;
    const m = (v: Variant) => (ran(v) ? median(r.get(v)!.map((x) => x.cpuUs)) : NaN);
    const ratio = (a: number, b: number) => (Number.isNaN(a) || Number.isNaN(b) ? "–" : `${(a / b).toFixed(2)}×`);
    const f = (x: number) => (Number.isNaN(x) ? "–" : x >= 1000 ? x.toFixed(0) : x.toFixed(1));
    console.log(`| ${row.name} | ${f(m("before"))} | ${f(m("off"))} | ${ratio(m("off"), m("before"))} | ${f(m("before-token"))} | ${f(m("token"))} | ${ratio(m("token"), m("before-token"))} |`);
  }
}
const securityTable = ["off", "copy", "token", "tls", "tls+token", "bare", "bare-tls"].every((v) => ran(v as Variant));
if (securityTable) console.log(`\nserver CPU µs per exchange, medians of ${rounds} rounds (ratio to the same server with security off)\n`);
if (securityTable) console.log(`| exchange | fsgw off | token | copy (zeroCopy off) | TLS | TLS + token | fsgw's TLS extra (TLS − copy) | bare Bun | bare Bun TLS | Bun's TLS extra |`);
if (securityTable) console.log(`|---|---|---|---|---|---|---|---|---|---|`);
for (const row of securityTable ? selected : []) {
  const r = results.get(row.name)!;
  const m = (v: Variant) => median(r.get(v)!.map((x) => x.cpuUs));
  const off = m("off");
  const bare = m("bare");
  const f = (x: number) => (Number.isNaN(x) ? "–" : x >= 1000 ? x.toFixed(0) : x.toFixed(1));
  const cell = (v: Variant, base: number) => `${f(m(v))} (${(m(v) / base).toFixed(2)}×)`;
  console.log(
    `| ${row.name} | ${f(off)} | ${cell("token", off)} | ${cell("copy", off)} | ${cell("tls", off)} | ${cell("tls+token", off)} | ${f(m("tls") - m("copy"))} | ${f(bare)} | ${cell("bare-tls", bare)} | ${f(m("bare-tls") - bare)} |`,
  );
}
