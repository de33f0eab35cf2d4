// The test entry of the server: `fsgw serve` exactly as src/main.ts runs it, except that each
// event loop's thread runs loop-with-faults.ts, which can inject a deliberate bug. The shipped
// paths hold no fault hooks; tests that need one start the server through this file.
//   bun test/entry/serve-with-faults.ts --port 0 ...      (the arguments of `fsgw serve`)
import { serve } from "../../src/serve";

process.exitCode = await serve(process.argv.slice(2), { loopWorker: new URL("./loop-with-faults.ts", import.meta.url) });
