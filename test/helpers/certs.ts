// Test certificates; the implementation is shared with the benchmarks.
export { hasOpenssl, makeCerts, type Certs } from "../../scripts/lib/certs";
