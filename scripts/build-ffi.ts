// Builds the C thread pool's library (build/libfsgw_pool.so) from ffi/ when it is missing or stale.
//
//   bun scripts/build-ffi.ts              (npm run build:ffi; and before the tests): a failure
//                                         exits 1 with gcc's output
//   bun scripts/build-ffi.ts --at-install (npm install's postinstall): a machine without gcc, or
//                                         a failed build, is said plainly and the install goes on:
//                                         fsgw then runs with --io-engine bun or sync
import { BUILD_COMMAND, buildLibrary } from "../src/ffi/build";

const atInstall = process.argv.includes("--at-install");
try {
  const { path, built } = buildLibrary();
  console.log(built ? `fsgw: built ${path}` : `fsgw: ${path} is up to date`);
} catch (e) {
  const missingGcc = (e as { code?: string }).code === "ENOENT";
  const why = missingGcc ? "gcc is not installed (apt-get install gcc)" : String((e as Error).message);
  if (!atInstall) {
    console.error(`fsgw: cannot build the C library: ${why}`);
    process.exit(1);
  }
  console.warn(
    `fsgw: warning: the C library (the default I/O engine, cpool) was not built: ${why}\n` +
      `fsgw: the server runs with --io-engine bun or sync meanwhile; once gcc is there, run \`${BUILD_COMMAND}\``,
  );
}
