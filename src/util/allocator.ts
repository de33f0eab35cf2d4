// How long Bun's allocator (mimalloc) keeps memory it has freed before handing it back to the kernel.
//
// Every `data` callback of a socket gets a fresh buffer, so an upload of 5 KiB allocates its body,
// and the garbage collector frees thousands of them at once. mimalloc's own default returns a freed
// page to the kernel 10 ms later; the next bodies then fault it back in, zeroed: ~0.9 page faults
// per 5 KiB upload, and ~10% of the server's CPU per upload (BENCHMARKS.md, "The allocator's purge
// delay"). Ten seconds (jemalloc's default decay) keeps the memory of a busy server mapped while it
// is busy and still gives it back within seconds of going idle.
//
// mimalloc reads its options once, when the process starts, so the setting has to be in the
// environment of the process that runs Bun: `npm start` and `bun start` (package.json) and
// `bin/fsgw.js` put it there; `serve` says in its log when it is missing (bun src/main.ts serve).

/** The variable mimalloc reads (milliseconds; -1: never give freed memory back). */
export const ALLOCATOR_PURGE_ENV = "MIMALLOC_PURGE_DELAY";
/** fsgw's value; package.json's start scripts and bin/fsgw.js carry the same literal (test/util/allocator.test.ts). */
export const ALLOCATOR_PURGE_DELAY_MS = 10_000;

/** `env` with fsgw's purge delay added, unless it sets one of its own. */
export function withAllocatorDefaults(env: Record<string, string | undefined>): Record<string, string | undefined> {
  if (env[ALLOCATOR_PURGE_ENV] !== undefined) return env;
  return { ...env, [ALLOCATOR_PURGE_ENV]: String(ALLOCATOR_PURGE_DELAY_MS) };
}
