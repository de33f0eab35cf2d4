// The load generator: `connections` connections each take the next file number until `count`
// exchanges are done, on keys `<prefix><i>` with in-memory bodies (like the Go original's client,
// so the client's disk is not measured). Reports what the Go client reported (total ms, ops/s) and
// more: MB/s, latency percentiles, errors by text, and the client's own CPU time.
import { benchExchange, deleteExchange, downloadExchange, existExchange, ServerError, uploadExchange } from "./exchanges";
import type { Socket } from "bun";
import { WireConn, type ClientTls } from "./wire-conn";
import { codecFor, type WireName } from "../protocol/codec";
import { FrameDecoder } from "../protocol/frame-decoder";
import { Msg, Op, ProtocolError, REPLY_FRAME_BYTES_MAX } from "../protocol/message";

export const loadOps = ["bench", "upload", "download", "exist", "delete"] as const;
export type LoadOp = (typeof loadOps)[number];

export interface LoadOptions {
  host: string;
  port: number;
  op: LoadOp;
  connections: number;
  count: number;
  /** Upload body size in bytes. */
  size: number;
  keyPrefix?: string;
  /**
   * Key numbers cycle over this many (`<prefix><n % keys>`), so a load can serve a prepared set of
   * files many times over on the same connections; absent, every exchange has a key of its own.
   */
  keys?: number;
  wire?: WireName;
  /**
   * Upload bodies are written in pieces of this many bytes, each write awaited before the next (the
   * Go original's client writes 4096 at a time); 0 writes the body in one piece.
   */
  writeChunk?: number;
  /** TLS and an access token for each connection (then every op runs on WireConn). */
  tls?: ClientTls;
  token?: string;
  /**
   * Run bench, exist and delete on WireConn too, not on the lean raw-socket loop: benchmarks that
   * compare plain with TLS or tokens use it, so that every variant is driven by the same client.
   */
  wireConnOnly?: boolean;
}

export interface LoadResult {
  op: LoadOp;
  connections: number;
  count: number;
  ok: number;
  errors: Record<string, number>;
  ms: number;
  opsPerSec: number;
  /** Body bytes per second in MiB (binary, as every fsgw figure); absent for ops without a body. */
  mibPerSec?: number;
  /** Percentiles of the exchanges that finished; absent when none succeeded. */
  latencyMs?: { p50: number; p90: number; p99: number; max: number };
  clientCpuMs: number;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const round = (x: number, digits = 3) => Number(x.toFixed(digits));

/** Deterministic filler for upload bodies; its content does not matter, only that it is not zeros. */
function bodyOf(size: number): Uint8Array {
  const body = new Uint8Array(size);
  for (let i = 0; i < size; i++) body[i] = (i * 31 + (i >>> 8)) & 0xff;
  return body;
}

/** One thread's share of a load: its raw numbers, merged by `summarize`. */
export interface LoadShard {
  ok: number;
  errors: Record<string, number>;
  bytes: number;
  /** Latency of every exchange, ms. */
  latencies: Float64Array;
}

/** Runs the whole load on this thread. */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const cpuBefore = process.cpuUsage();
  const t0 = performance.now();
  const shard = await runShard(options, 0);
  const ms = performance.now() - t0;
  return summarize(options, [shard], ms, process.cpuUsage(cpuBefore));
}

/**
 * Runs the load on `threads` worker threads (Bun Workers), each with its share of connections
 * and exchanges on its own range of keys, for machines where one thread cannot saturate the server.
 */
export async function runLoadThreaded(options: LoadOptions, threads: number): Promise<LoadResult> {
  if (threads <= 1) return runLoad(options);
  const shares = Array.from({ length: threads }, (_, t) => ({
    connections: Math.max(1, Math.floor(options.connections / threads) + (t < options.connections % threads ? 1 : 0)),
    count: Math.floor(options.count / threads) + (t < options.count % threads ? 1 : 0),
  }));
  const workers = shares.map(() => new Worker(new URL("./load-worker.ts", import.meta.url).href));
  const ready = workers.map((w) => new Promise<void>((resolve) => w.addEventListener("message", () => resolve(), { once: true })));
  await Promise.all(ready); // each worker says hello once its modules are loaded
  const cpuBefore = process.cpuUsage();
  const t0 = performance.now();
  let offset = 0;
  const results = workers.map((w, t) => {
    const share = shares[t]!;
    const keyOffset = offset;
    offset += share.count;
    return new Promise<LoadShard>((resolve, reject) => {
      w.addEventListener("message", (e: MessageEvent) => resolve(e.data as LoadShard), { once: true });
      w.addEventListener("error", (e) => reject(new Error(String((e as ErrorEvent).message))), { once: true });
      w.postMessage({ options: { ...options, ...share }, keyOffset });
    });
  });
  const shards = await Promise.all(results);
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpuBefore);
  for (const w of workers) w.terminate();
  return summarize(options, shards, ms, cpu);
}

function summarize(options: LoadOptions, shards: LoadShard[], ms: number, cpu: NodeJS.CpuUsage): LoadResult {
  const errors: Record<string, number> = {};
  let ok = 0;
  let bytes = 0;
  let n = 0;
  for (const s of shards) {
    ok += s.ok;
    bytes += s.bytes;
    n += s.latencies.length;
    for (const [text, count] of Object.entries(s.errors)) errors[text] = (errors[text] ?? 0) + count;
  }
  const sorted = new Float64Array(n);
  let at = 0;
  for (const s of shards) {
    sorted.set(s.latencies, at);
    at += s.latencies.length;
  }
  sorted.sort();
  return {
    op: options.op,
    connections: Math.min(options.connections, options.count),
    count: options.count,
    ok,
    errors,
    ms: round(ms, 1),
    opsPerSec: round((ok * 1000) / ms, 1),
    mibPerSec: options.op === "upload" || options.op === "download" ? round(bytes / 1024 ** 2 / (ms / 1000), 2) : undefined,
    latencyMs: ok === 0 ? undefined : { p50: round(percentile(sorted, 50)), p90: round(percentile(sorted, 90)), p99: round(percentile(sorted, 99)), max: round(percentile(sorted, 100)) },
    clientCpuMs: round((cpu.user + cpu.system) / 1000, 1),
  };
}

/** Runs `options.count` exchanges on keys `<prefix><keyOffset + i>` on this thread. */
export async function runShard(options: LoadOptions, keyOffset: number): Promise<LoadShard> {
  const shard = new ShardRun(options, keyOffset);
  // The lean raw-socket loop speaks neither TLS nor AUTH: with them every op runs on WireConn.
  const lean = !options.wireConnOnly && options.tls === undefined && options.token === undefined && (options.op === "bench" || options.op === "exist" || options.op === "delete");
  const worker = lean ? () => shard.roundTripWorker() : () => shard.exchangeWorker();
  await Promise.all(Array.from({ length: Math.min(options.connections, options.count) }, worker));
  return shard.result();
}

/** One thread's share of a run: its counters, and the connections (workers) that share them. */
class ShardRun {
  private readonly prefix: string;
  private readonly body: Uint8Array;
  private readonly latencies: Float64Array;
  private readonly errors: Record<string, number> = {};
  /** The next file number to take; exchanges finished; those that succeeded; body bytes moved. */
  private next = 0;
  private done = 0;
  private ok = 0;
  private bytes = 0;

  constructor(
    private readonly options: LoadOptions,
    private readonly keyOffset: number,
  ) {
    this.prefix = options.keyPrefix ?? "bench_mark_file_";
    this.body = options.op === "upload" ? bodyOf(options.size) : new Uint8Array(0);
    this.latencies = new Float64Array(options.count);
  }

  result(): LoadShard {
    return { ok: this.ok, errors: this.errors, bytes: this.bytes, latencies: this.latencies.slice(0, this.done) };
  }

  private note(text: string): void {
    this.errors[text] = (this.errors[text] ?? 0) + 1;
  }

  private nextKey(): string {
    const n = this.keyOffset + this.next++;
    return this.prefix + (this.options.keys !== undefined && this.options.keys > 0 ? n % this.options.keys : n);
  }

  /** Writes the upload body, in writeChunk pieces when asked (a slow or fragmenting client). */
  private readonly writeBody = async (c: WireConn): Promise<void> => {
    const body = this.body;
    const chunk = this.options.writeChunk ?? 0;
    if (!(chunk > 0 && chunk < body.length)) return c.write(body);
    for (let at = 0; at < body.length; at += chunk) await c.write(body.subarray(at, Math.min(body.length, at + chunk)));
  };

  private readonly countBytes = (part: Uint8Array): void => void (this.bytes += part.length);

  /** Any exchange, on a WireConn: one promise chain per exchange. */
  async exchangeWorker(): Promise<void> {
    const options = this.options;
    let conn: WireConn | null = null;
    while (this.next < options.count) {
      const key = this.nextKey();
      const started = performance.now();
      try {
        conn ??= await WireConn.connect({ host: options.host, port: options.port, wire: options.wire, tls: options.tls, token: options.token }).catch((e: Error) => {
          throw new Error(`cannot connect to ${options.host}:${options.port}: ${e.message}`);
        });
        await this.exchange(conn, key);
        this.ok++;
      } catch (e) {
        if (e instanceof ServerError) this.note(e.text);
        else {
          this.note((e as Error).message ?? String(e));
          conn?.destroy();
          conn = null; // the connection is unusable after anything but an error text
        }
      }
      this.latencies[this.done++] = performance.now() - started;
    }
    conn?.close();
  }

  private async exchange(conn: WireConn, key: string): Promise<void> {
    switch (this.options.op) {
      case "bench":
        return benchExchange(conn, key);
      case "upload":
        await uploadExchange(conn, key, this.body.length, this.writeBody);
        this.bytes += this.body.length;
        return;
      case "download":
        await downloadExchange(conn, key, this.countBytes);
        return;
      case "exist":
        await existExchange(conn, key);
        return;
      case "delete":
        return deleteExchange(conn, key);
    }
  }

  /**
   * bench, exist and delete are one request frame and one reply frame: a callback-driven loop on a
   * raw socket sends the next request from inside the reply's data callback (where Bun batches the
   * write), with no promise per exchange. This keeps the generator cheaper per exchange than the
   * server it drives, so the server, not the client, is what saturates.
   */
  roundTripWorker(): Promise<void> {
    const options = this.options;
    const codec = codecFor(options.wire ?? "protobuf");
    const requestOp = options.op === "bench" ? Op.BENCH_MARK : options.op === "exist" ? Op.EXIST : Op.DELETE;
    const replyOp = requestOp + 1;
    const okText = options.op === "bench" ? "" : Msg.SUCCESS;
    const decoder = new FrameDecoder(REPLY_FRAME_BYTES_MAX);
    let started = 0;
    let inFlight = false;
    return new Promise<void>((resolve) => {
      const sendNext = (socket: Socket<undefined>) => {
        if (this.next >= options.count) {
          socket.end();
          return;
        }
        const key = this.nextKey();
        started = performance.now();
        inFlight = true;
        socket.write(codec.encodeFrame({ operation: requestOp, key }));
      };
      const finished = (errorText: string | null) => {
        if (errorText === null) this.ok++;
        else this.note(errorText);
        this.latencies[this.done++] = performance.now() - started;
        inFlight = false;
      };
      let connectFailed = false;
      const cannotConnect = (e: Error) => {
        // Bun reports a failed connect both to connectError and to the returned promise: once.
        if (connectFailed) return;
        connectFailed = true;
        // The exchange this connection would have made fails the way the connect did.
        this.note(`cannot connect to ${options.host}:${options.port}: ${e.message}`);
        if (this.next < options.count) this.next++;
        resolve();
      };
      Bun.connect({
        hostname: options.host,
        port: options.port,
        socket: {
          open: (socket) => {
            socket.setNoDelay(true);
            sendNext(socket);
          },
          data: (socket, chunk) => {
            try {
              let offset = 0;
              while (offset < chunk.length) {
                offset += decoder.feed(chunk, offset);
                const frame = decoder.takeFrame();
                if (frame === null) continue;
                const reply = codec.decode(frame);
                if (reply.operation !== replyOp) throw new ProtocolError(`expected op ${replyOp}, got ${reply.operation}`);
                finished(reply.message === okText ? null : reply.message);
                sendNext(socket);
              }
            } catch (e) {
              if (inFlight) finished((e as Error).message);
              socket.end();
            }
          },
          close: () => {
            if (inFlight) finished("connection closed by peer");
            resolve();
          },
          error: (_socket, e) => {
            if (inFlight) finished(e.message);
          },
          connectError: (_socket, e) => cannotConnect(e),
        },
      }).catch(cannotConnect);
    });
  }
}
