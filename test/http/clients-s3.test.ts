// The AWS CLI, rclone and s3cmd against the HTTP front door on the S3 store (a one-node Swift on
// loopback behind the gateway), with auth off and with SigV4 and a minted access key
// (test/helpers/s3-clients.ts has the tests).
import { clientSuites } from "../helpers/s3-clients";

clientSuites([
  { name: "on the S3 store (Swift), auth off", sigv4: false, s3: true, bigBytes: 20 * 1024 * 1024 },
  { name: "on the S3 store (Swift), SigV4", sigv4: true, s3: true, bigBytes: 20 * 1024 * 1024 },
]);
