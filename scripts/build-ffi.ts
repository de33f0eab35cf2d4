// `bun scripts/build-ffi.ts`: builds the C thread pool now (start-up and tests also build it when
// missing or stale, so this is only for seeing gcc's output by hand).
import { ensureLibrary } from "../src/ffi/build";

console.log(`built ${ensureLibrary()}`);
