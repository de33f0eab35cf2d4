// Live counters of the server: connections, exchanges by op (count, errors, bytes, latency), and a
// snapshot that adds the engine's and the process's own numbers. Recording an exchange is a few
// increments and one histogram bucket: cheap enough for every exchange on the hot path.
import { readdirSync } from "node:fs";
import type { EngineStats } from "../engine/io-engine";

export const statOps = ["bench", "upload", "download", "exist", "delete", "auth", "list"] as const;
export type StatOp = (typeof statOps)[number];

/** Four buckets per power of two of microseconds, from 1 µs to 2^40 µs (~12 days): 160 buckets. */
const BUCKETS_PER_OCTAVE = 4;
const OCTAVES = 40;
const BUCKET_COUNT = BUCKETS_PER_OCTAVE * OCTAVES;

/** The upper bound (µs) of fine bucket i. */
function bucketUpperUs(i: number): number {
  return 2 ** ((i + 1) / BUCKETS_PER_OCTAVE);
}

export class LatencyHistogram {
  readonly counts = new Float64Array(BUCKET_COUNT);
  count = 0;
  sumSeconds = 0;

  record(us: number): void {
    const i = us <= 1 ? 0 : Math.min(BUCKET_COUNT - 1, Math.floor(Math.log2(us) * BUCKETS_PER_OCTAVE));
    this.counts[i]!++;
    this.count++;
    this.sumSeconds += us / 1e6;
  }

  /** The p-th percentile in ms: the upper bound of its bucket (at most 19% above the truth). */
  percentileMs(p: number): number {
    if (this.count === 0) return 0;
    const rank = Math.ceil((p / 100) * this.count);
    let seen = 0;
    for (let i = 0; i < BUCKET_COUNT; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return bucketUpperUs(i) / 1000;
    }
    return bucketUpperUs(BUCKET_COUNT - 1) / 1000;
  }

  /** Cumulative counts at power-of-two bounds (in seconds), for a Prometheus histogram. */
  cumulativeAtOctaves(fromOctave: number, toOctave: number): { leSeconds: number; count: number }[] {
    const out: { leSeconds: number; count: number }[] = [];
    let seen = 0;
    let i = 0;
    for (let octave = fromOctave; octave <= toOctave; octave++) {
      const lastBucket = octave * BUCKETS_PER_OCTAVE - 1; // bucket whose upper bound is 2^octave µs
      for (; i <= lastBucket && i < BUCKET_COUNT; i++) seen += this.counts[i]!;
      out.push({ leSeconds: 2 ** octave / 1e6, count: seen });
    }
    return out;
  }
}

export class OpStats {
  count = 0;
  errors = 0;
  bytes = 0;
  readonly latency = new LatencyHistogram();
}

export class ServerStats {
  constructor(readonly startedMs = Date.now()) {}
  connectionsOpen = 0;
  connectionsAccepted = 0;
  connectionsRefused = 0;
  protocolViolations = 0;
  idleTimeouts = 0;
  /** Connections closed because fsgw's own code threw (event=connection_bug); 0 unless a bug. */
  connectionBugs = 0;
  /** Downloads whose body went by sendfile, and those that fell back to copying (zeroCopy on). */
  zeroCopyDownloads = 0;
  zeroCopyFallbacks = 0;
  /** Uploads whose body went from the socket to the file by splice. */
  zeroCopyUploads = 0;
  /** Exceptions no connection caught (event=unhandled_rejection / uncaught_exception). */
  uncaughtErrors = 0;
  /** Security (issue 12): connections closed at once for their address (connectionsPerIpMax, a
   *  blocked address), AUTH exchanges refused, addresses blocked, TLS handshakes that failed. */
  connectionsRefusedPerIp = 0;
  connectionsRefusedBlocked = 0;
  authFailures = 0;
  authBlocks = 0;
  tlsHandshakeFailures = 0;
  /** Issue 21: open connections whose token a reload of the secrets revoked; connections closed
   *  for not completing AUTH within authTimeoutMs, for a frame not complete within frameTimeoutMs,
   *  and to make room under unauthenticatedConnectionsMax; symlinks refused in the data directory. */
  tokensRevoked = 0;
  authTimeouts = 0;
  frameTimeouts = 0;
  unauthenticatedEvicted = 0;
  symlinksRefused = 0;
  /** Resumable uploads (issue 13): how many the store holds now, parked/resumed so far, taken as
   *  ordinary ones (a bound), broken and not kept (a bound on kept bytes), and the bytes kept now. */
  resumable: () => { held: number; parked: number; resumed: number; refused: number; notKept: number; keptBytes: number } = () => ({ held: 0, parked: 0, resumed: 0, refused: 0, notKept: 0, keptBytes: 0 });
  /** The store's own counters (the S3 store's requests, uploads and read cache), by camelCase name. */
  store: () => Record<string, number> = () => ({});
  readonly ops: Record<StatOp, OpStats> = {
    bench: new OpStats(),
    upload: new OpStats(),
    download: new OpStats(),
    exist: new OpStats(),
    delete: new OpStats(),
    auth: new OpStats(),
    list: new OpStats(),
  };

  /** One exchange is over: `startedAt` is its performance.now() when its request was read. */
  exchange(op: StatOp, startedAt: number, bytes: number, ok: boolean): void {
    const s = this.ops[op];
    s.count++;
    if (!ok) s.errors++;
    s.bytes += bytes;
    s.latency.record((performance.now() - startedAt) * 1000);
  }
}

/**
 * A loop's numbers as plain values (they cross from a loop's thread to the supervisor), and their
 * sum over loops as one ServerStats: counters add, histograms merge bucket by bucket (so the
 * server's percentiles are those of every exchange, not a maximum of per-loop ones).
 */
export interface StatsFigures {
  startedMs: number;
  counters: Record<string, number>;
  ops: Record<StatOp, { count: number; errors: number; bytes: number; counts: Float64Array; latencyCount: number; sumSeconds: number }>;
  resumable: ResumableFigures;
  store: Record<string, number>;
}

type ResumableFigures = ReturnType<ServerStats["resumable"]>;

export function statsFigures(stats: ServerStats): StatsFigures {
  const counters: Record<string, number> = {};
  for (const [name, value] of Object.entries(stats)) if (typeof value === "number" && name !== "startedMs") counters[name] = value;
  const ops = {} as StatsFigures["ops"];
  for (const op of statOps) {
    const o = stats.ops[op];
    ops[op] = { count: o.count, errors: o.errors, bytes: o.bytes, counts: o.latency.counts.slice(), latencyCount: o.latency.count, sumSeconds: o.latency.sumSeconds };
  }
  return { startedMs: stats.startedMs, counters, ops, resumable: stats.resumable(), store: stats.store() };
}

/** Keys of the resumable figures that every loop reports whole (shared totals): taken once, not summed. */
const RESUMABLE_WHOLE = new Set(["keptBytes"]);

/** The server's numbers: every loop's figures summed into one ServerStats (started when the first loop did). */
export function sumFigures(all: readonly StatsFigures[]): ServerStats {
  const sum = new ServerStats(Math.min(...all.map((f) => f.startedMs)));
  const target = sum as unknown as Record<string, number>;
  for (const f of all) {
    for (const [name, value] of Object.entries(f.counters)) target[name] = (target[name] ?? 0) + value;
    for (const op of statOps) {
      const from = f.ops[op];
      const to = sum.ops[op];
      to.count += from.count;
      to.errors += from.errors;
      to.bytes += from.bytes;
      for (let i = 0; i < from.counts.length; i++) to.latency.counts[i]! += from.counts[i]!;
      to.latency.count += from.latencyCount;
      to.latency.sumSeconds += from.sumSeconds;
    }
  }
  const resumable: Record<string, number> = {};
  const store: Record<string, number> = {};
  for (const f of all) {
    for (const [k, v] of Object.entries(f.resumable)) resumable[k] = RESUMABLE_WHOLE.has(k) ? v : (resumable[k] ?? 0) + v;
    for (const [k, v] of Object.entries(f.store)) store[k] = (store[k] ?? 0) + v;
  }
  sum.resumable = () => resumable as ResumableFigures;
  sum.store = () => store;
  return sum;
}

export interface ProcessStats {
  rssBytes: number;
  threads: number;
  openFiles: number;
}

export function processStats(): ProcessStats {
  const count = (dir: string) => {
    try {
      return readdirSync(dir).length;
    } catch {
      return -1;
    }
  };
  return { rssBytes: process.memoryUsage().rss, threads: count("/proc/self/task"), openFiles: count("/proc/self/fd") };
}

/** The JSON of GET /debug/stats. */
export function statsSnapshot(stats: ServerStats, engine: EngineStats) {
  const ops: Record<string, unknown> = {};
  for (const op of statOps) {
    const s = stats.ops[op];
    ops[op] = { count: s.count, errors: s.errors, bytes: s.bytes, latencyMs: { p50: s.latency.percentileMs(50), p99: s.latency.percentileMs(99) } };
  }
  return {
    uptimeSeconds: (Date.now() - stats.startedMs) / 1000,
    connections: { open: stats.connectionsOpen, total: stats.connectionsAccepted, refused: stats.connectionsRefused },
    protocolViolations: stats.protocolViolations,
    idleTimeouts: stats.idleTimeouts,
    connectionBugs: stats.connectionBugs,
    uncaughtErrors: stats.uncaughtErrors,
    zeroCopy: { downloads: stats.zeroCopyDownloads, uploads: stats.zeroCopyUploads, fallbacks: stats.zeroCopyFallbacks },
    security: {
      refusedPerIp: stats.connectionsRefusedPerIp,
      refusedBlocked: stats.connectionsRefusedBlocked,
      authFailures: stats.authFailures,
      addressesBlocked: stats.authBlocks,
      tlsHandshakeFailures: stats.tlsHandshakeFailures,
      tokensRevoked: stats.tokensRevoked,
      authTimeouts: stats.authTimeouts,
      frameTimeouts: stats.frameTimeouts,
      unauthenticatedEvicted: stats.unauthenticatedEvicted,
      symlinksRefused: stats.symlinksRefused,
    },
    resumableUploads: stats.resumable(),
    store: stats.store(),
    exchanges: ops,
    engine,
    process: processStats(),
  };
}
