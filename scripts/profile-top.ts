// Prints a .cpuprofile (from `bun --cpu-prof`, /debug/profile, or Chrome DevTools) as a
// `pprof -top`-like table: self and total time per function, hottest first.
//   bun scripts/profile-top.ts <file.cpuprofile> [rows]
import { readFileSync } from "node:fs";
import { formatTop } from "../src/observe/profile-top";

const [file, rows] = process.argv.slice(2);
if (file === undefined) {
  console.error("usage: bun scripts/profile-top.ts <file.cpuprofile> [rows]");
  process.exit(2);
}
console.log(formatTop(JSON.parse(readFileSync(file, "utf8")), Number(rows ?? 30)));
