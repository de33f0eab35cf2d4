// Preloaded before every test file (bunfig.toml): removes the temporary directories the file made
// (data directories of test servers hold up to gigabytes), since `bun test` runs no exit handlers.
import { afterAll } from "bun:test";
import { removeTempDirs } from "../../scripts/lib/server-process";

afterAll(removeTempDirs);
