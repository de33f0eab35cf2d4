// Benchmarks that run the store in their own process (not a server's) measure it as `npm start`
// runs it: with fsgw's allocator setting, which Bun reads only at start (src/util/allocator.ts).
import { ALLOCATOR_PURGE_ENV, withAllocatorDefaults } from "../../src/util/allocator";

/** Runs this script again with the setting when it lacks it, and exits with that run's status; else returns. */
export function asTheServerRuns(): void {
  if (process.env[ALLOCATOR_PURGE_ENV] !== undefined) return;
  const again = Bun.spawnSync([process.execPath, ...process.argv.slice(1)], { env: withAllocatorDefaults(process.env) as Record<string, string>, stdio: ["inherit", "inherit", "inherit"] });
  process.exit(again.exitCode ?? 1);
}
