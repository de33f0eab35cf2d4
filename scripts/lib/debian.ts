// Debian packages a test or benchmark needs (Swift, the S3 clients): installed when missing and this
// runs as root (apt-get, with Debian's services kept from starting), else the reason they are not.
//
// Test files run in parallel (bun test --parallel), and several need packages: every install runs
// under one lock (flock), and packages count as there only when dpkg says they are installed, not
// when their programs are on the PATH: dpkg unpacks programs before it configures them, and a test
// that went ahead then (writing Swift's /etc/swift/swift.conf) made dpkg stop at a conffile prompt
// and left the packages half installed on a fresh machine.

const LOCK = "/tmp/fsgw-debian-packages.lock";

/** True when dpkg has every one of `packages` installed and configured. */
function installed(packages: string[]): boolean {
  const r = Bun.spawnSync(["dpkg-query", "-W", "-f=${Status}\n", ...packages], { stdout: "pipe", stderr: "ignore" });
  if (r.exitCode !== 0) return false;
  const lines = r.stdout.toString().trim().split("\n");
  return lines.length === packages.length && lines.every((l) => l === "install ok installed");
}

/**
 * null when every one of `binaries` is on the PATH and `packages` are installed (installing them
 * first if need be, as root), else why they cannot be: the reason a test that needs them gives for
 * skipping.
 */
export function ensurePackages(packages: string[], binaries: string[]): string | null {
  const missing = () => binaries.filter((b) => Bun.which(b) === null);
  if (missing().length === 0 && installed(packages)) return null;
  if (process.getuid?.() !== 0) return `${missing().join(", ") || packages.join(", ")} not installed: apt-get install ${packages.join(" ")}`;
  // policy-rc.d keeps Debian from starting the packages' own services on their default ports.
  const policy = "/usr/sbin/policy-rc.d";
  // Under the lock: another test file may be installing these or others right now. A half-done
  // earlier install is finished first (dpkg --configure -a); a configuration file someone wrote
  // is kept rather than asked about.
  const script = [
    `if [ ! -e ${policy} ]; then printf '#!/bin/sh\\nexit 101\\n' > ${policy}; chmod 755 ${policy}; made=1; fi`,
    `dpkg --force-confdef --force-confold --configure -a`,
    `apt-get install -y --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold ${packages.join(" ")}`,
    `rc=$?`,
    `[ -n "$made" ] && rm -f ${policy}`,
    `exit $rc`,
  ].join("\n");
  const r = Bun.spawnSync(["flock", LOCK, "sh", "-c", script], {
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    stdout: "ignore",
    stderr: "pipe",
  });
  if (r.exitCode !== 0) return `apt-get install ${packages.join(" ")} failed: ${r.stderr.toString().trim().split("\n").slice(-3).join(" ")}`;
  return missing().length === 0 ? null : `${packages.join(" ")} installed but ${missing().join(", ")} not found`;
}
