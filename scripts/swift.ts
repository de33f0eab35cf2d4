// Runs a one-node OpenStack Swift (an S3 store) on loopback until Ctrl-C, installing it first when
// missing (as root): for trying fsgw's S3 store by hand. The tests use scripts/lib/swift.ts directly.
//
//   bun scripts/swift.ts [bucket]
import { startSwift } from "./lib/swift";

const swift = await startSwift(process.argv[2] ?? "fsgw");
console.log(`S3 endpoint ${swift.endpoint}  region ${swift.region}  bucket ${swift.bucket}`);
console.log(`access key ${swift.accessKeyId}  secret ${swift.secretAccessKey}  (path-style; Ctrl-C stops it)`);
const stop = () => void swift.stop().then(() => process.exit(0));
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
await new Promise(() => {});
