// Certificates for the TLS tests and benchmarks, made with openssl into a temporary directory: two CAs (the
// second for certificate reloads and "wrong CA" cases), a server certificate from each for
// 127.0.0.1 and localhost, and client certificates from a client CA and from a stranger's CA.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./server-process";

export interface Certs {
  dir: string;
  /** CA that signs server.crt; CA2 signs server2.crt. */
  caCrt: string;
  ca2Crt: string;
  serverCrt: string;
  serverKey: string;
  server2Crt: string;
  server2Key: string;
  /** CA that signs client.crt (for tlsClientCaFile); strangerCrt is signed by another CA. */
  clientCaCrt: string;
  clientCrt: string;
  clientKey: string;
  strangerCrt: string;
  strangerKey: string;
}

function openssl(dir: string, args: string[]): void {
  const r = Bun.spawnSync(["openssl", ...args], { cwd: dir, stderr: "pipe", stdout: "pipe" });
  if (r.exitCode !== 0) throw new Error(`openssl ${args.join(" ")} failed: ${r.stderr.toString()}`);
}

/** Whether openssl is on PATH (the tests say why they skip when it is not). */
export const hasOpenssl = Bun.which("openssl") !== null;

export function makeCerts(): Certs {
  const dir = tempDir("certs");
  const key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  const ca = (name: string) => openssl(dir, ["req", "-x509", ...key, "-keyout", `${name}.key`, "-out", `${name}.crt`, "-days", "2", "-subj", `/CN=fsgw test ${name}`]);
  writeFileSync(join(dir, "server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  writeFileSync(join(dir, "client.ext"), "extendedKeyUsage=clientAuth\n");
  const leaf = (name: string, caName: string, ext: string) => {
    openssl(dir, ["req", ...key, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`]);
    openssl(dir, ["x509", "-req", "-in", `${name}.csr`, "-CA", `${caName}.crt`, "-CAkey", `${caName}.key`, "-CAcreateserial", "-out", `${name}.crt`, "-days", "2", "-extfile", ext]);
  };
  ca("ca");
  ca("ca2");
  ca("clientca");
  ca("strangerca");
  leaf("server", "ca", "server.ext");
  leaf("server2", "ca2", "server.ext");
  leaf("client", "clientca", "client.ext");
  leaf("stranger", "strangerca", "client.ext");
  const p = (f: string) => join(dir, f);
  return {
    dir,
    caCrt: p("ca.crt"),
    ca2Crt: p("ca2.crt"),
    serverCrt: p("server.crt"),
    serverKey: p("server.key"),
    server2Crt: p("server2.crt"),
    server2Key: p("server2.key"),
    clientCaCrt: p("clientca.crt"),
    clientCrt: p("client.crt"),
    clientKey: p("client.key"),
    strangerCrt: p("stranger.crt"),
    strangerKey: p("stranger.key"),
  };
}
