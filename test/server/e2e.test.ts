// The protocol's conformance suite (test/helpers/conformance.ts) end to end against a real server
// process on every engine and on each of the C pool's paths (inline from the caches, the pool alone,
// inline always refused so that every exchange falls back, direct and batch submission, zero copy
// on and off), on several event loops, and over TLS with access tokens. Through the S3 store it
// runs in test/storage/s3-store.test.ts, on that file's Swift.
import { expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Access, createToken, newSecret } from "../../src/auth/token";
import type { ClientTls } from "../../src/client/wire-conn";
import { engineNames } from "../../src/config";
import { hasOpenssl, makeCerts } from "../helpers/certs";
import { describeConformance, fileView, volumeView } from "../helpers/conformance";
import { startServer, WITH_FAULTS } from "../helpers/server";

/** TLS and tokens: certificates from openssl, a secret, and a token that may do anything. */
function secured(): { fields: Record<string, string>; client: { tls: ClientTls; token: string } } {
  const certs = makeCerts();
  const secret = newSecret();
  const secretFile = join(certs.dir, "secret");
  writeFileSync(secretFile, secret);
  const token = createToken(new TextEncoder().encode(secret), { id: "e2e", access: Access.READ | Access.WRITE | Access.DELETE, prefix: "", expiresAtMs: Date.now() + 3600_000 });
  return {
    fields: { tlsCertFile: certs.serverCrt, tlsKeyFile: certs.serverKey, auth: "token", authSecretFile: secretFile },
    client: { tls: { ca: readFileSync(certs.caCrt, "utf8") }, token },
  };
}

const variants: [string, Record<string, string>][] = [
  // One file per key (volumes off): every engine, and each of the C pool's paths.
  ...engineNames.map((e): [string, Record<string, string>] => [e, { ioEngine: e, volumes: "false" }]),
  ["cpool, ioInline off", { ioEngine: "cpool", ioInline: "off", volumes: "false" }],
  ["cpool, every inline attempt refused (each falls back to the pool)", { ioEngine: "cpool", inlineRefused: "yes", volumes: "false" }],
  ["cpool, direct submission", { ioEngine: "cpool", ioSubmitMode: "direct", volumes: "false" }],
  ["cpool, batch submission", { ioEngine: "cpool", ioSubmitMode: "batch", volumes: "false" }],
  ["cpool, zero-copy off (downloads copied through memory)", { ioEngine: "cpool", zeroCopy: "false", volumes: "false" }],
  ["cpool, zero-copy, every inline attempt refused (all sends on the pool)", { ioEngine: "cpool", zeroCopy: "true", inlineRefused: "yes", volumes: "false" }],
  // Several event loops on one port (each its own thread, listener, connections and pool).
  ["cpool, 2 event loops", { ioEngine: "cpool", loops: "2", volumes: "false" }],
  ["cpool, 4 event loops", { ioEngine: "cpool", loops: "4", volumes: "false" }],
  ["cpool, 2 event loops, a pool per loop", { ioEngine: "cpool", loops: "2", loopPools: "per-loop", volumes: "false" }],
  // Small bodies as records of append-only volumes (docs/VOLUMES.md, the default), the store checked
  // through the test's own reader of the record format.
  ["cpool, volumes", { ioEngine: "cpool", volumes: "true" }],
  ["cpool, volumes, every inline attempt refused (records' headers, for their digests, read on the pool)", { ioEngine: "cpool", volumes: "true", inlineRefused: "yes" }],
  ["cpool, volumes, 2 event loops, zero-copy off", { ioEngine: "cpool", volumes: "true", loops: "2", zeroCopy: "false" }],
  ["bun, volumes", { ioEngine: "bun", volumes: "true" }],
  ["sync, volumes", { ioEngine: "sync", volumes: "true" }],
  // TLS and tokens on: every exchange and violation, through TLS, after an AUTH (the default store: volumes).
  ...(hasOpenssl
    ? ([
        ["cpool, TLS and auth tokens", { ioEngine: "cpool", secured: "yes" }],
        ["cpool, TLS and auth tokens, 2 event loops", { ioEngine: "cpool", secured: "yes", loops: "2" }],
      ] as [string, Record<string, string>][])
    : []),
];
if (!hasOpenssl) test.skip("e2e over TLS and tokens skipped: openssl, which makes the certificates, is not installed", () => {});

for (const [name, variantFields] of variants) {
  // The C pool records each file's SHA-256 with it; the bun and sync engines cannot (no xattrs).
  const digests = (variantFields.ioEngine ?? "cpool") === "cpool";
  describeConformance(
    `engine ${name}`,
    { digests, digestsUpTo: variantFields.volumes !== "false" ? 65536 : undefined, onS3: false, concurrentClients: 200 },
    async () => {
      const { secured: isSecured, inlineRefused, ...fields } = variantFields;
      const security = isSecured === "yes" ? secured() : null;
      const all = { ...fields, ...security?.fields, inlineBytesMax: 65536, ioChunkBytes: 65536 };
      // Refused inline calls are a fault the test entry injects (the C library's test hook).
      const server = inlineRefused === "yes" ? await startServer(all, { TEST_INLINE_REFUSED: "1" }, [], undefined, WITH_FAULTS) : await startServer(all);
      return { server, view: fields.volumes !== "false" ? volumeView(server.dataDir) : fileView(server.dataDir), client: security?.client };
    },
    async ({ server }) => {
      expect(await server.stop()).toBe(0);
    },
  );
}
