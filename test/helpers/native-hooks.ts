// The C library's test hooks (ffi/fsgw_pool.h, "Test hooks"): bound here, by the tests and the test
// entry (test/entry/serve-with-faults.ts), and never by src/ (the shipped binding leaves them out).
// The library is loaded once per process, so a hook set here holds for every engine in it, the
// event loops' threads included.
import { dlopen, type Pointer } from "bun:ffi";
import { libraryPath } from "../../src/ffi/build";

const lib = dlopen(libraryPath, {
  fsgw_debug_set_inline_refused: { args: ["i32"], returns: "void" },
  fsgw_debug_set_op_delay_us: { args: ["ptr", "i32"], returns: "void" },
}).symbols;

/** Every inline call refuses with -EAGAIN, as if nothing were cached: every operation goes to the pool. */
export function setInlineRefused(on: boolean): void {
  lib.fsgw_debug_set_inline_refused(on ? 1 : 0);
}

/** The workers of the pool at `poolAddress` (CPoolEngine.poolAddress) sleep `us` before each operation. */
export function setOpDelayUs(poolAddress: number, us: number): void {
  lib.fsgw_debug_set_op_delay_us(poolAddress as unknown as Pointer, us);
}
