// The test entry of the server: `fsgw serve` exactly as src/main.ts runs it, with faults that
// tests ask for by environment variable. The shipped paths hold no fault hooks; tests that need
// one start the server through this file.
//   bun test/entry/serve-with-faults.ts --port 0 ...      (the arguments of `fsgw serve`)
//
//   TEST_INLINE_REFUSED=1   every inline call refuses, as if nothing were cached: every operation
//                           takes the pool's path (the C library's test hook, process-wide)
//   TEST_FAULT_LOOP=i ...   loop i throws a bug no connection catches (loop-with-faults.ts)
//   TEST_STALL_TRIGGER=path TEST_STALL_MS=n   once the file appears, each loop's thread blocks for
//                           n ms (loop-with-faults.ts)
import { serve } from "../../src/serve";
import { setInlineRefused } from "../helpers/native-hooks";

if (process.env.TEST_INLINE_REFUSED === "1") setInlineRefused(true);
process.exitCode = await serve(process.argv.slice(2), { loopWorker: new URL("./loop-with-faults.ts", import.meta.url) });
