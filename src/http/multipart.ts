// S3 multipart uploads for any store (CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
// AbortMultipartUpload, ListParts, ListMultipartUploads). Parts are files in a directory of the
// gateway's own (multipartDir), one directory per upload: the file system is the table, so every
// event loop of a server sees every upload (a client sends its parts over several connections,
// which the kernel spreads over the loops). Complete streams the parts, in order, into the store as
// one ordinary upload (hashed on the way: SHA-256 and MD5, atomic commit) and then removes them.
//
//   <multipartDir>/<uploadId>/upload.json           {bucket, key, initiated}
//   <multipartDir>/<uploadId>/<n, 5 digits>.<md5>   a part, committed (renamed) once whole
//   <multipartDir>/<uploadId>/.<n>.<random>.tmp     a part arriving
//
// Bounds (config): uploads at once (multipartUploadsMax), parts per upload (S3's 10,000), each part
// and the whole object at most uploadBytesMax, every part but the last at least
// multipartPartBytesMin (S3's 5 MiB); an upload untouched for multipartTtlMs is removed by the
// sweep that each CreateMultipartUpload runs.
import { randomBytes } from "node:crypto";
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { UploadSink } from "../storage/store";
import type { StoreKey } from "../storage/keys";

/** S3's own limit on part numbers. */
export const PARTS_MAX = 10_000;
const ID_PATTERN = /^[0-9a-f]{32}$/;
/** multipartDir's directory of spooled bodies of unknown length (not an upload id). */
const SPOOL_DIR = "spool";

export interface MultipartUpload {
  id: string;
  bucket: string;
  key: string;
  initiated: Date;
}

export interface Part {
  number: number;
  /** The part's ETag, unquoted: its MD5 in hex here, the bucket's own on the S3 store. */
  etag: string;
  size: number;
  modified: Date;
}

/** A part kept by this gateway: a file of its own. */
interface LocalPart extends Part {
  path: string;
}

/** A part's body on its way: pushed, then committed (its ETag) or aborted. */
export interface PartSink extends UploadSink {
  /** Every byte pushed: the part's ETag (unquoted) and size once kept; throws BadPartDigest on a wrong Content-MD5 or signed SHA-256, MultipartError on the store's refusal. */
  commit(expectedMd5Base64: string | undefined): Promise<{ etag: string; size: number }>;
  abort(): Promise<void>;
}

/** A refusal of the store that holds the parts (the S3 store's bucket): its S3 status and code. */
export class MultipartError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Where S3 multipart uploads are kept until CompleteMultipartUpload: in the gateway's own
 * directory (MultipartUploads, the file store's), or as the S3 store's bucket's own multipart
 * uploads (s3-multipart.ts: every gateway on the bucket sees every upload, none holds state).
 * `key` is the object's store key; `name` the client's key; `space` the bucket's key space.
 */
export interface MultipartStore {
  readonly uploadsMax: number;
  /** A new upload's id, or null past uploadsMax. */
  create(bucket: string, name: string, key: StoreKey): Promise<string | null>;
  /** The upload `id` of that object, or null (no such upload, or another object's). */
  get(id: string, bucket: string, name: string, key: StoreKey): Promise<MultipartUpload | null>;
  part(id: string, n: number, key: StoreKey, owner: PartOwner, expectedSha256: Uint8Array | null): PartSink;
  /** The upload's parts kept so far, by number. */
  parts(id: string, key: StoreKey): Promise<Part[]>;
  /** The uploads in progress of a bucket, in key order. */
  list(bucket: string, space: string): Promise<MultipartUpload[]>;
  /** Aborts an upload: its parts go. */
  remove(id: string, key: StoreKey): Promise<void>;
  /**
   * Joins `chosen` (checked by the caller: order, ETags, sizes) into the object and ends the
   * upload: the object's ETag, quoted. `stream` stores `size` bytes that `next` reads as one
   * upload of the object (with its MD5) and gives its ETag: the gateway's own parts go through it.
   */
  complete(id: string, key: StoreKey, chosen: Part[], total: number, stream: (size: number, next: (into: Uint8Array) => Promise<number>) => Promise<string>): Promise<string>;
  /** A writer for a body of unknown length, spooled on this gateway's disk (see MultipartUploads.spool). */
  spool(owner: PartOwner): PartWriter;
}

export class MultipartUploads implements MultipartStore {
  constructor(
    readonly root: string,
    readonly uploadsMax: number,
    readonly ttlMs: number,
    private readonly fsync: boolean,
  ) {}

  /** A new upload's id, or null past multipartUploadsMax (after removing expired ones). */
  async create(bucket: string, key: string, _storeKey?: StoreKey, nowMs = Date.now()): Promise<string | null> {
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    const ids = await this.ids();
    if (ids.length >= this.uploadsMax) {
      await this.sweep(nowMs);
      if ((await this.ids()).length >= this.uploadsMax) return null;
    } else {
      void this.sweep(nowMs).catch(() => {});
    }
    const id = randomBytes(16).toString("hex");
    await mkdir(join(this.root, id), { mode: 0o700 });
    await writeFile(join(this.root, id, "upload.json"), JSON.stringify({ bucket, key, initiated: new Date(nowMs).toISOString() }), { mode: 0o600 });
    return id;
  }

  /** The upload `id` of `bucket`/`name`, or null (no such upload, or another key's). */
  async get(id: string, bucket: string, name: string): Promise<MultipartUpload | null> {
    const upload = await this.read(id);
    return upload !== null && upload.bucket === bucket && upload.key === name ? upload : null;
  }

  /** Every upload in progress of `bucket`, in key order then by initiation. */
  async list(bucket: string, _space = ""): Promise<MultipartUpload[]> {
    const out: MultipartUpload[] = [];
    for (const id of await this.ids()) {
      const upload = await this.read(id);
      if (upload !== null && upload.bucket === bucket) out.push(upload);
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.initiated.getTime() - b.initiated.getTime()));
  }

  /** The committed parts of an upload, by number. */
  async parts(id: string): Promise<LocalPart[]> {
    const out: LocalPart[] = [];
    for (const name of await readdir(join(this.root, id)).catch(() => [] as string[])) {
      const m = /^(\d{5})\.([0-9a-f]{32})$/.exec(name);
      if (m === null) continue;
      const path = join(this.root, id, name);
      const st = await stat(path).catch(() => null);
      if (st !== null) out.push({ number: Number(m[1]), etag: m[2]!, size: st.size, modified: st.mtime, path });
    }
    return out.sort((a, b) => a.number - b.number);
  }

  /** A writer for part `n` of upload `id`: its body is pushed, then commit() keeps it under its number. */
  part(id: string, n: number, _key: StoreKey, owner: PartOwner, expectedSha256: Uint8Array | null = null): PartWriter {
    return new PartWriter(join(this.root, id), n, this.fsync, owner, expectedSha256);
  }

  /** Streams the chosen parts' files, in order, into the object (through `stream`), then removes the upload. */
  async complete(id: string, _key: StoreKey, chosen: Part[], total: number, stream: (size: number, next: (into: Uint8Array) => Promise<number>) => Promise<string>): Promise<string> {
    const files = chosen as LocalPart[];
    let index = 0;
    let handle: FileHandle | null = null;
    let etag: string;
    try {
      etag = await stream(total, async (into) => {
        for (;;) {
          handle ??= await open(files[index]!.path, "r");
          const { bytesRead } = await handle.read(into, 0, into.length);
          if (bytesRead > 0) return bytesRead;
          await handle.close();
          handle = null;
          if (++index === files.length) return 0;
        }
      });
    } finally {
      await (handle as FileHandle | null)?.close().catch(() => {});
    }
    await this.remove(id);
    return etag;
  }

  /**
   * A writer for a body of unknown length (Transfer-Encoding: chunked without
   * x-amz-decoded-content-length) on its way to the store: spooled to a file of
   * <multipartDir>/spool, then streamed into the store with its size known. finish() gives the
   * file; its caller removes it. What a crash leaves there goes with the sweep's ttl.
   */
  spool(owner: PartOwner, expectedSha256: Uint8Array | null = null): PartWriter {
    const dir = join(this.root, SPOOL_DIR);
    return new PartWriter(dir, 0, false, owner, expectedSha256, mkdir(dir, { recursive: true, mode: 0o700 }));
  }

  /** Removes an upload and its parts (Abort, and after Complete). */
  async remove(id: string): Promise<void> {
    if (!ID_PATTERN.test(id)) return;
    await rm(join(this.root, id), { recursive: true, force: true });
  }

  /** Removes uploads untouched for ttlMs (and spooled bodies as old): how many uploads. */
  async sweep(nowMs = Date.now()): Promise<number> {
    let removed = 0;
    const spool = join(this.root, SPOOL_DIR);
    for (const name of await readdir(spool).catch(() => [] as string[])) {
      const st = await stat(join(spool, name)).catch(() => null);
      if (st !== null && nowMs - st.mtimeMs > this.ttlMs) await unlink(join(spool, name)).catch(() => {});
    }
    for (const id of await this.ids()) {
      const st = await stat(join(this.root, id)).catch(() => null);
      if (st !== null && nowMs - st.mtimeMs > this.ttlMs) {
        await this.remove(id);
        removed++;
      }
    }
    return removed;
  }

  private async ids(): Promise<string[]> {
    return (await readdir(this.root).catch(() => [] as string[])).filter((name) => ID_PATTERN.test(name));
  }

  private async read(id: string): Promise<MultipartUpload | null> {
    if (!ID_PATTERN.test(id)) return null;
    try {
      const o = JSON.parse(await readFile(join(this.root, id, "upload.json"), "utf8")) as { bucket: string; key: string; initiated: string };
      return { id, bucket: o.bucket, key: o.key, initiated: new Date(o.initiated) };
    } catch {
      return null;
    }
  }
}

export interface PartOwner {
  /** Bytes were written: backlogBytes shrank. */
  progressed(): void;
}

/**
 * One part's body on its way to its file: written in order, one write at a time, its MD5 computed
 * as it is pushed. end(expectedMd5) commits it (fsync when the server's commits do, then a rename
 * over any earlier part of that number); abort() removes what was written.
 */
export class PartWriter implements PartSink {
  backlogBytes = 0;
  private readonly queue: Uint8Array[] = [];
  private readonly md5 = new Bun.CryptoHasher("md5");
  private readonly sha256: Bun.CryptoHasher | null;
  private handle: Promise<FileHandle>;
  private writing: Promise<void> | null = null;
  private position = 0;
  private failure: Error | null = null;
  private aborted = false;
  private readonly tmp: string;

  constructor(
    private readonly dir: string,
    private readonly n: number,
    private readonly fsync: boolean,
    private readonly owner: PartOwner,
    /** The SHA-256 the part must have (a signed payload), or null. */
    private readonly expectedSha256: Uint8Array | null = null,
    /** What must happen before the file is created (its directory made). */
    before: Promise<unknown> = Promise.resolve(),
  ) {
    this.sha256 = expectedSha256 === null ? null : new Bun.CryptoHasher("sha256");
    this.tmp = join(dir, `.${n}.${randomBytes(6).toString("hex")}.tmp`);
    this.handle = before.then(() => open(this.tmp, "wx", 0o600));
    this.handle.catch((e) => (this.failure = e as Error));
  }

  push(chunk: Uint8Array): void {
    if (this.aborted || this.failure !== null) return;
    this.md5.update(chunk);
    this.sha256?.update(chunk);
    this.queue.push(chunk);
    this.backlogBytes += chunk.length;
    if (this.writing === null) this.writing = this.drain();
  }

  /** Unused (UploadSink's commit): parts end with commit(). */
  end(): void {}

  /** Every byte pushed: the part's MD5 (hex, its ETag) once its file is under its number; throws on failure or a wrong Content-MD5. */
  async commit(expectedMd5Base64: string | undefined): Promise<{ etag: string; size: number }> {
    if (this.writing !== null) await this.writing;
    const handle = await this.handle;
    if (this.failure !== null) throw this.failure;
    const digest = this.md5.digest() as Buffer;
    if (expectedMd5Base64 !== undefined && digest.toString("base64") !== expectedMd5Base64) {
      await this.abort();
      throw new BadPartDigest(false);
    }
    if (this.sha256 !== null && !(this.sha256.digest() as Buffer).equals(this.expectedSha256!)) {
      await this.abort();
      throw new BadPartDigest(true);
    }
    if (this.fsync) await handle.sync();
    await handle.close();
    const md5 = digest.toString("hex");
    const number = String(this.n).padStart(5, "0");
    for (const name of await readdir(this.dir)) {
      if (name.startsWith(`${number}.`) && name !== `${number}.${md5}`) await unlink(join(this.dir, name)).catch(() => {});
    }
    await rename(this.tmp, join(this.dir, `${number}.${md5}`));
    return { etag: md5, size: this.position };
  }

  /**
   * A spooled body (MultipartUploads.spool) whole: its file, size and MD5 (base64); the caller
   * removes the file. Throws BadPartDigest when a signed SHA-256 was given and does not hold.
   */
  async finish(): Promise<{ path: string; size: number; md5: string }> {
    if (this.writing !== null) await this.writing;
    const handle = await this.handle;
    if (this.failure !== null) throw this.failure;
    await handle.close();
    if (this.sha256 !== null && !(this.sha256.digest() as Buffer).equals(this.expectedSha256!)) {
      await unlink(this.tmp).catch(() => {});
      throw new BadPartDigest(true);
    }
    return { path: this.tmp, size: this.position, md5: (this.md5.digest() as Buffer).toString("base64") };
  }

  async abort(): Promise<void> {
    if (this.aborted) return;
    this.aborted = true;
    this.queue.length = 0;
    if (this.writing !== null) await this.writing.catch(() => {});
    const handle = await this.handle.catch(() => null);
    await handle?.close().catch(() => {});
    await unlink(this.tmp).catch(() => {});
  }

  private async drain(): Promise<void> {
    try {
      const handle = await this.handle;
      while (this.queue.length > 0 && !this.aborted) {
        const chunk = this.queue.shift()!;
        let done = 0;
        while (done < chunk.length) {
          const { bytesWritten } = await handle.write(chunk, done, chunk.length - done, this.position);
          done += bytesWritten;
          this.position += bytesWritten;
        }
        this.backlogBytes -= chunk.length;
        this.owner.progressed();
      }
    } catch (e) {
      this.failure = e as Error;
      this.queue.length = 0;
      this.backlogBytes = 0;
      this.owner.progressed();
    } finally {
      this.writing = null;
    }
  }
}

export class BadPartDigest extends Error {
  /** sha256: the signed payload's SHA-256 failed, else the Content-MD5. */
  constructor(readonly sha256: boolean) {
    super(sha256 ? "The provided 'x-amz-content-sha256' does not match what was computed." : "The Content-MD5 you specified did not match what we received.");
  }
}
