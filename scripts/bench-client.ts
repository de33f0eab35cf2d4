// Is the load generator the bottleneck? Drives the bench exchange (a protocol round trip, no I/O)
// at a few connection counts against a fresh server and prints, for each, ops/s and the CPU per
// exchange of the client and of the server (from /proc), measured over the same run.
//   bun scripts/bench-client.ts [count]
import { readFileSync } from "node:fs";
import { runLoad } from "../src/client/load";
import { startServer } from "./lib/server-process";

const count = Number(process.argv[2] ?? 200_000);
const server = await startServer({});
const serverCpuMs = () => {
  const f = readFileSync(`/proc/${server.pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(f[11]) + Number(f[12])) * 10;
};
const load = (connections: number, n: number) => runLoad({ host: "127.0.0.1", port: server.port, op: "bench", connections, count: n, size: 0 });
await load(50, 50_000); // warm-up
console.log("| connections | ops/s | client µs/op (share of a core) | server µs/op (share of a core) |");
console.log("|---|---|---|---|");
for (const connections of [10, 50, 200]) {
  const before = serverCpuMs();
  const r = await load(connections, count);
  const server = serverCpuMs() - before;
  console.log(
    `| ${connections} | ${r.opsPerSec.toFixed(0)} | ${((r.clientCpuMs * 1000) / r.ok).toFixed(2)} (${((100 * r.clientCpuMs) / r.ms).toFixed(0)}%) | ${((server * 1000) / r.ok).toFixed(2)} (${((100 * server) / r.ms).toFixed(0)}%) |`,
  );
}
await server.stop();
