// fsgw's S3 API against OpenStack Swift's (its s3api middleware): what a user could run instead
// as a local S3 server on this machine (issue 25's yardstick: fsgw ≤ 0.2× Swift's whole-cluster
// CPU per PutObject and GetObject). Both are driven by `wrk` with presigned URLs (SigV4 in the
// query: wrk cannot sign), made beforehand with Bun's S3 client and each server's own credentials
// (fsgw with auth "token" and a minted access key, so both check every signature):
//
//   put-5k   PUT of 5 KiB bodies, a fresh key per request (20,000 presigned URLs, then reused)
//   get-50k  GET of 2,000 objects of 50 KiB, uploaded once
//
//   bun scripts/bench-swift-s3api.ts [--rounds 2] [--seconds 5] [--connections 64]
//
// Server CPU: fsgw's process (every thread); Swift's every process (proxy, object, container and
// account servers, memcached: /proc/<pid>/task/*/schedstat). Alternated in every round (Swift,
// fsgw, Swift, fsgw ...). Swift is installed from Debian when missing (scripts/lib/swift.ts).
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Access, createAccessKey, newSecret } from "../src/auth/token";
import { cpuMsOf } from "./lib/cpu";
import { option } from "./lib/options";
import { freePort, startServer } from "./lib/server-process";
import { startSwift } from "./lib/swift";
import { canonicalRequest, signatureOf, uriEncode } from "../src/http/sigv4";
import type { RequestHead } from "../src/http/request-head";

const root = resolve(import.meta.dir, "..");
const rounds = Number(option("--rounds", "2"));
const seconds = Number(option("--seconds", "5"));
const connections = Number(option("--connections", "64"));
const OBJECTS = 2000;
const PUT_URLS = 20_000;
if (Bun.which("wrk") === null) {
  console.error("bench-swift-s3api: wrk is missing: apt-get install wrk");
  process.exit(2);
}
const runDir = join(root, ".bench", "swift-s3api", `run-${Date.now()}`);
mkdirSync(runDir, { recursive: true });

interface Contestant {
  name: "swift" | "fsgw";
  client: Bun.S3Client;
  base: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  cpuMs(): number;
}

/**
 * A presigned path (path and query) for `key`, signed here: Bun's presign leaves the ':' of
 * Swift's access key ids ("test:tester") unencoded in X-Amz-Credential, which Swift's canonical
 * query encodes, so its signatures never match there.
 */
function presignedPath(c: Contestant, method: string, key: string): string {
  const amzDate = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  const date = amzDate.slice(0, 8);
  const scope = `${date}/us-east-1/s3/aws4_request`;
  const query = new URLSearchParams({ "X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Credential": `${c.accessKeyId}/${scope}`, "X-Amz-Date": amzDate, "X-Amz-Expires": "3600", "X-Amz-SignedHeaders": "host" });
  const path = `/${c.bucket}/${key}`;
  const head = { method, path, query: "", headers: new Map([["host", new URL(c.base).host]]) } as unknown as RequestHead;
  const sig = { accessKeyId: c.accessKeyId, date, region: "us-east-1", service: "s3", amzDate, signedHeaders: ["host"], signature: "", payloadHash: "UNSIGNED-PAYLOAD", presigned: true, expiresSeconds: 3600 };
  const toSign = `AWS4-HMAC-SHA256\n${amzDate}\n${scope}\n${new Bun.CryptoHasher("sha256").update(canonicalRequest(head, query, sig)).digest("hex")}`;
  query.set("X-Amz-Signature", signatureOf(c.secretAccessKey, date, "us-east-1", "s3", toSign));
  return `${path}?${[...query].map(([n, v]) => `${uriEncode(n, true)}=${uriEncode(v, true)}`).join("&")}`;
}

console.log("starting Swift and fsgw ...");
const swift = await startSwift("fsgw-yardstick");
const swiftSide: Contestant = {
  name: "swift",
  client: new Bun.S3Client({ endpoint: swift.endpoint, bucket: swift.bucket, region: swift.region, accessKeyId: swift.accessKeyId, secretAccessKey: swift.secretAccessKey }),
  base: swift.endpoint,
  bucket: swift.bucket,
  accessKeyId: swift.accessKeyId,
  secretAccessKey: swift.secretAccessKey,
  cpuMs: () => swift.pids.reduce((sum, pid) => sum + cpuMsOf(pid), 0),
};
const secret = newSecret();
writeFileSync(join(runDir, "secret"), secret);
const httpPort = freePort();
const fsgw = await startServer({ dataDir: join(runDir, "fsgw-data"), httpPort, auth: "token", authSecretFile: join(runDir, "secret") });
const keys = createAccessKey(new TextEncoder().encode(secret), { id: "bench", access: Access.READ | Access.WRITE, prefix: "", expiresAtMs: Date.now() + 86_400_000 });
const fsgwSide: Contestant = {
  name: "fsgw",
  client: new Bun.S3Client({ endpoint: `http://127.0.0.1:${httpPort}`, bucket: "fsgw", region: "us-east-1", ...keys }),
  base: `http://127.0.0.1:${httpPort}`,
  bucket: "fsgw",
  ...keys,
  cpuMs: () => cpuMsOf(fsgw.pid),
};
const contestants = [swiftSide, fsgwSide];

// The GET row's objects, on both.
const body = new Uint8Array(50 * 1024).fill(98);
for (const c of contestants) {
  for (let i = 0; i < OBJECTS; i += 50) await Promise.all(Array.from({ length: 50 }, (_, j) => c.client.write(`g_${i + j}`, body)));
}

/** A Lua script for wrk that cycles through presigned paths (path and query of each URL). */
function script(c: Contestant, row: string, round: number): string {
  const method = row === "put-5k" ? "PUT" : "GET";
  const count = row === "put-5k" ? PUT_URLS : OBJECTS;
  const paths: string[] = [];
  for (let i = 0; i < count; i++) {
    const key = row === "put-5k" ? `p${round}_${i}` : `g_${i}`;
    paths.push(presignedPath(c, method, key));
  }
  const list = join(runDir, `${c.name}-${row}-${round}.txt`);
  writeFileSync(list, paths.join("\n") + "\n");
  const lua = join(runDir, `${c.name}-${row}-${round}.lua`);
  writeFileSync(
    lua,
    `paths = {}\nfor line in io.lines("${list}") do paths[#paths + 1] = line end\ncounter = 0\n` +
      (method === "PUT" ? `body = string.rep("p", 5120)\n` : "") +
      `request = function()\n  counter = counter + 1\n  return wrk.format("${method}", paths[(counter % #paths) + 1], nil, ${method === "PUT" ? "body" : "nil"})\nend\n`,
  );
  return lua;
}

function wrk(base: string, lua: string): { requests: number; non2xx: number } {
  const r = Bun.spawnSync(["wrk", "-t", "1", "-c", String(connections), "-d", `${seconds}s`, "--timeout", "10s", "-s", lua, `${base}/`], { stdout: "pipe", stderr: "pipe" });
  const out = r.stdout.toString();
  return { requests: Number(/(\d+) requests in/.exec(out)?.[1] ?? "NaN"), non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? "0") };
}

const results = new Map<string, { us: number; rps: number }[]>();
for (let round = 1; round <= rounds; round++) {
  for (const row of ["put-5k", "get-50k"]) {
    for (const c of contestants) {
      const lua = script(c, row, round);
      const cpu0 = c.cpuMs();
      const { requests, non2xx } = wrk(c.base, lua);
      const cpuMs = c.cpuMs() - cpu0;
      const ok = requests - non2xx;
      if (non2xx > 0) console.error(`${row} ${c.name}: ${non2xx} answers were not 2xx`);
      const us = (cpuMs * 1000) / ok;
      results.set(`${row} ${c.name}`, [...(results.get(`${row} ${c.name}`) ?? []), { us, rps: ok / seconds }]);
      console.log(`round ${round} ${row} ${c.name.padEnd(5)} ${(ok / seconds).toFixed(0).padStart(6)} req/s  server CPU ${us.toFixed(1).padStart(7)} µs/request`);
    }
  }
}
await fsgw.stop();
await swift.stop();

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`\nmedians of ${rounds} rounds (wrk -t1 -c${connections} -d${seconds}s, presigned SigV4 URLs):`);
console.log("| row | Swift req/s | Swift µs/request (whole cluster) | fsgw req/s | fsgw µs/request | fsgw ÷ Swift (CPU) |");
console.log("|---|---|---|---|---|---|");
for (const row of ["put-5k", "get-50k"]) {
  const s = results.get(`${row} swift`)!;
  const f = results.get(`${row} fsgw`)!;
  const su = median(s.map((x) => x.us));
  const fu = median(f.map((x) => x.us));
  console.log(`| ${row} | ${median(s.map((x) => x.rps)).toFixed(0)} | ${su.toFixed(1)} | ${median(f.map((x) => x.rps)).toFixed(0)} | ${fu.toFixed(1)} | ${(fu / su).toFixed(3)} |`);
}
