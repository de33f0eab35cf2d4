// Test helpers for real server processes; the implementation is shared with the benchmarks.
export { eventually, freePort, startServer, tempDir, WITH_FAULTS, type TestServer } from "../../scripts/lib/server-process";
