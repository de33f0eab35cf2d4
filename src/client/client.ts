// The fsgw client library.
//
//   const client = connect({ host: "127.0.0.1", port: 9999 });
//   await client.upload("report.pdf", "/tmp/report.pdf");      // bytes, a file path, or a stream
//   const bytes = await client.download("report.pdf");          // or a file path / writable sink
//   await client.exist("report.pdf");                          // { size, type }
//   await client.delete("report.pdf");
//   client.close();
//
// A small pool of connections (`poolSize`) lets concurrent calls run side by side; each connection
// carries one exchange at a time, exactly per docs/PROTOCOL.md, so this client works against
// fsgw and against any server that speaks the spec. Files are streamed from and to disk: nothing
// large is held in memory. A server's error text becomes a ServerError; a dropped connection, a
// protocol violation or no progress for `timeoutMs` rejects the call (never a hang) and the
// connection is discarded.
import { mkdtemp, open, rename, rm, stat, unlink, type FileHandle } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import type { Writable, Readable } from "node:stream";
import type { WireName } from "../protocol/codec";
import { benchExchange, deleteExchange, downloadExchange, existExchange, listExchange, resumableUploadExchange, ServerError, uploadExchange, type ByteRange, type ExistResult, type ListedPage, type ResumableState } from "./exchanges";
import { ConnectionClosedError, WireConn, type ClientTls } from "./wire-conn";
import { SHUTDOWN_TEXT } from "../protocol/message";

export { DigestMismatchError, ServerError } from "./exchanges";
export { SHUTDOWN_TEXT } from "../protocol/message";
export { ConnectionClosedError, TlsError, type ClientTls } from "./wire-conn";
export { ProtocolError } from "../protocol/message";
export type { ByteRange, ExistResult, ListedEntry, ListedPage } from "./exchanges";

/** No progress for the configured time: the call failed and its connection was discarded. */
export class TimeoutError extends Error {}

/** The server could not be reached, or the connection broke mid-call. */
export class ConnectionError extends Error {}

export interface ClientOptions {
  host?: string;
  port?: number;
  /** Connections opened at most; calls beyond them wait their turn. */
  poolSize?: number;
  /** A call that makes no progress (no byte in or out) for this long fails. */
  timeoutMs?: number;
  wire?: WireName;
  /** Speak TLS to the server (PEM texts: the CA that signs its certificate; a client certificate). */
  tls?: ClientTls;
  /** An access token, presented on every connection before its first call (servers with auth "token"). */
  token?: string;
}

/** Progress of a transfer: bytes so far and in all. */
export type ProgressFn = (done: number, total: number) => void;

export type UploadSource = Uint8Array | string | ReadableStream<Uint8Array> | Readable | AsyncIterable<Uint8Array>;
export type DownloadSink = string | WritableStream<Uint8Array> | Writable;

export interface TransferOptions {
  onProgress?: ProgressFn;
  /** Uploads of files: progress of hashing the file, which comes before the transfer (last call: done = total). */
  onHashProgress?: ProgressFn;
  /** Downloads only: `length` bytes from `offset` (length 0: to the end), clamped at the end of the file. */
  range?: ByteRange;
  /** For stream sources: the body size, which the protocol needs before the body. Without it the
   *  stream is first spooled to a temporary file to learn its size (memory stays bounded). */
  size?: number;
  /**
   * Uploads: the body's SHA-256, which the server checks before it stores anything (mismatch: a
   * ServerError "digest mismatch"). Default: computed for bytes and files (a file is read once to
   * hash it, then again to send it) and for spooled streams; a stream with a `size` is sent without
   * one unless given here (64 hex digits). false: send none.
   */
  digest?: string | false;
  /** Downloads: check the body against the digest the server recorded (default true; not for ranges). */
  verify?: boolean;
  /**
   * Uploads of bytes and files: resumable (default: when larger than 1 MiB; a smaller body costs
   * little to send again, and the server stores it in one operation). When the connection breaks
   * mid-upload, the client reconnects and sends only what the server does not have yet, up to
   * `retries` times (default 5) with a growing pause (0.1 s, 0.2 s, ... at most 2 s). A stream is
   * sent once.
   */
  resumable?: boolean;
  retries?: number;
  /** Called when an upload resumes: how many bytes the server already had. */
  onResume?: (offset: number, attempt: number) => void;
  /**
   * Called when the server shut down in the middle of a resumable upload (it kept nothing): the
   * client then waits up to `timeoutMs` for a server to listen again and sends the upload anew.
   */
  onServerShutdown?: () => void;
}

const STREAM_CHUNK_BYTES = 256 * 1024;
/** How often a client whose server shut down mid-upload tries to reach it again. */
const SERVER_RETURN_POLL_MS = 250;
/** Bodies larger than this are uploaded resumably by default. */
const RESUMABLE_MIN_BYTES = 1024 * 1024;

export function connect(options: ClientOptions = {}): FsgwClient {
  return new FsgwClient(options);
}

export class FsgwClient {
  readonly host: string;
  readonly port: number;
  private readonly poolSize: number;
  private readonly timeoutMs: number;
  private readonly wire: WireName;
  private readonly tls: ClientTls | undefined;
  private readonly token: string | undefined;
  private readonly idle: WireConn[] = [];
  private open = 0;
  private readonly waiters: ((conn: WireConn | null) => void)[] = [];
  private closed = false;

  constructor(options: ClientOptions) {
    this.host = options.host ?? "127.0.0.1";
    this.port = options.port ?? 9999;
    this.poolSize = Math.max(1, options.poolSize ?? 4);
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.wire = options.wire ?? "protobuf";
    this.tls = options.tls;
    this.token = options.token;
  }

  /** Uploads bytes, a file (by path), or a stream under `key`. */
  async upload(key: string, source: UploadSource, options: TransferOptions = {}): Promise<void> {
    if (source instanceof Uint8Array) {
      const body = source;
      const digest = options.digest === false ? undefined : (options.digest ?? new Bun.CryptoHasher("sha256").update(body).digest("hex"));
      if (options.resumable ?? body.length > RESUMABLE_MIN_BYTES) {
        return this.uploadResumable(key, body.length, async function* (offset) {
          if (offset < body.length) yield body.subarray(offset);
        }, digest, options);
      }
      return this.run(key, async (conn) => {
        await uploadExchange(
          conn,
          key,
          body.length,
          async (c) => {
            await c.write(body);
            options.onProgress?.(body.length, body.length);
          },
          digest,
        );
      });
    }
    if (typeof source === "string") return this.uploadFile(key, source, options);
    if (options.size !== undefined) return this.uploadStream(key, toAsyncIterable(source), options.size, options);
    // Unknown length: spool to a temporary file first, so memory stays bounded.
    const dir = await mkdtemp(join(tmpdir(), "fsgw-spool-"));
    const spool = join(dir, "body");
    try {
      const out = await open(spool, "w");
      try {
        for await (const chunk of toAsyncIterable(source)) await out.write(chunk);
      } finally {
        await out.close();
      }
      await this.uploadFile(key, spool, options);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  private async uploadFile(key: string, path: string, options: TransferOptions): Promise<void> {
    const size = (await stat(path)).size;
    const file = await open(path, "r");
    try {
      let digest = options.digest;
      if (digest === undefined) {
        // The digest goes in the request, before the body: one pass over the file to hash it.
        const hasher = new Bun.CryptoHasher("sha256");
        let hashed = 0;
        for await (const chunk of readChunks(file, size)) {
          hasher.update(chunk);
          hashed += chunk.length;
          options.onHashProgress?.(hashed, size);
        }
        if (hashed !== size) options.onHashProgress?.(size, size);
        digest = hasher.digest("hex");
      }
      if (options.resumable ?? size > RESUMABLE_MIN_BYTES) {
        await this.uploadResumable(key, size, (offset) => readChunks(file, size, offset), digest === false ? undefined : digest, options);
      } else {
        await this.uploadStream(key, readChunks(file, size), size, { ...options, digest });
      }
    } finally {
      await file.close();
    }
  }

  /**
   * A resumable upload: attempts until the server has the whole body, each on a connection of its
   * own; a broken connection (or no progress for timeoutMs) is followed by RESUME after a pause,
   * up to `retries` times. A server that will not keep the upload resumable is no failure: one
   * that answers START without an id (a bound reached, or a server without resumable uploads)
   * gets an ordinary upload, and so does one that refuses with "resumable upload limit reached"
   * (earlier fsgw servers); a RESUME answered "no such upload" (the server did not keep what it had)
   * starts the upload again from its first byte. Any other refusal (a ServerError) ends it at once.
   */
  private async uploadResumable(key: string, size: number, bodyFrom: (offset: number) => AsyncIterable<Uint8Array>, digest: string | undefined, options: TransferOptions): Promise<void> {
    const state: ResumableState = { uploadId: null };
    const retries = options.retries ?? 5;
    /** While the server is away after shutting down mid-upload: until when its return is awaited. */
    let awaitServerUntil = 0;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.run(key, (conn) =>
          resumableUploadExchange(
            conn,
            key,
            size,
            state,
            async (c, offset) => {
              awaitServerUntil = 0; // a server is back (or never went)
              if (attempt > 0) options.onResume?.(offset, attempt);
              let sent = offset;
              for await (const chunk of bodyFrom(offset)) {
                if (sent + chunk.length > size) throw new Error(`upload source is longer than its size ${size}`);
                await c.write(chunk);
                sent += chunk.length;
                options.onProgress?.(sent, size);
              }
              if (sent !== size) throw new Error(`upload source ended after ${sent} of ${size} bytes`);
            },
            digest,
          ),
        );
        return;
      } catch (e) {
        if (e instanceof ServerError && e.op === "upload" && e.text.startsWith("resumable upload limit reached")) {
          return this.uploadStream(key, bodyFrom(0), size, { ...options, digest });
        }
        if (e instanceof ServerError && e.op === "resume" && e.text === "no such upload") {
          // The connection may have broken after the server committed the body but before its END
          // arrived: then the upload is gone from the server's table, and the key holds the body.
          if (digest !== undefined) {
            const now = await this.exist(key).catch(() => null);
            if (now?.digest === digest && now.size === size) return;
          }
          // Else the server did not keep it (expired, or over a bound on kept bytes): start again.
          if (attempt >= retries) throw e;
          state.uploadId = null;
          continue;
        }
        if (e instanceof ServerError && e.text === SHUTDOWN_TEXT) {
          // The server kept nothing of it: wait for one to listen again, then start over.
          options.onServerShutdown?.();
          awaitServerUntil = Date.now() + this.timeoutMs;
          state.uploadId = null;
          attempt = -1;
          continue;
        }
        if (e instanceof ConnectionError && Date.now() < awaitServerUntil) {
          await Bun.sleep(SERVER_RETURN_POLL_MS);
          attempt = -1;
          continue;
        }
        if (awaitServerUntil !== 0 && e instanceof ConnectionError) {
          throw new ConnectionError(`upload interrupted by server shutdown, and no server listened again within ${this.timeoutMs} ms (${e.message})`);
        }
        const broken = e instanceof ConnectionError || e instanceof TimeoutError;
        // No id: the server keeps nothing (one without resumable uploads), so there is nothing to resume.
        if (!broken || !state.uploadId || attempt >= retries) throw e;
        await Bun.sleep(Math.min(2000, 100 * 2 ** attempt));
      }
    }
  }

  private uploadStream(key: string, chunks: AsyncIterable<Uint8Array>, size: number, options: TransferOptions): Promise<void> {
    const digest = typeof options.digest === "string" ? options.digest : undefined;
    return this.run(key, async (conn) => {
      await uploadExchange(conn, key, size, async (c) => {
        let sent = 0;
        for await (const chunk of chunks) {
          if (sent + chunk.length > size) throw new Error(`upload source is longer than its size ${size}`);
          await c.write(chunk);
          sent += chunk.length;
          options.onProgress?.(sent, size);
        }
        if (sent !== size) throw new Error(`upload source ended after ${sent} of ${size} bytes`);
      }, digest);
    });
  }

  /** Downloads `key`: into a file (by path; written atomically), a writable stream, or returned as bytes. */
  download(key: string): Promise<Uint8Array>;
  download(key: string, sink: DownloadSink, options?: TransferOptions): Promise<number>;
  async download(key: string, sink?: DownloadSink, options: TransferOptions = {}): Promise<Uint8Array | number> {
    if (sink === undefined) {
      const parts: Uint8Array[] = [];
      await this.downloadTo(key, (part) => void parts.push(part.slice()), options);
      return Buffer.concat(parts);
    }
    if (typeof sink === "string") return this.downloadFile(key, sink, options);
    if (isWebWritable(sink)) {
      const writer = sink.getWriter();
      try {
        return await this.downloadTo(key, (part) => writer.write(part.slice()), options);
      } finally {
        writer.releaseLock();
      }
    }
    return this.downloadTo(key, (part) => writeNode(sink, part.slice()), options);
  }

  /**
   * Writes to a temporary file beside `path`, renamed into place only once the body is complete.
   * The temporary file is created before anything is asked of the server, so a path that cannot be
   * written fails at once (with the fs error's code), not mid-transfer.
   */
  private async downloadFile(key: string, path: string, options: TransferOptions): Promise<number> {
    const tmp = join(dirname(path), `.${basename(path)}.fsgw-part-${process.pid}-${Date.now()}`);
    const out: FileHandle = await open(tmp, "wx");
    let closed = false;
    try {
      let position = 0;
      const n = await this.downloadTo(
        key,
        async (part) => {
          let done = 0;
          while (done < part.length) done += (await out.write(part, done, part.length - done, position + done)).bytesWritten;
          position += part.length;
        },
        options,
      );
      closed = true;
      await out.close();
      await rename(tmp, path);
      return n;
    } catch (e) {
      if (!closed) await out.close().catch(() => {});
      await unlink(tmp).catch(() => {});
      throw e;
    }
  }

  private downloadTo(key: string, sink: (part: Uint8Array) => void | Promise<void>, options: TransferOptions): Promise<number> {
    return this.run(key, async (conn) => {
      let got = 0;
      let total = 0;
      const onSize = (n: number) => {
        total = n;
        options.onProgress?.(0, n);
      };
      return downloadExchange(
        conn,
        key,
        async (part) => {
          got += part.length;
          options.onProgress?.(got, total);
          await sink(part);
        },
        onSize,
        options.range,
        options.verify !== false,
      );
    });
  }

  exist(key: string): Promise<ExistResult> {
    return this.run(key, (conn) => existExchange(conn, key));
  }

  delete(key: string): Promise<void> {
    return this.run(key, (conn) => deleteExchange(conn, key));
  }

  /**
   * The keys under `prefix`, in byte order, page after page (an async iterator; each page at most
   * `pageKeys` entries and common prefixes, 1..1000). With `delimiter`, keys holding it after the
   * prefix come as their common prefix instead (S3's ListObjectsV2). `startAfter`: a key to begin
   * after. A key present throughout the listing appears exactly once, whatever changes meanwhile.
   */
  async *list(options: { prefix?: string; delimiter?: string; startAfter?: string; pageKeys?: number } = {}): AsyncGenerator<ListedPage> {
    const prefix = options.prefix ?? "";
    let after = options.startAfter === undefined || options.startAfter === "" ? "" : `K${options.startAfter}`;
    for (;;) {
      const page = await this.run(prefix, (conn) => listExchange(conn, prefix, options.delimiter ?? "", after, options.pageKeys ?? 0));
      yield page;
      if (page.next === "") return;
      after = page.next;
    }
  }

  /** A protocol round trip with no I/O on the server. */
  bench(key = "bench"): Promise<void> {
    return this.run(key, (conn) => benchExchange(conn, key));
  }

  /** Closes idle connections now and the busy ones as their calls finish. */
  close(): void {
    this.closed = true;
    for (const conn of this.idle.splice(0)) conn.close();
    for (const w of this.waiters.splice(0)) w(null);
  }

  // ---- the pool ----

  /**
   * Runs one exchange on a pooled connection, failing it if no byte moves for timeoutMs. A
   * connection comes back to the pool only after a clean exchange or a server error text; after
   * anything else its state is unknown and it is discarded.
   */
  private async run<T>(key: string, exchange: (conn: WireConn) => Promise<T>): Promise<T> {
    const conn = await this.acquire();
    // Checked four times per timeoutMs: a call fails between 1 and 1.25 timeoutMs after its last byte.
    let seen = conn.bytesSeen;
    let lastProgressMs = Date.now();
    let timedOut = false;
    const timer = setInterval(
      () => {
        if (conn.bytesSeen !== seen) {
          seen = conn.bytesSeen;
          lastProgressMs = Date.now();
        } else if (Date.now() - lastProgressMs >= this.timeoutMs) {
          timedOut = true;
          conn.destroy();
        }
      },
      Math.max(10, this.timeoutMs / 4),
    );
    try {
      const result = await exchange(conn);
      this.release(conn);
      return result;
    } catch (e) {
      // A server that answered and closed (shutting down) leaves nothing to reuse.
      if (e instanceof ServerError && !conn.isClosed) this.release(conn);
      else this.discard(conn);
      if (timedOut) throw new TimeoutError(`no progress for ${this.timeoutMs} ms on ${JSON.stringify(key)} (${this.host}:${this.port})`);
      if (e instanceof ConnectionClosedError) throw new ConnectionError(`${this.host}:${this.port}: ${e.message}`);
      throw e;
    } finally {
      clearInterval(timer);
    }
  }

  private async acquire(): Promise<WireConn> {
    if (this.closed) throw new ConnectionError("client closed");
    const idle = this.idle.pop();
    if (idle !== undefined) return idle;
    if (this.open < this.poolSize) {
      this.open++;
      try {
        return await WireConn.connect({ host: this.host, port: this.port, wire: this.wire, tls: this.tls, token: this.token });
      } catch (e) {
        this.open--;
        this.wakeNext();
        if (e instanceof ServerError) throw e; // the token was refused: the server's word, not a connection problem
        throw new ConnectionError(`cannot connect to ${this.host}:${this.port}: ${(e as Error).message}`);
      }
    }
    const conn = await new Promise<WireConn | null>((resolve) => this.waiters.push(resolve));
    if (conn === null) return this.acquire(); // a slot was freed (or the client closed)
    return conn;
  }

  private release(conn: WireConn): void {
    if (this.closed || conn.isClosed) return this.discard(conn);
    const waiter = this.waiters.shift();
    if (waiter !== undefined) waiter(conn);
    else this.idle.push(conn);
  }

  private discard(conn: WireConn): void {
    conn.destroy();
    this.open--;
    this.wakeNext();
  }

  /** A connection slot opened up: let the next waiter open its own. */
  private wakeNext(): void {
    this.waiters.shift()?.(null);
  }
}

async function* readChunks(file: FileHandle, size: number, from = 0): AsyncIterable<Uint8Array> {
  let position = from;
  while (position < size) {
    const buffer = new Uint8Array(Math.min(STREAM_CHUNK_BYTES, size - position));
    const { bytesRead } = await file.read(buffer, 0, buffer.length, position);
    if (bytesRead === 0) throw new Error(`file shrank while uploading: ${position} of ${size} bytes read`);
    position += bytesRead;
    yield bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead);
  }
}

function toAsyncIterable(source: Exclude<UploadSource, Uint8Array | string>): AsyncIterable<Uint8Array> {
  if (Symbol.asyncIterator in source) return source as AsyncIterable<Uint8Array>;
  const reader = (source as ReadableStream<Uint8Array>).getReader();
  return {
    async *[Symbol.asyncIterator]() {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        yield value;
      }
    },
  };
}

function isWebWritable(sink: DownloadSink): sink is WritableStream<Uint8Array> {
  return typeof (sink as WritableStream).getWriter === "function";
}

/** Writes to a node Writable, waiting for 'drain' when it asks for backpressure. */
function writeNode(sink: Writable, part: Uint8Array): void | Promise<void> {
  if (sink.write(part)) return;
  return new Promise<void>((resolve, reject) => {
    const onDrain = () => {
      sink.off("error", onError);
      resolve();
    };
    const onError = (e: Error) => {
      sink.off("drain", onDrain);
      reject(e);
    };
    sink.once("drain", onDrain);
    sink.once("error", onError);
  });
}
