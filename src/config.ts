// Configuration: one table of fields, each with its default, its bound and why it exists.
// Sources, later ones winning: defaults < config.json (--config) < FSGW_* environment < --flags.
// The zod schema is built from the table, so a bad value stops start-up with a message that names
// the field, where the value came from, and the allowed range.
import { z } from "zod";
import { readFileSync } from "node:fs";
import { resolve as resolvePath } from "node:path";
import { availableParallelism } from "node:os";
import { jsonErrorOffset, lineAndColumn } from "./util/json-position";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const TiB = 1024 * 1024 * MiB;

type Kind = "int" | "string" | "text" | "bool" | "enum";

interface FieldSpec<T> {
  kind: Kind;
  default: T;
  doc: string;
  min?: number;
  max?: number;
  values?: readonly string[];
}

function int(def: number, min: number, max: number, doc: string): FieldSpec<number> {
  return { kind: "int", default: def, min, max, doc };
}
function str(def: string, doc: string, emptyAllowed = false): FieldSpec<string> {
  return { kind: emptyAllowed ? "text" : "string", default: def, doc };
}
function bool(def: boolean, doc: string): FieldSpec<boolean> {
  return { kind: "bool", default: def, doc };
}
function oneOf<const V extends readonly string[]>(values: V, def: V[number], doc: string): FieldSpec<V[number]> {
  return { kind: "enum", default: def, values, doc };
}

export const engineNames = ["cpool", "bun", "sync"] as const;
/** The most event loops one server runs (`loops`). */
export const LOOPS_MAX = 64;

/** How many event loops `config.loops` means here (0: defaultLoops of the CPUs this process may run on). */
export function loopCount(config: { loops: number }): number {
  if (config.loops > 0) return config.loops;
  return defaultLoops(availableParallelism());
}

/** `loops: 0` on a machine of `cpus` CPUs: one loop per CPU but one, and at least one. A loop at full
 * load holds a core; the C pool's workers (more than half of an upload's CPU), the kernel's network
 * work and the supervisor need CPU too, and a loop that shares its core with them loses more to
 * wake-ups than it serves. Measured on 2 cores (BENCHMARKS.md, issue 26): two loops cost 4-28 µs
 * more per exchange than one on every row and served no more. */
export function defaultLoops(cpus: number): number {
  return Math.max(1, Math.min(LOOPS_MAX, cpus - 1));
}
export type EngineName = (typeof engineNames)[number];

/** Every bound of the server. Names put units and qualifiers last. */
export const fields = {
  host: str("0.0.0.0", "interface the protocol listens on"),
  port: int(9999, 0, 65535, "TCP port of the protocol; 0 picks a free port (logged at start)"),
  httpPort: int(9000, 0, 65535, "TCP port of the HTTP front door: the S3 API (path-style, bucket fsgw: the protocol's keys) and plain HTTP GET/PUT/HEAD/DELETE for curl; 0 disables it"),
  httpHost: str("", "interface of the HTTP front door (empty: the protocol's host)", true),
  httpHeadBytesMax: int(16 * KiB, 1 * KiB, 1 * MiB, "bytes of an HTTP request's head (request line and headers) at most; a longer one is answered 431 and its connection closed"),
  httpCorsOrigins: str("", "origins whose web pages may call the HTTP front door from a browser (CORS), comma-separated, each exactly scheme://host[:port], or * for any; preflights from others are refused (403). Empty: none", true),
  bucketsMax: int(1000, 1, 100_000, "buckets the HTTP front door's CreateBucket may make besides fsgw (each a key space of the one store); past it CreateBucket is answered 400 TooManyBuckets"),
  multipartDir: str("", "directory of S3 multipart uploads' parts until CompleteMultipartUpload stores them as one object (empty: .multipart under dataDir); shared by every loop, kept across restarts. On the S3 store the uploads are the bucket's own, and this only spools a part, or a chunked body, on its way", true),
  multipartUploadsMax: int(1000, 1, 1_000_000, "S3 multipart uploads in progress at once, server-wide; past it CreateMultipartUpload is answered 503 SlowDown"),
  multipartTtlMs: int(7 * 86_400_000, 60_000, 365 * 86_400_000, "an S3 multipart upload untouched for this long is removed with its parts (swept when uploads are created)"),
  multipartPartBytesMin: int(5 * MiB, 1, 5 * GiB, "bytes of every part of an S3 multipart upload but the last, at least (S3's 5 MiB); a smaller one fails CompleteMultipartUpload with EntityTooSmall"),
  store: oneOf(["file", "s3"] as const, "file", "where files are stored: 'file', the local disk under dataDir; 's3', objects of an S3 bucket (any store that speaks the S3 API), shared by any number of gateways"),
  dataDir: str("./data", "directory that holds every stored file; nothing outside it is touched"),
  fileMode: str("0600", "permissions (octal, less the process umask) of the files fsgw creates in dataDir and cacheDir: by default only fsgw's own account reads them, since access tokens mean nothing to a local user who can read the files"),
  dirMode: str("0700", "permissions (octal, less the umask) of the directories fsgw creates in dataDir and cacheDir, dataDir itself included; an existing dataDir more open than this is reported at start"),
  shards: int(256, 1, 4096, "sub-directories files are spread over (renames in one directory contend); fixed per dataDir"),
  wire: oneOf(["protobuf", "json"] as const, "protobuf", "encoding of control frames (the Go original's two builds)"),
  loops: int(0, 0, LOOPS_MAX, `event-loop threads serving the protocol, each with its own listener on the port (SO_REUSEPORT: the kernel spreads connections), its own connections, over one shared set of ioThreads C pool workers (loopPools); 0: one per CPU this process may run on but one, at least 1 and at most ${LOOPS_MAX} (a core stays for the C pool's workers and the kernel's network work). With more than one, a RESUME that reaches another loop takes the parked upload over from the loop that holds it (cpool; on the bun and sync engines resumable uploads are off with several loops)`),
  loopRestartsMax: int(5, 0, 1000, "event loops that fail (a bug outside any connection) are replaced by fresh ones on the same port; more than this many failures within loopRestartWindowMs stop the server with a message instead"),
  loopRestartWindowMs: int(60_000, 1000, 86_400_000, "the window of loopRestartsMax"),
  loopPools: oneOf(["shared", "per-loop"] as const, "shared", "cpool with loops > 1: 'shared', one set of ioThreads workers for every loop, each loop with its own completion ring and doorbell (a completion wakes only the loop that submitted it); 'per-loop', each loop its own pool of ceil(ioThreads / loops) workers (BENCHMARKS.md compares them)"),
  ioEngine: oneOf(engineNames, "cpool", "who performs file I/O: the C thread pool, Bun's own async fs, or blocking calls on the JS thread"),
  ioThreads: int(8, 1, 256, "worker threads of the C pool (cpool)"),
  priorIoThreads: int(0, 0, 256, "of the ioThreads, how many ask for SCHED_RR priority (refused without privilege: logged once)"),
  cpuAffinity: bool(false, "pin C pool worker i to CPU i mod ncpu (refused pinning is logged once)"),
  ioThreadNice: int(0, 0, 19, "nice value of C pool workers: above 0, the event-loop thread wins the CPU when cores are scarce (see BENCHMARKS.md)"),
  waitingQueueLen: int(65_536, 1, 16_777_216, "operations the C pool holds (queued, running, or done and not yet drained); past it submitters wait in JS"),
  ioSubmitMode: oneOf(["adaptive", "batch", "direct"] as const, "adaptive", "how operations reach the C pool: 'batch' gathers them per event-loop turn into one call and polls the completion ring at the end of the turn (no doorbell while the loop is awake); 'direct' hands each over at once, completions by doorbell; 'adaptive' batches an exchange's one-call operations and sends a streamed body's reads and writes at once (BENCHMARKS.md)"),
  ioInline: oneOf(["cached", "off"] as const, "cached", "cpool: answer exist and small downloads on the event loop when the kernel has the file in memory (openat2 RESOLVE_CACHED, preadv2 RWF_NOWAIT), else on the pool; 'off': always the pool. Only on local file systems"),
  digestCacheEntries: int(65_536, 0, 16_777_216, "cpool: recorded digests the event loop remembers by inode (96 bytes each), so an exist or download of a file it knows reads no attribute; an entry holds while the file's ctime and size are unchanged (0: read every time)"),
  ioJobsPerWake: int(1, 1, 1024, "cpool: a batch submission wakes a sleeping worker only while more than this many jobs per awake worker are queued (a single one wakes one at once); higher means fewer thread wake-ups and longer queues (a worker whose job ran over 0.2 ms wakes another)"),
  ioSpinUs: int(0, 0, 1000, "cpool: after a job, one idle worker waits awake this long for the next before it sleeps (0: sleeps at once); spares a thread wake-up per operation when work streams in, costs the CPU it spins; never spins at idle"),
  submitBatchMax: int(1024, 1, 65_536, "largest batch handed to the C pool in one call (batch mode); a full batch is flushed at once"),
  drainBatchMax: int(1024, 1, 65_536, "completion records copied out of the C pool per call (16 bytes each, in one buffer); more ready records take more calls in the same drain"),
  maxOpenFiles: int(20_000, 64, 1_048_576, "soft RLIMIT_NOFILE to ask for at start (capped by the hard limit; the effective value is logged)"),
  frameBytesMax: int(64 * KiB, 16, 16 * MiB, "largest control frame accepted; a larger announced length closes the connection before any allocation"),
  connectionsMax: int(10_000, 1, 1_000_000, "open connections; one past it is closed at once and logged"),
  idleTimeoutMs: int(60_000, 50, 86_400_000, "a connection silent this long (mid-exchange or between) is closed, its partial upload discarded"),
  connectionBufferBytesMax: int(1 * MiB, 64 * KiB, 1024 * MiB, "received bytes a connection may hold that are not yet on disk; past it reading pauses until they drain"),
  uploadBytesMax: int(1 * TiB, 1, Number.MAX_SAFE_INTEGER, "largest upload accepted; a larger Size is answered with an error text"),
  inlineBytesMax: int(64 * KiB, 0, 16 * MiB, "uploads (and downloads when zeroCopy is off) up to this size move in one piece (one engine call, one socket write) instead of streaming; must not exceed connectionBufferBytesMax"),
  inlineBuffersBytesMax: int(32 * MiB, 0, 1024 * MiB, "idle memory kept in buffers of inlineBytesMax + 2 KiB for reuse by small uploads and downloads; past it released buffers go to the garbage collector"),
  listPageBytesMax: int(1 * MiB, 16 * KiB, 64 * MiB, "bytes of one LIST page's lines at most (besides at most 1000 keys); a page that would be larger ends early and says where the next starts"),
  ioChunkBytes: int(256 * KiB, 4 * KiB, 64 * MiB, "largest single write or read handed to the engine while streaming; must not exceed connectionBufferBytesMax"),
  resumableUploadsMax: int(1024, 0, 1_000_000, "resumable uploads (Resumable in the request) in progress or parked after a broken connection at once, server-wide; past it an upload that asks to be resumable is taken as an ordinary one (its START carries no UploadId: clients carry on without resuming) (0: none)"),
  resumableBytesMax: int(64 * 1024 * MiB, 0, Number.MAX_SAFE_INTEGER, "bytes that parked resumable uploads keep on disk (what actually arrived, not what was announced), server-wide; an upload whose connection breaks past it is discarded instead of parked"),
  resumableUploadsPerClientMax: int(64, 1, 1_000_000, "resumable uploads in progress or parked charged to one client: to its address, and with auth 'token' also to its token's id (each bounded); past it that client's uploads are taken as ordinary ones, so that one tenant cannot hold every tenant's resumable uploads"),
  resumableBytesPerClientMax: int(16 * 1024 * MiB, 0, Number.MAX_SAFE_INTEGER, "bytes kept by the parked uploads of one client (address, and token id); an upload of that client whose connection breaks past it is discarded instead of parked"),
  resumableTtlMs: int(86_400_000, 1000, 30 * 86_400_000, "a parked resumable upload (its connection broke) not resumed within this long is removed with its partial file; partials do not survive a restart either"),
  uploadWritesInFlightMax: int(2, 1, 64, "writes one streamed upload may have in flight at once (each at its own offset), so disk and network overlap"),
  zeroCopy: bool(true, "cpool: bodies never pass through JavaScript: every download goes file -> socket (START, body and END in one call from cached pages, sendfile(2) on pool workers otherwise), uploads larger than inlineBytesMax socket -> file with splice(2); off: through memory"),
  volumes: bool(true, "file store: bodies of at most volumeBytesMax go to append-only volume files (<dataDir>/volumes) as records, instead of a file each: one write for the uploads that arrive together, no inode per key (docs/VOLUMES.md); off: every body is a file (records already in volumes stay readable and deletable). The s3 store has none: there the default is off and setting it is refused"),
  volumeBytesMax: int(64 * KiB, 1, 16 * MiB, "volumes: the largest body stored as a volume's record; larger ones are files"),
  volumeFileBytesMax: int(1024 * MiB, 1 * MiB, 64 * 1024 * MiB, "volumes: a volume file is sealed and the next one begun before it would pass this size"),
  volumeBatchBytesMax: int(1 * MiB, 64 * KiB, 256 * MiB, "volumes: records gathered for one write while the previous write (and its fsync) is in flight; must hold one record of volumeBytesMax (plus 350 bytes of header and key). A compaction keeps at most twice this in copies not yet written"),
  volumeFilesOpenMax: int(1024, 4, 100_000, "volumes: descriptors of volumes each loop keeps open for reading; past it the longest-open one no read holds is closed (and opened again at its next read)"),
  volumeCompactLivePercent: int(50, 0, 100, "volumes: a volume no loop appends to whose live records take less than this percentage of it is compacted (its live records copied to a new volume, then it is removed); 0: never"),
  volumeCompactBytesPerSecond: int(64 * MiB, 1 * MiB, 64 * 1024 * MiB, "volumes: bytes a compaction reads per second at most, so that it leaves the disk to the requests"),
  volumeDeadRecordsMax: int(4 * 1024 * 1024, 0, 1024 * 1024 * 1024, "volumes: dead records (overwritten or deleted, not yet compacted away) the index remembers by key and volume, 8 to 16 bytes each, so that a compaction can drop a tombstone once no other volume holds a record it deletes; past it every tombstone is kept (as with 0) until a start that reads the volumes whole (no checkpoint)"),
  volumeCompactCheckMs: int(60_000, 100, 86_400_000, "volumes: how often the volumes' live shares are looked at for compaction"),
  diskFreeBytesMin: int(64 * MiB, 0, Number.MAX_SAFE_INTEGER, "file store: new bodies are refused ('disk full') while they would leave the data directory's file system less than this free (statfs, looked at again every 100 ms and after each refusal), so that deletes (a volume's record is deleted by appending a tombstone) and compaction always find room; 0: up to the last byte"),
  fsyncOnCommit: bool(false, "the upload survives power loss once END is sent: a file is fsynced before its rename and its directory after (two disk flushes per upload); a volume's records are fsynced once per write, for every record that arrived together (group commit)"),
  s3Endpoint: str("", "s3 store: base URL of the S3 API, path-style (http://127.0.0.1:8080, https://minio.example:9000); empty: AWS, https://s3.<s3Region>.amazonaws.com. Also read from S3_ENDPOINT or AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL", true),
  s3Bucket: str("", "s3 store: the bucket (it must exist). Also read from S3_BUCKET or AWS_BUCKET", true),
  s3Region: str("us-east-1", "s3 store: region the requests are signed for. Also read from S3_REGION, AWS_REGION or AWS_DEFAULT_REGION"),
  s3AccessKeyId: str("", "s3 store: access key id. Also read from S3_ACCESS_KEY_ID or AWS_ACCESS_KEY_ID", true),
  s3SecretAccessKey: str("", "s3 store: secret access key (never logged). Also read from S3_SECRET_ACCESS_KEY or AWS_SECRET_ACCESS_KEY. As a flag it is visible to every local user (ps): prefer s3SecretAccessKeyFile or the environment", true),
  s3SecretAccessKeyFile: str("", "s3 store: a file holding the secret access key (one line; /dev/stdin reads it from standard input), read at start instead of s3SecretAccessKey", true),
  s3SessionToken: str("", "s3 store: session token of temporary credentials (empty: none). Also read from S3_SESSION_TOKEN or AWS_SESSION_TOKEN", true),
  s3Prefix: str("", "s3 store: prepended to every key's object name, so that several namespaces share a bucket; the sweep of stale multipart uploads looks only under it", true),
  s3PartBytes: int(8 * MiB, 5 * MiB, 512 * MiB, "s3 store: an upload up to this size is one PUT; a larger one is a multipart upload of parts this large (larger when the body would need more than 10,000). Each streamed upload holds up to (uploadWritesInFlightMax + 2) parts in memory"),
  s3ConcurrentRequestsMax: int(128, 1, 65_536, "s3 store: requests to the store in flight at once, over all connections (a streamed download holds one until its body is read); more wait their turn in order"),
  s3TimeoutMs: int(30_000, 100, 3_600_000, "s3 store: a request without progress (its answer, or the next bytes of a body) for this long is aborted and answered 'store timeout'"),
  s3StaleUploadMs: int(86_400_000, 1000, 30 * 86_400_000, "s3 store: multipart uploads under s3Prefix started longer ago than this are aborted by the sweep (at start, then hourly): left by a crashed gateway or an abort the store did not hear"),
  s3PendingAbortsMax: int(10_000, 0, 1_000_000, "s3 store: multipart uploads whose abort the store did not hear (it was down), retried every 5 s until it does; past it the sweep of stale uploads is left to find them"),
  cacheDir: str("", "s3 store: directory of a local read cache (empty: none): downloads are served from copies here, by the same machinery as the file store, while their ETag holds; emptied at start", true),
  cacheBytesMax: int(1024 * MiB, 0, Number.MAX_SAFE_INTEGER, "s3 store: bytes of copies the read cache keeps; past it the least recently used go"),
  cacheEntriesMax: int(1_000_000, 0, 100_000_000, "s3 store: copies the read cache keeps (~300 bytes of memory each); past it the least recently used go"),
  cacheFreshMs: int(1000, 0, 86_400_000, "s3 store: a copy whose ETag the store confirmed within this long is served without asking it; past it a HEAD confirms it first. An overwrite or delete through another gateway is seen after at most this long (through this one, at once); 0: a HEAD before every cached download"),
  shutdownGraceMs: int(5_000, 0, 600_000, "on SIGINT/SIGTERM, time given to exchanges in flight before connections are cut"),
  detached: bool(false, "keep serving when the command that started the server ends or its terminal goes (as under nohup, init or a service manager, which are detected); off, a server started in the foreground stops with it"),
  pidFile: str("", "write the server's process id to this file once it listens, and remove it at a clean stop (empty: none)", true),
  logLevel: oneOf(["debug", "info", "warn", "error"] as const, "info", "lowest level logged (debug adds one line per exchange)"),
  logFile: str("", "also write logs to this file (empty: stdout only)", true),
  logLinesPerFile: int(100_000, 1, 1_000_000_000, "lines per log file before it is rotated to <logFile>.1, .2, ..."),
  logFilesKept: int(10, 1, 1000, "rotated log files kept; the oldest beyond this is deleted"),
  adminHost: str("127.0.0.1", "interface of the admin HTTP endpoint (profiles, stats, metrics, health); loopback unless you mean it"),
  adminPort: int(6060, 0, 65535, "port of the admin HTTP endpoint; 0 disables it"),
  adminConnectionsMax: int(64, 1, 4096, "connections the admin endpoint holds at once; one more is closed at once (every answer closes its connection, so this bounds requests in progress)"),
  adminTimeoutMs: int(10_000, 100, 600_000, "an admin connection must send its whole request within this long of opening, or it is closed; a profile's connection has its seconds added"),
  adminToken: str("", "bearer token the admin endpoint requires (Authorization: Bearer <token>); required when adminHost is not loopback, at least 16 characters (empty: none, loopback only)", true),
  tlsCertFile: str("", "PEM certificate (chain) of the protocol port: with tlsKeyFile, the port speaks TLS only; reloaded on SIGHUP (empty: plain TCP)", true),
  tlsKeyFile: str("", "PEM private key of tlsCertFile; reloaded on SIGHUP", true),
  tlsClientCaFile: str("", "PEM CA certificate(s): only clients presenting a certificate signed by them get in (mutual TLS); reloaded on SIGHUP (empty: any client)", true),
  auth: oneOf(["none", "token"] as const, "none", "'token': a connection must present a signed access token (the AUTH exchange) before any other; v1 exchanges without one are answered 'unauthorized'. 'none': anyone who reaches the port may do anything (the Go original)"),
  authSecretFile: str("", "file holding the secret that signs access tokens (at least 32 bytes; 'fsgw token secret' makes one); re-read on SIGHUP", true),
  authPreviousSecretFile: str("", "file holding the previous secret, still accepted while tokens signed with it are in use (secret rotation); re-read on SIGHUP (empty: none)", true),
  authTimeoutMs: int(5_000, 100, 600_000, "auth 'token': a connection must complete AUTH within this long of opening (or of its token's revocation), or it is closed and counted as a failed AUTH of its address; sending bytes does not extend it"),
  unauthenticatedConnectionsMax: int(1024, 1, 1_000_000, "auth 'token': connections that have not completed AUTH, server-wide (with several loops each loop holds its share); one more closes the one open the longest, counted as a failed AUTH of its address. Must be below connectionsMax, so that they can never take every slot"),
  frameTimeoutMs: int(10_000, 50, 3_600_000, "a request frame must arrive whole within this long of its first byte, or the connection is closed (a client that trickles a frame a byte at a time resets idleTimeoutMs, not this)"),
  connectionsPerIpMax: int(4096, 1, 1_000_000, "open connections from one client address; one past it is closed at once"),
  authFailuresMax: int(10, 1, 1_000_000, "failed AUTH exchanges from one address within authFailureWindowMs before its new connections are closed at once for authBlockMs"),
  authFailureWindowMs: int(60_000, 100, 86_400_000, "window in which authFailuresMax failures block an address"),
  authBlockMs: int(60_000, 100, 86_400_000, "how long a blocked address's new connections are closed at once"),
  clientAddressesMax: int(65_536, 16, 16_777_216, "clients (addresses, and token ids) remembered for the per-client limits (open connections, failed AUTH exchanges, resumable uploads); past it the longest-quiet one without open connections or resumable uploads is forgotten"),
} as const;

type Fields = typeof fields;
export type FieldName = keyof Fields;
export type Config = { -readonly [K in FieldName]: Fields[K]["default"] };

function describeRange(spec: FieldSpec<unknown>): string {
  switch (spec.kind) {
    case "int":
      return `an integer in ${spec.min}..${spec.max}`;
    case "bool":
      return "true or false";
    case "enum":
      return `one of ${spec.values!.map((v) => JSON.stringify(v)).join(", ")}`;
    case "string":
      return "a non-empty string";
    case "text":
      return "a string";
  }
}

function zodFor(spec: FieldSpec<unknown>): z.ZodType {
  switch (spec.kind) {
    case "int":
      return z.number().int().min(spec.min!).max(spec.max!);
    case "bool":
      return z.boolean();
    case "enum":
      return z.enum(spec.values as [string, ...string[]]);
    case "string":
      return z.string().min(1);
    case "text":
      return z.string();
  }
}

const schema = z
  .object(Object.fromEntries(Object.entries(fields).map(([k, spec]) => [k, zodFor(spec)])))
  .strict();

export class ConfigError extends Error {}

/** Standard environment variables of S3 tools that fill the s3* fields, first found wins. */
const S3_ENVIRONMENT: Record<string, string[]> = {
  s3Endpoint: ["S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"],
  s3Bucket: ["S3_BUCKET", "AWS_BUCKET"],
  s3Region: ["S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"],
  s3AccessKeyId: ["S3_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"],
  s3SecretAccessKey: ["S3_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"],
  s3SessionToken: ["S3_SESSION_TOKEN", "AWS_SESSION_TOKEN"],
};

/** `dataDir` -> `FSGW_DATA_DIR`. */
export function envName(field: string): string {
  return "FSGW_" + field.replace(/[A-Z]/g, (c) => "_" + c).toUpperCase();
}
/** `dataDir` -> `--data-dir`. */
export function flagName(field: string): string {
  return "--" + field.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
}

/** Env vars and flags are text: turn them into the field's type, or keep the text for zod to refuse. */
function fromText(spec: FieldSpec<unknown>, text: string): unknown {
  switch (spec.kind) {
    case "int":
      return /^-?\d+$/.test(text.trim()) ? Number(text.trim()) : text;
    case "bool":
      return text === "true" || text === "1" ? true : text === "false" || text === "0" ? false : text;
    default:
      return text;
  }
}

export interface LoadOptions {
  argv: string[];
  env: Record<string, string | undefined>;
  /** Receives what is suspicious but not wrong (an FSGW_* variable no field reads); the server logs it. */
  warnings?: string[];
}

/** Builds the validated config from defaults, the --config file, FSGW_* variables and flags. */
export function loadConfig({ argv, env, warnings }: LoadOptions): Config {
  const values: Record<string, unknown> = {};
  const origin: Record<string, string> = {};
  for (const [name, spec] of Object.entries(fields)) {
    values[name] = spec.default;
    origin[name] = "default";
  }

  // The S3 tools' own variables, as Bun's S3 client and the AWS SDKs read them: below everything
  // fsgw-specific (the config file, FSGW_*, flags).
  for (const [name, variables] of Object.entries(S3_ENVIRONMENT)) {
    const variable = variables.find((v) => (env[v] ?? "") !== "");
    if (variable === undefined) continue;
    values[name] = env[variable];
    origin[name] = variable;
  }

  const flags = parseFlags(argv);
  const configFlag = flags.get("--config");
  if (configFlag === null) throw new ConfigError("--config needs a value (a JSON file)");
  const configPath = configFlag ?? env.FSGW_CONFIG;
  if (configPath !== undefined) {
    let text: string;
    try {
      text = readFileSync(configPath, "utf8");
    } catch (e) {
      throw new ConfigError(`cannot read config file ${configPath}: ${(e as Error).message}`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      const at = jsonErrorOffset(text);
      const where = at >= 0 ? `${lineAndColumn(text, at)}: ` : "";
      throw new ConfigError(`config file ${configPath}: ${where}${(e as Error).message.replace(/^JSON Parse error: /, "")}`);
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      throw new ConfigError(`config file ${configPath}: must hold one JSON object`);
    }
    for (const [name, value] of Object.entries(parsed)) {
      values[name] = value;
      origin[name] = configPath;
    }
  }
  const known = new Set(["FSGW_CONFIG", ...Object.keys(fields).map(envName)]);
  for (const variable of Object.keys(env)) {
    if (variable.startsWith("FSGW_") && !known.has(variable)) {
      warnings?.push(`unknown environment variable ${variable} is ignored (no config field reads it; see fsgw serve --help)`);
    }
  }
  for (const [name, spec] of Object.entries(fields)) {
    const text = env[envName(name)];
    if (text !== undefined) {
      values[name] = fromText(spec, text);
      origin[name] = envName(name);
    }
  }
  for (const [flag, text] of flags) {
    if (flag === "--config") continue;
    const name = Object.keys(fields).find((f) => flagName(f) === flag);
    if (name === undefined) throw new ConfigError(`unknown option ${flag} (try --help)`);
    const spec = fields[name as FieldName] as FieldSpec<unknown>;
    if (text === null) {
      if (typeof spec.default !== "boolean") throw new ConfigError(`${flag} needs a value (${describeRange(spec)})`);
      values[name] = true;
      origin[name] = flag;
      continue;
    }
    values[name] = fromText(spec, text);
    origin[name] = flag;
  }

  const result = schema.safeParse(values);
  if (!result.success) {
    const lines = result.error.issues.map((issue) => {
      if (issue.code === "unrecognized_keys") {
        return issue.keys.map((k) => `unknown config field "${k}" (from ${origin[k] ?? "config"})`).join("\n");
      }
      const name = String(issue.path[0] ?? "");
      const spec = (fields as Record<string, FieldSpec<unknown>>)[name]!;
      return `invalid ${name} = ${JSON.stringify(values[name])} (from ${origin[name]}): expected ${describeRange(spec)}`;
    });
    throw new ConfigError(lines.join("\n"));
  }
  const config = result.data as Config;
  if (config.s3SecretAccessKeyFile !== "") {
    if (origin.s3SecretAccessKey !== "default") throw new ConfigError(`give s3SecretAccessKey (from ${origin.s3SecretAccessKey}) or s3SecretAccessKeyFile (from ${origin.s3SecretAccessKeyFile}), not both`);
    try {
      config.s3SecretAccessKey = readFileSync(config.s3SecretAccessKeyFile, "utf8").trim();
    } catch (e) {
      throw new ConfigError(`cannot read s3SecretAccessKeyFile ${config.s3SecretAccessKeyFile} (from ${origin.s3SecretAccessKeyFile}): ${(e as Error).message}`);
    }
    origin.s3SecretAccessKey = origin.s3SecretAccessKeyFile ?? "s3SecretAccessKeyFile";
  } else if ((origin.s3SecretAccessKey ?? "").startsWith("--")) {
    warnings?.push("s3SecretAccessKey given as a flag is visible to every user of this machine (ps, /proc): use --s3-secret-access-key-file, S3_SECRET_ACCESS_KEY or the config file");
  }
  crossCheck(config, origin);
  return config;
}

/** 127.0.0.0/8, ::1 and localhost: the admin endpoint may go without a token only there. */
export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** httpCorsOrigins as its list of origins (empty: none). */
export function corsOriginsOf(text: string): string[] {
  return text.split(",").map((o) => o.trim()).filter((o) => o !== "");
}

/** Bounds that depend on each other. */
function crossCheck(config: Config, origin: Record<string, string>): void {
  for (const name of ["fileMode", "dirMode"] as const) {
    if (!/^0?[0-7]{3}$/.test(config[name])) throw new ConfigError(`invalid ${name} = ${JSON.stringify(config[name])} (from ${origin[name]}): expected permissions in octal, such as "0600"`);
  }
  if ((config.tlsCertFile === "") !== (config.tlsKeyFile === "")) {
    throw new ConfigError(`tlsCertFile and tlsKeyFile go together (tlsCertFile from ${origin.tlsCertFile}, tlsKeyFile from ${origin.tlsKeyFile})`);
  }
  if (config.tlsClientCaFile !== "" && config.tlsCertFile === "") {
    throw new ConfigError(`tlsClientCaFile (from ${origin.tlsClientCaFile}) needs tlsCertFile and tlsKeyFile: mutual TLS is TLS`);
  }
  for (const o of corsOriginsOf(config.httpCorsOrigins)) {
    if (o !== "*" && !/^https?:\/\/[^/\s,]+$/.test(o)) throw new ConfigError(`invalid httpCorsOrigins entry ${JSON.stringify(o)} (from ${origin.httpCorsOrigins}): expected scheme://host[:port] (no path, no trailing slash), or *`);
  }
  if (config.auth === "token" && config.authSecretFile === "") {
    throw new ConfigError(`auth = "token" (from ${origin.auth}) needs authSecretFile: the secret that signs the tokens`);
  }
  if (config.auth === "token" && config.unauthenticatedConnectionsMax >= config.connectionsMax) {
    throw new ConfigError(
      `invalid unauthenticatedConnectionsMax = ${config.unauthenticatedConnectionsMax} (from ${origin.unauthenticatedConnectionsMax}): with auth "token" it must be below connectionsMax (${config.connectionsMax}, from ${origin.connectionsMax}), or connections that never authenticate could take every slot`,
    );
  }
  if (config.adminPort !== 0 && !isLoopbackHost(config.adminHost) && config.adminToken === "") {
    throw new ConfigError(
      `adminHost = ${JSON.stringify(config.adminHost)} (from ${origin.adminHost}) is not loopback: set adminToken, or the profiles, stats and metrics are open to anyone who reaches it`,
    );
  }
  if (config.adminToken !== "" && config.adminToken.length < 16) {
    throw new ConfigError(`invalid adminToken (from ${origin.adminToken}): at least 16 characters`);
  }
  if (config.store === "s3") {
    for (const name of ["s3Bucket", "s3AccessKeyId", "s3SecretAccessKey"] as const) {
      if (config[name] === "") throw new ConfigError(`store = "s3" (from ${origin.store}) needs ${name} (or its environment variable: see fsgw serve --help)`);
    }
    if (config.s3Endpoint !== "" && !/^https?:\/\/[^/?#]+\/?[^?#]*$/.test(config.s3Endpoint)) {
      throw new ConfigError(`invalid s3Endpoint = ${JSON.stringify(config.s3Endpoint)} (from ${origin.s3Endpoint}): expected http://host[:port] or https://host[:port]`);
    }
  } else if (config.cacheDir !== "") {
    throw new ConfigError(`cacheDir (from ${origin.cacheDir}) is the s3 store's read cache: it needs store = "s3"`);
  }
  if (config.cacheDir !== "" && resolvePath(config.cacheDir) === resolvePath(config.dataDir)) {
    throw new ConfigError(`cacheDir (from ${origin.cacheDir}) must not be dataDir`);
  }
  if (config.volumes && config.store !== "file") {
    // On by default for the file store; the s3 store has no volumes, so only an explicit setting is wrong.
    if (origin.volumes !== "default") throw new ConfigError(`volumes (from ${origin.volumes}) is a file store feature: it needs store = "file"`);
    config.volumes = false;
  }
  if (config.volumes && config.volumeBatchBytesMax < config.volumeBytesMax + 350) {
    throw new ConfigError(`invalid volumeBatchBytesMax = ${config.volumeBatchBytesMax} (from ${origin.volumeBatchBytesMax}): must hold a record of volumeBytesMax (${config.volumeBytesMax}) plus 350 bytes`);
  }
  for (const name of ["inlineBytesMax", "ioChunkBytes"] as const) {
    if (config[name] > config.connectionBufferBytesMax) {
      throw new ConfigError(
        `invalid ${name} = ${config[name]} (from ${origin[name]}): must not exceed connectionBufferBytesMax (${config.connectionBufferBytesMax})`,
      );
    }
  }
}

/** `--name value` and `--name=value` pairs; a bare flag (null) is `true` for a boolean field. */
function parseFlags(argv: string[]): Map<string, string | null> {
  const out = new Map<string, string | null>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith("--")) throw new ConfigError(`unexpected argument ${JSON.stringify(arg)} (try --help)`);
    const eq = arg.indexOf("=");
    if (eq > 0) {
      out.set(arg.slice(0, eq), arg.slice(eq + 1));
    } else if (i + 1 < argv.length && !argv[i + 1]!.startsWith("--")) {
      out.set(arg, argv[++i]!);
    } else {
      out.set(arg, null);
    }
  }
  return out;
}

/** The options table printed by `fsgw serve --help`. */
export function configHelp(): string {
  const head = (flag: string, env: string, rest: string) => `  ${flag.padEnd(30)} ${env.padEnd(34)} ${rest}`;
  const rows = Object.entries(fields).map(([name, spec]) => `${head(flagName(name), envName(name), `default ${JSON.stringify(spec.default)}`)}\n${wrap(`${spec.doc}; ${describeRange(spec)}`, 6, 100)}`);
  return [head("--config <file>", "FSGW_CONFIG", "a JSON object of the fields below"), ...rows].join("\n");
}

/** `text` in lines of at most `width` columns (a longer word stands alone), each indented by `indent`. */
function wrap(text: string, indent: number, width: number): string {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && indent + line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === "" ? word : `${line} ${word}`;
    }
  }
  if (line !== "") lines.push(line);
  return lines.map((l) => " ".repeat(indent) + l).join("\n");
}

function describeDefault(name: string, spec: FieldSpec<unknown>): string {
  const v = spec.default;
  if (typeof v === "number" && name.includes("Bytes") && v >= 1024 && v % 1024 === 0) {
    const units: [number, string][] = [[1024 ** 4, "TiB"], [1024 ** 3, "GiB"], [1024 ** 2, "MiB"], [1024, "KiB"]];
    for (const [size, unit] of units) if (v % size === 0) return `${v / size} ${unit}`;
  }
  return typeof v === "string" && v === "" ? "(empty)" : String(v);
}

/** The configuration table of README.md, in Markdown. */
export function configTable(): string {
  const rows = Object.entries(fields).map(([name, spec]) => {
    const range = describeRange(spec).replace(/^an integer in /, "").replace(/"/g, "`");
    return `| \`${name}\` | \`${envName(name)}\` \`${flagName(name)}\` | ${describeDefault(name, spec)} | ${range} | ${spec.doc} |`;
  });
  return ["| field | environment / flag | default | allowed | meaning |", "|---|---|---|---|---|", ...rows].join("\n");
}
