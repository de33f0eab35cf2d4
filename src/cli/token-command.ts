// `fsgw token create | secret`: mints scoped access tokens with the server's secret, and makes
// new secrets. Runs on a machine that holds the secret file (the server's, or an issuer's).
import { readFileSync } from "node:fs";
import { ConfigError, loadConfig } from "../config";
import { accessOf, createAccessKey, createToken, DEFAULT_BUCKET, newSecret, parseTtl, secretOf } from "../auth/token";
import { checkBucketName } from "../storage/keys";
import { parseArgs, UsageError, type Parsed } from "./args";
import { EXIT_LOCAL, EXIT_OK, EXIT_USAGE, subcommandFailure, subcommandHelp, type Io } from "./client-commands";

export const tokenHelp = `usage: fsgw token create --ops <ops> [--prefix <prefix>] [--bucket <bucket>] [--ttl <ttl>] [--id <id>] [--s3] [--secret-file <file> | --config <file>] [--json]
       fsgw token secret [--json]

create   prints an access token for a server with auth "token": it allows the operations <ops>
         (a comma list of read = download and exist, write = upload, delete) on keys that start
         with <prefix> (byte for byte; default: every key), until <ttl> from now (90s, 30m, 1h,
         7d; default 1h). <id> names the token in the server's logs (default: a random one).
         --bucket names the HTTP door's bucket its keys are in (default fsgw, the TCP
         protocol's keys; * for every bucket, and for CreateBucket/DeleteBucket).
         It is signed with the secret in --secret-file, else the authSecretFile of --config, else
         of $FSGW_AUTH_SECRET_FILE.
--s3     prints an S3 access key pair with that scope instead, for the HTTP front door's AWS
         Signature V4 (aws, rclone, s3cmd, SDKs): AWS_ACCESS_KEY_ID=... and
         AWS_SECRET_ACCESS_KEY=... lines, ready for eval or an env file.
secret   prints a new random secret, for an authSecretFile.
--json   prints one JSON object instead: {"token", "id", "ops", "prefix", "bucket", "expiresAt"} (with --s3
         "accessKeyId" and "secretAccessKey" instead of "token") or {"secret"}; a failure is
         {"op", "error", "exitCode"}.

Anyone holding a token can do what it allows until it expires; there is no revocation list.
To revoke every token at once, change the secret (the previous one can stay accepted for a
while: authPreviousSecretFile; send the server SIGHUP after changing the files).

examples:
  fsgw token secret > /etc/fsgw/secret && chmod 600 /etc/fsgw/secret
  fsgw token create --ops read,write --prefix photos- --ttl 1h --secret-file /etc/fsgw/secret
  FSGW_TOKEN=$(fsgw token create --ops read --ttl 7d --config /etc/fsgw.json) fsgw get photos-1.jpg
  export $(fsgw token create --s3 --ops read,write,delete --ttl 30d --config /etc/fsgw.json)
  aws --endpoint-url http://127.0.0.1:9000 s3 ls s3://fsgw/`;

const flags = {
  "--ops": { takesValue: true },
  "--prefix": { takesValue: true },
  "--bucket": { takesValue: true },
  "--ttl": { takesValue: true },
  "--id": { takesValue: true },
  "--secret-file": { takesValue: true },
  "--config": { takesValue: true },
  "--json": { takesValue: false },
  "--s3": { takesValue: false },
  "--help": { alias: "-h", takesValue: false },
} as const;

function secretFile(parsed: Parsed): string {
  const direct = parsed.flags.get("--secret-file");
  if (direct !== undefined) return direct;
  const config = parsed.flags.get("--config");
  const loaded = loadConfig({ argv: config === undefined ? [] : ["--config", config], env: process.env });
  if (loaded.authSecretFile === "") throw new UsageError("no secret: give --secret-file, or a --config (or $FSGW_AUTH_SECRET_FILE) with authSecretFile");
  return loaded.authSecretFile;
}

export function runTokenCommand(argv: string[], io: Io): number {
  const [sub, ...rest] = argv;
  const json = argv.includes("--json");
  const fail = subcommandFailure(io, "token", sub, json);
  const help = subcommandHelp(io, tokenHelp, sub);
  if (help !== null) return help;
  try {
    const parsed = parseArgs(rest, flags);
    if (parsed.flags.has("--help")) {
      io.stdout(tokenHelp + "\n");
      return EXIT_OK;
    }
    if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[0])}`);
    if (sub === "secret") {
      const secret = newSecret();
      io.stdout((json ? JSON.stringify({ secret }) : secret) + "\n");
      return EXIT_OK;
    }
    if (sub !== "create") throw new UsageError(`unknown token command ${JSON.stringify(sub)}: use create or secret`);
    const ops = parsed.flags.get("--ops");
    if (ops === undefined) throw new UsageError("--ops is required (e.g. --ops read,write)");
    let access: number;
    let ttlMs: number;
    try {
      access = accessOf(ops.split(",").map((o) => o.trim()).filter((o) => o !== ""));
      ttlMs = parseTtl(parsed.flags.get("--ttl") ?? "1h");
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    if (access === 0) throw new UsageError("--ops names no operation");
    const prefix = parsed.flags.get("--prefix") ?? "";
    if (Buffer.byteLength(prefix) > 255) throw new UsageError("--prefix is longer than a key may be (255 bytes)");
    const bucket = parsed.flags.get("--bucket") ?? DEFAULT_BUCKET;
    if (bucket !== "*" && bucket !== DEFAULT_BUCKET && checkBucketName(bucket) !== null) throw new UsageError(`--bucket ${JSON.stringify(bucket)}: ${checkBucketName(bucket)}`);
    const id = parsed.flags.get("--id") ?? `t-${crypto.randomUUID().slice(0, 8)}`;
    const path = secretFile(parsed);
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (e) {
      return fail(`cannot read the secret file ${path}: ${(e as Error).message}`, EXIT_LOCAL);
    }
    let secret: Uint8Array;
    try {
      secret = secretOf(text, path);
    } catch (e) {
      return fail((e as Error).message, EXIT_LOCAL);
    }
    // A prefix is compared byte for byte: "--prefix a" also grants "ab" and "a-b". Said, not refused:
    // a prefix such as "user42." may be meant.
    if (prefix !== "" && !prefix.endsWith("/") && !prefix.endsWith("-")) {
      io.stderr.write(`fsgw token: warning: --prefix ${JSON.stringify(prefix)} also grants every key that merely starts with it (${JSON.stringify(prefix + "x")}, ${JSON.stringify(prefix + "2")}); end it with '/' or '-' to mean a folder or a family\n`);
    }
    const expiresAtMs = Date.now() + ttlMs;
    const named = ops.split(",").map((o) => o.trim()).filter((o) => o !== "");
    if (parsed.flags.has("--s3")) {
      const { accessKeyId, secretAccessKey } = createAccessKey(secret, { id, access, prefix, expiresAtMs, bucket });
      const text = json ? JSON.stringify({ accessKeyId, secretAccessKey, id, ops: named, prefix, bucket, expiresAt: new Date(expiresAtMs).toISOString() }) : `AWS_ACCESS_KEY_ID=${accessKeyId}\nAWS_SECRET_ACCESS_KEY=${secretAccessKey}`;
      io.stdout(text + "\n");
      return EXIT_OK;
    }
    const token = createToken(secret, { id, access, prefix, expiresAtMs, bucket });
    io.stdout((json ? JSON.stringify({ token, id, ops: named, prefix, bucket, expiresAt: new Date(expiresAtMs).toISOString() }) : token) + "\n");
    return EXIT_OK;
  } catch (e) {
    if (e instanceof UsageError || e instanceof ConfigError) return fail(e.message, EXIT_USAGE, "Run 'fsgw token --help' for usage.\n");
    throw e;
  }
}
