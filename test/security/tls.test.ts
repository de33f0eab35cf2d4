// TLS on the protocol port against a real server process: exchanges byte for byte over TLS (small
// and streamed bodies, both through memory: no sendfile or splice into an encrypted stream), mutual
// TLS, what happens to plaintext clients and clients that do not trust the server, and
// certificates reloaded on SIGHUP while clients keep exchanging. Certificates come from openssl.
import { afterEach, describe, expect, test } from "bun:test";
import { copyFileSync, readFileSync } from "node:fs";
import { Access, createToken, newSecret } from "../../src/auth/token";
import { connect, ServerError, type ClientTls } from "../../src/client/client";
import { benchExchange } from "../../src/client/exchanges";
import { TlsError, WireConn } from "../../src/client/wire-conn";
import { runClientCommand, type Io } from "../../src/cli/client-commands";
import { hasOpenssl, makeCerts, type Certs } from "../helpers/certs";
import { payload, sha256 } from "../helpers/data";
import { eventually, freePort, startServer, tempDir, type TestServer } from "../helpers/server";
import { join } from "node:path";
import { writeFileSync } from "node:fs";

let server: TestServer | null = null;
afterEach(async () => {
  await server?.stop();
  server = null;
});

const read = (p: string) => readFileSync(p, "utf8");
const trust = (c: Certs, ca = c.caCrt): ClientTls => ({ ca: read(ca) });

/** A copy of the server certificate and key that the test may swap for others (reload). */
function liveFiles(c: Certs): { crt: string; key: string } {
  const dir = tempDir("live-cert");
  const crt = join(dir, "server.crt");
  const key = join(dir, "server.key");
  copyFileSync(c.serverCrt, crt);
  copyFileSync(c.serverKey, key);
  return { crt, key };
}

if (!hasOpenssl) test.skip("TLS tests skipped: openssl, which makes their certificates, is not installed", () => {});

describe.skipIf(!hasOpenssl)("TLS", () => {
  const certs = hasOpenssl ? makeCerts() : (null as never);

  test("exchanges over TLS are byte for byte, bodies go through memory (no sendfile into TLS), and it is said once", async () => {
    const adminPort = freePort();
    server = await startServer({ tlsCertFile: certs.serverCrt, tlsKeyFile: certs.serverKey, adminPort });
    const client = connect({ port: server.port, tls: trust(certs), poolSize: 2 });
    for (const size of [1, 5000, 70_000, 3_000_000]) {
      const body = payload(size, size);
      await client.upload(`k${size}`, body);
      expect(sha256(await client.download(`k${size}`))).toBe(sha256(body));
      expect((await client.exist(`k${size}`)).size).toBe(size);
    }
    await client.delete("k1");
    client.close();
    const stats = (await (await fetch(`http://127.0.0.1:${adminPort}/debug/stats`)).json()) as { zeroCopy: Record<string, number> };
    expect(stats.zeroCopy).toEqual({ downloads: 0, uploads: 0, fallbacks: 0 });
    expect(server.lines.filter((l) => l.includes("event=zero_copy_off") && l.includes("TLS")).length).toBe(1);
  });

  test("the HTTP front door speaks HTTPS with the same certificate: curl byte for byte (small and streamed bodies, a range, a listing), a plaintext request gets nothing", async () => {
    const httpPort = freePort();
    server = await startServer({ tlsCertFile: certs.serverCrt, tlsKeyFile: certs.serverKey, httpPort });
    const base = `https://127.0.0.1:${httpPort}`;
    const dir = tempDir("https");
    for (const size of [1000, 3_000_000]) {
      const body = payload(size, size + 3);
      writeFileSync(join(dir, `f${size}`), body);
      const put = Bun.spawnSync(["curl", "-sS", "-f", "--cacert", certs.caCrt, "-T", join(dir, `f${size}`), `${base}/fsgw/https/f${size}`]);
      expect(put.exitCode).toBe(0);
      const get = Bun.spawnSync(["curl", "-sS", "-f", "--cacert", certs.caCrt, `${base}/fsgw/https/f${size}`]);
      expect(sha256(new Uint8Array(get.stdout))).toBe(sha256(body));
    }
    const range = Bun.spawnSync(["curl", "-sS", "-f", "--cacert", certs.caCrt, "-r", "10-19", `${base}/fsgw/https/f1000`]);
    expect(Buffer.from(range.stdout).equals(Buffer.from(payload(1000, 1003).subarray(10, 20)))).toBe(true);
    const listed = Bun.spawnSync(["curl", "-sS", "-f", "--cacert", certs.caCrt, `${base}/fsgw?list-type=2&prefix=https/`]);
    expect(listed.stdout.toString()).toContain("<Key>https/f3000000</Key>");
    // In clear, to the TLS port: no answer, the connection closed.
    const plain = Bun.spawnSync(["curl", "-sS", "-m", "5", `http://127.0.0.1:${httpPort}/fsgw/https/f1000`]);
    expect(plain.exitCode).not.toBe(0);
    expect(plain.stdout.length).toBe(0);
    expect(server.proc.exitCode).toBeNull();
  });

  test("a plaintext client, and one that does not trust the certificate, are closed with one log line each; the server carries on", async () => {
    server = await startServer({ tlsCertFile: certs.serverCrt, tlsKeyFile: certs.serverKey });
    const plain = await WireConn.connect({ host: "127.0.0.1", port: server.port });
    const err = await benchExchange(plain, "x").catch((e) => e);
    expect(err).toBeInstanceOf(Error);
    expect(await plain.closedWithin(2000)).toBe(true);
    await eventually(() => server!.lines.some((l) => l.includes("event=tls_handshake_failed")), 5000, "handshake failure logged");
    const wrongCa = await WireConn.connect({ host: "127.0.0.1", port: server.port, tls: trust(certs, certs.ca2Crt) }).catch((e) => e);
    expect(wrongCa).toBeInstanceOf(TlsError);
    const wrongName = await WireConn.connect({ host: "127.0.0.1", port: server.port, tls: { ...trust(certs), serverName: "example.com" } }).catch((e) => e);
    expect(wrongName).toBeInstanceOf(TlsError);
    const good = await WireConn.connect({ host: "127.0.0.1", port: server.port, tls: trust(certs) });
    await benchExchange(good, "still serving");
    good.close();
    expect(server.proc.exitCode).toBeNull();
  });

  test("TLS 1.2 offers forward-secret (ECDHE) suites only, and nothing older than TLS 1.2 is spoken", async () => {
    // An RSA certificate: with one, a static-RSA suite (no forward secrecy) could be negotiated.
    const dir = tempDir("rsa-cert");
    const made = Bun.spawnSync(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"], { cwd: dir, stderr: "pipe" });
    expect(made.exitCode).toBe(0);
    server = await startServer({ tlsCertFile: join(dir, "cert.pem"), tlsKeyFile: join(dir, "key.pem") });
    const handshake = (args: string[]) => {
      const r = Bun.spawnSync(["openssl", "s_client", "-connect", `127.0.0.1:${server!.port}`, ...args], { stdin: new Uint8Array(0), stdout: "pipe", stderr: "pipe", timeout: 10_000 });
      return /Cipher is (\S+)/.exec(r.stdout.toString())?.[1] ?? "none";
    };
    // Before the fix: AES256-GCM-SHA384 (static RSA) was accepted.
    expect(handshake(["-tls1_2", "-cipher", "AES256-GCM-SHA384"])).toBe("(NONE)");
    expect(handshake(["-tls1_2", "-cipher", "AES128-SHA"])).toBe("(NONE)");
    expect(handshake(["-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA"])).toBe("(NONE)"); // CBC: not AEAD
    expect(handshake(["-tls1_1"])).toBe("(NONE)");
    expect(handshake(["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"])).toBe("ECDHE-RSA-AES128-GCM-SHA256");
    expect(handshake(["-tls1_2", "-cipher", "ECDHE-RSA-CHACHA20-POLY1305"])).toBe("ECDHE-RSA-CHACHA20-POLY1305");
    expect(handshake(["-tls1_3"])).toStartWith("TLS_");
  });

  test("a certificate that is expired or not yet valid is said at start and at reload (and the server still starts)", async () => {
    const dir = tempDir("dated-cert");
    const openssl = (args: string[]) => {
      const r = Bun.spawnSync(["openssl", ...args], { cwd: dir, stdout: "pipe", stderr: "pipe" });
      expect(r.exitCode === 0 ? "" : r.stdout.toString() + r.stderr.toString()).toBe("");
    };
    // Self-signed certificates with chosen dates (openssl 3.0's req has no -not_before: its ca does).
    writeFileSync(join(dir, "ca.cnf"), "[ ca ]\ndefault_ca = dated\n[ dated ]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\nunique_subject = no\ndefault_md = sha256\npolicy = any\n[ any ]\ncommonName = supplied\n");
    writeFileSync(join(dir, "index.txt"), "");
    writeFileSync(join(dir, "serial"), "01\n");
    const dated = (name: string, from: string, to: string) => {
      openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", "/CN=localhost"]);
      openssl(["ca", "-batch", "-config", "ca.cnf", "-selfsign", "-keyfile", `${name}.key`, "-in", `${name}.csr`, "-out", `${name}.crt`, "-startdate", from, "-enddate", to]);
    };
    dated("future", "20990101000000Z", "21000101000000Z"); // not yet valid
    dated("past", "20190101000000Z", "20200101000000Z"); // expired
    const live = liveFiles(certs);
    server = await startServer({ tlsCertFile: live.crt, tlsKeyFile: live.key });
    expect(server.lines.some((l) => l.includes("event=tls_certificate_not_valid"))).toBe(false);
    copyFileSync(join(dir, "past.crt"), live.crt);
    copyFileSync(join(dir, "past.key"), live.key);
    server.proc.kill("SIGHUP");
    await eventually(() => server!.lines.some((l) => l.includes("event=tls_certificate_not_valid") && l.includes("when=reload") && l.includes("expired at 2020-01-01")), 5000, "the expired certificate said");
    await server.stop();
    server = await startServer({ tlsCertFile: join(dir, "future.crt"), tlsKeyFile: join(dir, "future.key") });
    expect(server.lines.find((l) => l.includes("event=tls_certificate_not_valid"))).toContain("not valid before 2099-01-01");
  });

  test("mutual TLS: a client certificate from the client CA gets in; none, or one from another CA, does not", async () => {
    server = await startServer({ tlsCertFile: certs.serverCrt, tlsKeyFile: certs.serverKey, tlsClientCaFile: certs.clientCaCrt });
    const withCert: ClientTls = { ...trust(certs), cert: read(certs.clientCrt), key: read(certs.clientKey) };
    const client = connect({ port: server.port, tls: withCert });
    const body = payload(100_000, 3);
    await client.upload("m", body);
    expect(sha256(await client.download("m"))).toBe(sha256(body));
    client.close();
    for (const [what, tls] of [
      ["no client certificate", trust(certs)],
      ["a stranger's certificate", { ...trust(certs), cert: read(certs.strangerCrt), key: read(certs.strangerKey) }],
    ] as const) {
      // TLS 1.3: the refusal may come during the handshake or right after it, on the first read.
      const outcome = await (async () => {
        const conn = await WireConn.connect({ host: "127.0.0.1", port: server!.port, tls });
        await benchExchange(conn, "x");
        return "served";
      })().catch((e) => e);
      expect(outcome, what).toBeInstanceOf(Error);
    }
    await eventually(() => server!.lines.filter((l) => l.includes("event=tls_handshake_failed")).length >= 1, 5000, "refusals logged");
  });

  test.each([1, 2])("SIGHUP reloads the certificate under load (%d event loops): open connections go on, new ones get the new certificate", async (loops) => {
    const live = liveFiles(certs);
    server = await startServer({ tlsCertFile: live.crt, tlsKeyFile: live.key, loops });
    const port = server.port;
    let running = true;
    let exchanges = 0;
    const errors: string[] = [];
    const body = payload(20_000, 9);
    const workers = Array.from({ length: 4 }, async (_, i) => {
      const c = connect({ port, tls: trust(certs), poolSize: 1 });
      try {
        while (running) {
          await c.upload(`w${i}`, body);
          if (sha256(await c.download(`w${i}`)) !== sha256(body)) errors.push("bytes differ");
          exchanges += 2;
        }
      } catch (e) {
        errors.push(String(e));
      } finally {
        c.close();
      }
    });
    await eventually(() => exchanges > 20, 10_000, "load running");
    copyFileSync(certs.server2Crt, live.crt);
    copyFileSync(certs.server2Key, live.key);
    server.proc.kill("SIGHUP");
    // Every loop reloads (each has its own listener).
    await eventually(() => server!.lines.filter((l) => l.includes("event=reloaded")).length >= loops, 5000, "reload");
    const before = exchanges;
    await eventually(() => exchanges > before + 20, 10_000, "load after the reload");
    running = false;
    await Promise.all(workers);
    expect(errors).toEqual([]);
    // Several new connections, so that every loop's listener is reached.
    for (let i = 0; i < 8; i++) {
      const fresh = await WireConn.connect({ host: "127.0.0.1", port, tls: trust(certs, certs.ca2Crt) });
      await benchExchange(fresh, "new certificate");
      fresh.close();
      expect(await WireConn.connect({ host: "127.0.0.1", port, tls: trust(certs) }).catch((e) => e)).toBeInstanceOf(TlsError);
    }
    // A broken certificate file changes nothing.
    writeFileSync(live.crt, "not a certificate");
    server.proc.kill("SIGHUP");
    await eventually(() => server!.lines.filter((l) => l.includes("event=reload_failed")).length >= loops, 5000, "failed reload");
    for (let i = 0; i < 8; i++) {
      const still = await WireConn.connect({ host: "127.0.0.1", port, tls: trust(certs, certs.ca2Crt) });
      await benchExchange(still, "old certificate kept");
      still.close();
    }
  });

  test("the fsgw command with --tls --ca --token against TLS and tokens: put, get, stat, rm", async () => {
    const dir = tempDir("cli-tls");
    const secretFile = join(dir, "secret");
    const secret = newSecret();
    writeFileSync(secretFile, secret);
    server = await startServer({ tlsCertFile: certs.serverCrt, tlsKeyFile: certs.serverKey, auth: "token", authSecretFile: secretFile });
    const token = createToken(new TextEncoder().encode(secret), { id: "cli", access: Access.READ | Access.WRITE | Access.DELETE, prefix: "cli-", expiresAtMs: Date.now() + 60_000 });
    const out: string[] = [];
    const io: Io = { stdout: (t) => void out.push(t), stderr: { isTTY: false, columns: 80, write: (t) => void out.push(t) }, stdoutBytes: () => {} };
    const file = join(dir, "f.bin");
    const body = payload(200_000, 5);
    writeFileSync(file, body);
    const common = ["--port", String(server.port), "--ca", certs.caCrt, "--token", token];
    expect(await runClientCommand("put", [file, "--key", "cli-f", ...common], io)).toBe(0);
    expect(await runClientCommand("get", ["cli-f", "-o", join(dir, "back"), ...common], io)).toBe(0);
    expect(sha256(readFileSync(join(dir, "back")))).toBe(sha256(body));
    expect(await runClientCommand("stat", ["cli-f", ...common], io)).toBe(0);
    expect(await runClientCommand("put", [file, "--key", "other", ...common], io)).toBe(1); // outside the prefix
    expect(out.join("")).toContain("forbidden: key outside token scope");
    expect(await runClientCommand("rm", ["cli-f", ...common], io)).toBe(0);
    expect(await runClientCommand("stat", ["cli-f", "--port", String(server.port), "--ca", certs.caCrt], io)).toBe(1); // no token
    expect(out.join("")).toContain("unauthorized");
    expect(await runClientCommand("stat", ["cli-f", "--port", String(server.port), "--token", token], io)).toBe(3); // plaintext to TLS
    const err = await connect({ port: server.port, tls: trust(certs), token: "fsgw1.x.y" }).exist("k").catch((e) => e);
    expect(err).toBeInstanceOf(ServerError);
  });

  test("the README's self-signed recipe works as written; CN=localhost alone, the wrong protocol either way, each says what to do", async () => {
    const dir = tempDir("self-signed");
    const readme = readFileSync(join(import.meta.dir, "../../README.md"), "utf8");
    const recipe = /```sh\n(openssl req -x509[^`]*?)\nfsgw serve/.exec(readme)?.[1];
    expect(recipe).toBeDefined();
    const made = Bun.spawnSync(["sh", "-c", recipe!], { cwd: dir, stderr: "pipe" });
    expect(made.exitCode).toBe(0);
    const out: string[] = [];
    const io: Io = { stdout: (t) => void out.push(t), stderr: { isTTY: false, columns: 80, write: (t) => void out.push(t) }, stdoutBytes: () => {} };
    writeFileSync(join(dir, "hello.txt"), "hello\n");
    server = await startServer({ tlsCertFile: join(dir, "cert.pem"), tlsKeyFile: join(dir, "key.pem") });
    const port = String(server.port);
    expect(await runClientCommand("put", [join(dir, "hello.txt"), "--ca", join(dir, "cert.pem"), "--port", port], io)).toBe(0);
    // Plain TCP to the TLS port: its alert is recognised.
    out.length = 0;
    expect(await runClientCommand("stat", ["hello.txt", "--port", port], io)).toBe(3);
    expect(out.join("")).toBe("fsgw stat: this port speaks TLS: add --tls (and --ca <file> unless a CA this machine trusts signed its certificate)\n");
    await server.stop();
    // The obvious certificate without a subjectAltName: refused, saying why and what to do.
    const cnOnly = Bun.spawnSync(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-keyout", "cn.key", "-out", "cn.pem", "-subj", "/CN=localhost"], { cwd: dir, stderr: "pipe" });
    expect(cnOnly.exitCode).toBe(0);
    server = await startServer({ tlsCertFile: join(dir, "cn.pem"), tlsKeyFile: join(dir, "cn.key") });
    out.length = 0;
    const ca = ["--ca", join(dir, "cn.pem"), "--port", String(server.port)];
    expect(await runClientCommand("stat", ["x", ...ca], io)).toBe(3);
    expect(out.join("")).toContain("the server's certificate does not name 127.0.0.1");
    expect(out.join("")).toContain("--host localhost");
    expect(await runClientCommand("put", [join(dir, "hello.txt"), ...ca, "--host", "localhost"], io)).toBe(0);
    await server.stop();
    // --tls to a plain port: the server closes the handshake, and the client says what that may mean.
    server = await startServer({});
    out.length = 0;
    expect(await runClientCommand("stat", ["x", "--tls", "--port", String(server.port)], io)).toBe(3);
    expect(out.join("")).toContain("it may not speak TLS on this port (drop --tls)");
  });
});
