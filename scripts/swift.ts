// Runs a one-node OpenStack Swift (an S3 store) on loopback until Ctrl-C, installing it first when
// missing (as root): for trying fsgw's S3 store by hand. The tests use scripts/lib/swift.ts directly.
//
//   npx bun scripts/swift.ts [bucket]
//
// It stops (Swift's servers, memcached, its temporary directory) on SIGINT, SIGTERM, SIGHUP (the
// terminal went) and when the command that started it ends: `npx bun scripts/swift.ts &` then
// `kill $!` signals npm alone, which does not pass it on.
import { watchStarter } from "../src/util/starter";
import { startSwift } from "./lib/swift";

const swift = await startSwift(process.argv[2] ?? "fsgw");
console.log(`S3 endpoint ${swift.endpoint}  region ${swift.region}  bucket ${swift.bucket}`);
console.log(`access key ${swift.accessKeyId}  secret ${swift.secretAccessKey}  (path-style; Ctrl-C stops it)`);
let stopping = false;
const stop = (why: string) => {
  if (stopping) return;
  stopping = true;
  // stderr: stdout may be the terminal that just went away.
  try {
    process.stderr.write(`swift: stopping (${why})\n`);
  } catch {}
  void swift.stop().then(() => process.exit(0));
};
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => stop(signal));
watchStarter(({ pid }) => stop(`the command that started it, process ${pid}, ended`));
await new Promise(() => {});
