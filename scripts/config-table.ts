// Prints the README's configuration table from the config schema (src/config.ts), so the two can
// never disagree: test/readme.test.ts fails when README.md holds another table.
//   bun scripts/config-table.ts
import { configTable } from "../src/config";

console.log(configTable());
