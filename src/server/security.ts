// What the server's security reads from files: the TLS certificate, key and client CA, and the
// secrets that sign access tokens. Read at start (a bad file stops the start with a message that
// names it) and again on SIGHUP (a bad file then keeps the material in use, and says why).
import type { X509Certificate } from "node:crypto";
import { nodeCrypto } from "../util/crypto";
import { readFileSync } from "node:fs";
import type { Config } from "../config";
import { secretAccessKeyOf, secretOf, verifyToken, type Verified } from "../auth/token";

export class SecurityError extends Error {}

export interface TlsMaterial {
  cert: string;
  key: string;
  /** Client CA (mutual TLS), or null. */
  ca: string | null;
}

function readText(path: string, field: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw new SecurityError(`cannot read ${field} ${path}: ${(e as Error).message}`);
  }
}

function pem(path: string, field: string, kind: "CERTIFICATE" | "PRIVATE KEY"): string {
  const text = readText(path, field);
  if (!text.includes("-----BEGIN ") || !text.includes(kind === "PRIVATE KEY" ? "PRIVATE KEY-----" : "CERTIFICATE-----")) {
    throw new SecurityError(`${field} ${path} holds no PEM ${kind.toLowerCase()}`);
  }
  return text;
}

function loadTls(config: Config): TlsMaterial | null {
  if (config.tlsCertFile === "") return null;
  return {
    cert: pem(config.tlsCertFile, "tlsCertFile", "CERTIFICATE"),
    key: pem(config.tlsKeyFile, "tlsKeyFile", "PRIVATE KEY"),
    ca: config.tlsClientCaFile === "" ? null : pem(config.tlsClientCaFile, "tlsClientCaFile", "CERTIFICATE"),
  };
}

function loadSecrets(config: Config): Uint8Array[] {
  if (config.auth !== "token") return [];
  const secrets = [secretFrom(config.authSecretFile, "authSecretFile")];
  // An empty previous-secret file means "none": the end of a rotation is emptying it and SIGHUP.
  if (config.authPreviousSecretFile !== "" && readText(config.authPreviousSecretFile, "authPreviousSecretFile").trim() !== "") {
    secrets.push(secretFrom(config.authPreviousSecretFile, "authPreviousSecretFile"));
  }
  return secrets;
}

function secretFrom(path: string, field: string): Uint8Array {
  try {
    return secretOf(readText(path, field), `${field} ${path}`);
  } catch (e) {
    if (e instanceof SecurityError) throw e;
    throw new SecurityError((e as Error).message);
  }
}

/**
 * Why the certificate (the first of a chain) is not valid now, or null: expired, or not yet valid.
 * Such a certificate is still taken (an operator may be about to replace it, or the clock be
 * wrong), but clients will refuse it, so the server says so at start and at every reload.
 */
export function certificateProblem(pemText: string, nowMs = Date.now()): string | null {
  let cert: X509Certificate;
  try {
    cert = new (nodeCrypto().X509Certificate)(pemText);
  } catch (e) {
    return `cannot be parsed (${(e as Error).message})`;
  }
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  if (nowMs < from) return `not valid before ${new Date(from).toISOString()}`;
  if (nowMs > to) return `expired at ${new Date(to).toISOString()}`;
  return null;
}

export class Security {
  private constructor(
    /** TLS on the protocol port, or null for plain TCP. */
    public tls: TlsMaterial | null,
    /** Token secrets, current first; empty when auth is "none". */
    private secrets: Uint8Array[],
    private readonly config: Config,
  ) {}

  /** Reads every file the config names; throws SecurityError naming the one that is wrong. */
  static load(config: Config): Security {
    return new Security(loadTls(config), loadSecrets(config), config);
  }

  get tokensRequired(): boolean {
    return this.config.auth === "token";
  }

  /** Secrets accepted now: 1, or 2 during a rotation. */
  get secretCount(): number {
    return this.secrets.length;
  }

  /** Checks a token's signature against the current and the previous secret. */
  verify(token: string): Verified {
    return verifyToken(token, this.secrets);
  }

  /** The secret access keys an S3 access key id has under the current and the previous secret. */
  s3SecretKeys(accessKeyId: string): string[] {
    return this.secrets.map((secret) => secretAccessKeyOf(secret, accessKeyId));
  }

  /**
   * Reads the files again (SIGHUP). All or nothing: if any file is wrong, nothing changes and the
   * error is returned; otherwise null. Whether TLS is on cannot change without a restart.
   */
  reload(): string | null {
    try {
      const tls = loadTls(this.config);
      const secrets = loadSecrets(this.config);
      this.tls = tls;
      this.secrets = secrets;
      return null;
    } catch (e) {
      return (e as Error).message;
    }
  }
}
