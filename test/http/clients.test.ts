// The AWS CLI, rclone and s3cmd against the HTTP front door on the file store, with auth off and
// with SigV4 and a minted access key (test/helpers/s3-clients.ts has the tests; the S3 store's
// runs are test/http/clients-s3.test.ts).
import { clientSuites } from "../helpers/s3-clients";

clientSuites([
  { name: "auth off", sigv4: false, s3: false, bigBytes: 100 * 1024 * 1024 },
  { name: "SigV4 with an access key of fsgw's", sigv4: true, s3: false, bigBytes: 20 * 1024 * 1024 },
]);
