// What resuming costs: a resumable upload of 256 MiB broken K times at random points, half by a
// hang-up (FIN: every byte sent reaches the server) and half by a reset (RST: the kernel drops
// what the server had not read yet), against the same upload unbroken, alternated. Printed: bytes
// re-sent (sent before a break, but not on the server's disk: what RESUME's offset says), the
// bytes sent in all, time and server CPU.
//
//   bun scripts/bench-resume.ts [--breaks 20] [--rounds 3]
import { join, resolve } from "node:path";
import { WireConn } from "../src/client/wire-conn";
import { Msg, Op } from "../src/protocol/message";
import { option } from "./lib/options";
import { cpuMsOf } from "./lib/cpu";
import { startServer } from "./lib/server-process";

const root = resolve(import.meta.dir, "..");
const breaks = Number(option("--breaks", "20"));
const rounds = Number(option("--rounds", "3"));
const size = 256 * 1024 * 1024;
const body = new Uint8Array(size).map((_, i) => (i * 2654435761) >>> 24);
const digest = new Bun.CryptoHasher("sha256").update(body).digest("hex");
const runDir = join(root, ".bench", "resume-" + new Date().toISOString().replace(/[:.]/g, "-"));


async function upload(port: number, key: string, breakCount: number, seed: number): Promise<{ sent: number; resent: number }> {
  let s = seed;
  const random = (n: number) => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) % n);
  let conn = await WireConn.connect({ host: "127.0.0.1", port });
  await conn.sendFrame({ operation: Op.UPLOAD, key, size, digest, resumable: true });
  const uploadId = (await conn.readFrame()).uploadId;
  let offset = 0;
  let sent = 0;
  let resent = 0;
  for (let b = 0; b < breakCount; b++) {
    const part = 1 + random(Math.floor((size - offset) / 4));
    await conn.write(body.subarray(offset, offset + part));
    sent += part;
    if (b % 2 === 0) conn.close();
    else conn.destroy();
    for (;;) {
      conn = await WireConn.connect({ host: "127.0.0.1", port });
      await conn.sendFrame({ operation: Op.RESUME, key, uploadId });
      const r = await conn.readFrame();
      if (r.message === Msg.START) {
        resent += offset + part - r.offset;
        offset = r.offset;
        break;
      }
      if (r.message !== "upload in progress on another connection") throw new Error(`resume: ${r.message}`);
      conn.close();
      await Bun.sleep(2);
    }
  }
  await conn.write(body.subarray(offset));
  sent += size - offset;
  const end = await conn.readFrame();
  if (end.message !== Msg.END || end.digest !== digest) throw new Error(`upload ended with ${end.message}`);
  await conn.sendFrame({ operation: Op.UPLOAD, key, message: Msg.ACK });
  conn.close();
  return { sent, resent };
}

const rows: { variant: string; ms: number; cpuMs: number; sent: number; resent: number }[] = [];
for (let round = 1; round <= rounds; round++) {
  for (const k of round % 2 ? [0, breaks] : [breaks, 0]) {
    Bun.spawnSync(["sync"]);
    const server = await startServer({ dataDir: join(runDir, `r${round}-k${k}`, "d") });
    try {
      const c0 = cpuMsOf(server.pid);
      const t0 = performance.now();
      const r = await upload(server.port, `resume-${round}`, k, round * 7919);
      const ms = performance.now() - t0;
      const row = { variant: k === 0 ? "unbroken" : `${k} breaks`, ms, cpuMs: cpuMsOf(server.pid) - c0, ...r };
      rows.push(row);
      console.log(`r${round} ${row.variant.padEnd(10)} ${ms.toFixed(0).padStart(6)} ms  server CPU ${row.cpuMs.toFixed(0).padStart(5)} ms  sent ${(r.sent / 2 ** 20).toFixed(1)} MiB  re-sent ${(r.resent / 2 ** 20).toFixed(1)} MiB`);
    } finally {
      await server.stop();
    }
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
console.log(`\n| upload of 256 MiB | time ms | server CPU ms | MiB sent | MiB re-sent |`);
console.log(`|---|---|---|---|---|`);
for (const v of ["unbroken", `${breaks} breaks`]) {
  const r = rows.filter((x) => x.variant === v);
  console.log(`| ${v} | ${median(r.map((x) => x.ms)).toFixed(0)} | ${median(r.map((x) => x.cpuMs)).toFixed(0)} | ${(median(r.map((x) => x.sent)) / 2 ** 20).toFixed(1)} | ${(median(r.map((x) => x.resent)) / 2 ** 20).toFixed(1)} |`);
}
