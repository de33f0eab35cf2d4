// Debian packages a test or benchmark needs (Swift, the S3 clients): installed when missing and this
// runs as root (apt-get, with Debian's services kept from starting), else the reason they are not.
import { existsSync, writeFileSync } from "node:fs";

/**
 * null when every one of `binaries` is on the PATH (installing `packages` first if need be, as
 * root), else why they cannot be: the reason a test that needs them gives for skipping.
 */
export function ensurePackages(packages: string[], binaries: string[]): string | null {
  const missing = () => binaries.filter((b) => Bun.which(b) === null);
  if (missing().length === 0) return null;
  if (process.getuid?.() !== 0) return `${missing().join(", ")} not installed: apt-get install ${packages.join(" ")}`;
  // policy-rc.d keeps Debian from starting the packages' own services on their default ports.
  const policy = "/usr/sbin/policy-rc.d";
  const hadPolicy = existsSync(policy);
  if (!hadPolicy) writeFileSync(policy, "#!/bin/sh\nexit 101\n", { mode: 0o755 });
  try {
    const r = Bun.spawnSync(["apt-get", "install", "-y", "--no-install-recommends", ...packages], {
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
      stdout: "ignore",
      stderr: "pipe",
    });
    if (r.exitCode !== 0) return `apt-get install ${packages.join(" ")} failed: ${r.stderr.toString().trim().split("\n").slice(-3).join(" ")}`;
  } finally {
    if (!hadPolicy) Bun.spawnSync(["rm", "-f", policy]);
  }
  return missing().length === 0 ? null : `${packages.join(" ")} installed but ${missing().join(", ")} not found`;
}
