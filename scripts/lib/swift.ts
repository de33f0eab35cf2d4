// A real S3 store for tests and benchmarks: a one-node OpenStack Swift cluster (Debian's Swift with
// its s3api middleware) on free loopback ports in a temporary directory. It installs the packages
// when they are missing and this runs as root (apt-get; Debian's services are kept from starting);
// otherwise it says which packages to install. It stops exactly the processes it started.
//
// S3 credentials are tempauth's: access key "test:tester", secret "testing", path-style, region
// us-east-1 (Bun signs for region "auto" otherwise, which s3api refuses).
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { freePort, tempDir } from "./server-process";
import { ensurePackages } from "./debian";

export const SWIFT_PACKAGES = ["swift", "swift-proxy", "swift-account", "swift-container", "swift-object", "python3-swift", "memcached"];

export interface SwiftCluster {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  bucket: string;
  /** The proxy's process id (its CPU is the store's side of a benchmark). */
  proxyPid: number;
  /** Every process of the cluster (proxy, object, container and account servers, memcached). */
  pids: number[];
  /** Stops the proxy only (the store going away); startProxy() brings it back on the same port. */
  stopProxy(): Promise<void>;
  startProxy(): Promise<void>;
  stop(): Promise<void>;
}

/** null when Swift is installed (installing it first if need be, as root), else why it cannot be. */
export function ensureSwift(): string | null {
  return ensurePackages(SWIFT_PACKAGES, ["swift-proxy-server", "swift-object-server", "swift-container-server", "swift-account-server", "memcached"]);
}

const RING_SCRIPT = `
import sys
from swift.common.ring import RingBuilder
swift_dir = sys.argv[1]
for name, port in (("object", int(sys.argv[2])), ("container", int(sys.argv[3])), ("account", int(sys.argv[4]))):
    b = RingBuilder(6, 1, 1)
    b.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1", "port": port, "device": "d1", "weight": 100})
    b.rebalance()
    b.get_ring().save("%s/%s.ring.gz" % (swift_dir, name))
`;

/** Every server's [DEFAULT]: loopback, one process, rings in `dir`, logs to a discarding UDP port (no /dev/log here). */
function defaults(dir: string, port: number, discard: number): string {
  return `[DEFAULT]
bind_ip = 127.0.0.1
bind_port = ${port}
workers = 0
swift_dir = ${dir}
log_udp_host = 127.0.0.1
log_udp_port = ${discard}
`;
}

function serverConf(dir: string, port: number, kind: string, discard: number): string {
  return `${defaults(dir, port, discard)}devices = ${dir}/node
mount_check = false

[pipeline:main]
pipeline = healthcheck ${kind}-server

[filter:healthcheck]
use = egg:swift#healthcheck

[app:${kind}-server]
use = egg:swift#${kind}
`;
}

function proxyConf(dir: string, port: number, memcached: number, discard: number): string {
  return `${defaults(dir, port, discard)}
[pipeline:main]
# slo after s3api, or s3api silently turns multipart off
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo versioned_writes proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:s3api]
use = egg:swift#s3api
location = us-east-1

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:${memcached}

${PLAIN_FILTERS.map(([name, egg]) => `[filter:${name}]\nuse = egg:swift#${egg}\n`).join("")}`;
}

/** Proxy filters used with their defaults: [section name, egg entry point]. */
const PLAIN_FILTERS: [string, string][] = [
  ["catch_errors", "catch_errors"],
  ["gatekeeper", "gatekeeper"],
  ["healthcheck", "healthcheck"],
  ["proxy-logging", "proxy_logging"],
  ["listing_formats", "listing_formats"],
  ["copy", "copy"],
  ["slo", "slo"],
  ["dlo", "dlo"],
  ["versioned_writes", "versioned_writes"],
];

async function healthy(port: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/healthcheck`);
      await r.arrayBuffer();
      if (r.ok) return;
    } catch {}
    if (Date.now() > deadline) throw new Error(`Swift server on port ${port} did not become healthy`);
    await Bun.sleep(50);
  }
}

/** Starts a one-node cluster and creates `bucket` in it (Swift's own API, with tempauth). */
export async function startSwift(bucket = "fsgw"): Promise<SwiftCluster> {
  const why = ensureSwift();
  if (why !== null) throw new Error(why);
  const dir = tempDir("swift");
  mkdirSync(join(dir, "node", "d1"), { recursive: true });
  if (!existsSync("/etc/swift/swift.conf")) {
    mkdirSync("/etc/swift", { recursive: true });
    writeFileSync("/etc/swift/swift.conf", "[swift-hash]\nswift_hash_path_prefix = fsgw\nswift_hash_path_suffix = fsgw\n");
  }
  const [objectPort, containerPort, accountPort, proxyPort, memcachedPort, discard] = [freePort(), freePort(), freePort(), freePort(), freePort(), freePort()];
  // The system's Python, which has Debian's swift module (a pyenv or venv python3 on PATH has not).
  const python = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
  const ring = Bun.spawnSync([python, "-c", RING_SCRIPT, dir, String(objectPort), String(containerPort), String(accountPort)], { stderr: "pipe" });
  if (ring.exitCode !== 0) throw new Error(`building Swift's rings failed: ${ring.stderr.toString()}`);
  const procs: Subprocess[] = [];
  // Each in its own session (setsid): a signal to this process group does not reach them, and stop() ends exactly these.
  const logs = join(dir, "logs");
  mkdirSync(logs);
  const spawn = (cmd: string[]) => {
    const log = Bun.file(join(logs, `${cmd[0]!.replace(/[^a-z-]/g, "")}.log`));
    const p = Bun.spawn(["setsid", ...cmd], { stdout: log, stderr: log, cwd: dir });
    procs.push(p);
    return p;
  };
  spawn(["memcached", "-l", "127.0.0.1", "-p", String(memcachedPort), "-U", "0", "-u", "root"]);
  for (const [kind, port] of [["object", objectPort], ["container", containerPort], ["account", accountPort]] as const) {
    const conf = join(dir, `${kind}-server.conf`);
    writeFileSync(conf, serverConf(dir, port, kind, discard));
    spawn([`swift-${kind}-server`, conf]);
  }
  const proxyConfPath = join(dir, "proxy-server.conf");
  writeFileSync(proxyConfPath, proxyConf(dir, proxyPort, memcachedPort, discard));
  let proxy = spawn(["swift-proxy-server", proxyConfPath]);
  const stopAll = async () => {
    for (const p of procs) p.kill("SIGTERM");
    await Promise.all(procs.map((p) => Promise.race([p.exited, Bun.sleep(3000).then(() => p.kill("SIGKILL"))])));
  };
  try {
    await Promise.all([objectPort, containerPort, accountPort, proxyPort].map((p) => healthy(p, 30_000)));
    // The bucket: a container, made through Swift's API with a tempauth token.
    const auth = await fetch(`http://127.0.0.1:${proxyPort}/auth/v1.0`, { headers: { "x-auth-user": "test:tester", "x-auth-key": "testing" } });
    const url = auth.headers.get("x-storage-url");
    const token = auth.headers.get("x-auth-token");
    if (!auth.ok || url === null || token === null) throw new Error(`Swift tempauth refused: ${auth.status}`);
    // Right after start the servers may answer before the rings and the account are usable (seen
    // once: a 400 to the first PUT, then 201 on a second try): retry for a while, then give up.
    let made = await fetch(`${url}/${bucket}`, { method: "PUT", headers: { "x-auth-token": token } });
    for (let attempt = 1; !made.ok && attempt < 20; attempt++) {
      await Bun.sleep(250);
      made = await fetch(`${url}/${bucket}`, { method: "PUT", headers: { "x-auth-token": token } });
    }
    if (!made.ok) throw new Error(`creating bucket ${bucket}: ${made.status} ${await made.text()}`);
  } catch (e) {
    await stopAll();
    const said = Bun.spawnSync(["sh", "-c", `tail -n 5 ${logs}/*.log`], { stdout: "pipe" }).stdout.toString();
    throw new Error(`${(e as Error).message}\n${said}`);
  }
  return {
    endpoint: `http://127.0.0.1:${proxyPort}`,
    region: "us-east-1",
    accessKeyId: "test:tester",
    secretAccessKey: "testing",
    bucket,
    get proxyPid() {
      return proxy.pid;
    },
    get pids() {
      return procs.filter((p) => p.exitCode === null && p.signalCode === null).map((p) => p.pid);
    },
    async stopProxy() {
      proxy.kill("SIGTERM");
      await proxy.exited;
    },
    async startProxy() {
      proxy = spawn(["swift-proxy-server", proxyConfPath]);
      await healthy(proxyPort, 30_000);
    },
    stop: stopAll,
  };
}
