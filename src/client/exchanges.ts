// The exchanges of docs/PROTOCOL.md (the Go original's five, AUTH and RESUME) from the client's side,
// one function each, on one WireConn. A server's error text becomes a ServerError; anything
// off-protocol a ProtocolError.
import { FileType, Msg, Op, ProtocolError, type WireMessage } from "../protocol/message";
import { ConnectionClosedError, type WireConn } from "./wire-conn";

/** The server answered with an error text (in Message) instead of going on. */
export class ServerError extends Error {
  constructor(
    readonly op: string,
    readonly key: string,
    readonly text: string,
  ) {
    super(`${op} ${JSON.stringify(key)}: ${text}`);
  }
}

function expectOp(msg: WireMessage, op: number, what: string): void {
  if (msg.operation !== op) throw new ProtocolError(`${what}: expected op ${op}, got op ${msg.operation} (${JSON.stringify(msg.message)})`);
}

export async function benchExchange(conn: WireConn, key: string): Promise<void> {
  await conn.sendFrame({ operation: Op.BENCH_MARK, key });
  const reply = await conn.readFrame();
  expectOp(reply, Op.BENCH_MARK_RSP, "bench");
  // A v1 bench reply carries no Message; a server with auth "token" refuses with one.
  if (reply.message !== "") throw new ServerError("bench", key, reply.message);
}

/** Presents an access token (the AUTH extension, op 11): "success", or a ServerError with the reason. */
export async function authExchange(conn: WireConn, token: string): Promise<void> {
  await conn.sendFrame({ operation: Op.AUTH, key: "", token });
  const reply = await conn.readFrame();
  expectOp(reply, Op.AUTH_RSP, "auth");
  if (reply.message !== Msg.SUCCESS) throw new ServerError("auth", "", reply.message);
}

/** A downloaded body's SHA-256 is not the one the server recorded: the bytes were damaged. */
export class DigestMismatchError extends Error {
  constructor(
    readonly key: string,
    readonly expected: string,
    readonly got: string,
  ) {
    super(`download ${JSON.stringify(key)}: digest mismatch: the bytes received hash to ${got}, the server recorded ${expected} (damaged on the way or on the server's disk)`);
  }
}

/**
 * Uploads `size` bytes that `writeBody` writes to the connection (after the server's START).
 * The server commits the file before it answers END; the client then sends its ACK. With `digest`
 * (the body's SHA-256, 64 hex digits; extension field Digest) the server stores the body only if
 * it hashes to it. Resolves with the digest the server recorded ("" from a server without digests).
 */
export async function uploadExchange(conn: WireConn, key: string, size: number, writeBody: (conn: WireConn) => Promise<void>, digest?: string): Promise<string> {
  await conn.sendFrame({ operation: Op.UPLOAD, key, size, digest });
  const start = await conn.readFrame();
  expectOp(start, Op.UPLOAD_RSP, "upload");
  if (start.message !== Msg.START) throw new ServerError("upload", key, start.message);
  await bodyOrWhyNot(conn, key, () => writeBody(conn));
  return uploadEnd(conn, key);
}

/**
 * Writes an upload's body. A server may end the upload while the body is on its way (shutting
 * down: SHUTDOWN_TEXT) and close: its answer is then read from what arrived before the close, so
 * the caller learns why instead of "connection closed".
 */
async function bodyOrWhyNot(conn: WireConn, key: string, writeBody: () => Promise<void>): Promise<void> {
  try {
    await writeBody();
  } catch (e) {
    if (!(e instanceof ConnectionClosedError)) throw e;
    const said = await conn.readFrame().catch(() => null);
    if (said !== null && said.operation === Op.UPLOAD && said.message !== Msg.END) throw new ServerError("upload", key, said.message);
    throw e;
  }
}

/** An upload's last step: the server's END (or its error text), then the ACK; the recorded digest. */
async function uploadEnd(conn: WireConn, key: string): Promise<string> {
  const end = await conn.readFrame();
  expectOp(end, Op.UPLOAD, "upload end");
  if (end.message !== Msg.END) throw new ServerError("upload", key, end.message);
  conn.deferFrame({ operation: Op.UPLOAD, key, message: Msg.ACK });
  return end.digest;
}

/** A resumable upload across connections: its id once the server gave one ("" from a server without resumable uploads). */
export interface ResumableState {
  uploadId: string | null;
}

/**
 * One attempt at a resumable upload (extension fields Resumable and UploadId, the RESUME exchange):
 * the first sends UPLOAD with Resumable and learns the upload's id from START; later ones send
 * RESUME with that id and learn from its START how much of the body the server already has.
 * `writeBody(conn, offset)` writes the body from `offset`. Resolves with the recorded digest.
 */
export async function resumableUploadExchange(
  conn: WireConn,
  key: string,
  size: number,
  state: ResumableState,
  writeBody: (conn: WireConn, offset: number) => Promise<void>,
  digest?: string,
): Promise<string> {
  let offset = 0;
  if (state.uploadId === null) {
    await conn.sendFrame({ operation: Op.UPLOAD, key, size, digest, resumable: true });
    const start = await conn.readFrame();
    expectOp(start, Op.UPLOAD_RSP, "upload");
    if (start.message !== Msg.START) throw new ServerError("upload", key, start.message);
    state.uploadId = start.uploadId;
  } else {
    await conn.sendFrame({ operation: Op.RESUME, key, uploadId: state.uploadId, digest });
    const start = await conn.readFrame();
    expectOp(start, Op.RESUME_RSP, "resume");
    if (start.message !== Msg.START) throw new ServerError("resume", key, start.message);
    if (!(start.offset >= 0 && start.offset <= size) || start.size !== size) throw new ProtocolError(`resume: offset ${start.offset} of ${start.size}, for an upload of ${size}`);
    offset = start.offset;
  }
  await bodyOrWhyNot(conn, key, () => writeBody(conn, offset));
  return uploadEnd(conn, key);
}

/** Part of a file: `length` bytes from `offset` (length 0: to the end). */
export interface ByteRange {
  offset: number;
  length: number;
}

/**
 * Downloads a file, or a range of it (the extension fields Offset and Length), handing its body to
 * `sink` piece by piece; returns the body's size (the range's, clamped at the end of the file).
 */
export async function downloadExchange(
  conn: WireConn,
  key: string,
  sink: (part: Uint8Array) => void | Promise<void>,
  onSize?: (size: number) => void,
  range?: ByteRange,
  /** Hash a whole-file body and compare it with the digest the server recorded (when it has one): DigestMismatchError. */
  verify = false,
): Promise<number> {
  await conn.sendFrame({ operation: Op.DOWNLOAD, key, offset: range?.offset, length: range?.length });
  const start = await conn.readFrame();
  expectOp(start, Op.DOWNLOAD_RSP, "download");
  if (start.message !== Msg.START) throw new ServerError("download", key, start.message);
  if (!(start.size >= 0) || !Number.isSafeInteger(start.size)) throw new ProtocolError(`download: invalid size ${start.size}`);
  if (range !== undefined && (range.offset !== 0 || range.length !== 0)) {
    // A v1 server ignores the range and sends the whole file: that is not what was asked for.
    if (start.offset !== range.offset || (range.length !== 0 && start.size > range.length)) {
      throw new ProtocolError(`download: asked for ${range.length || "the rest"} bytes from ${range.offset}, the server sent ${start.size} from ${start.offset} (a server without ranges?)`);
    }
  }
  onSize?.(start.size);
  const ranged = range !== undefined && (range.offset !== 0 || range.length !== 0);
  const hasher = verify && !ranged && start.digest !== "" ? new Bun.CryptoHasher("sha256") : null;
  await conn.readBody(start.size, hasher === null ? sink : (part) => (hasher.update(part), sink(part)));
  const end = await conn.readFrame();
  expectOp(end, Op.DOWNLOAD, "download end");
  if (end.message !== Msg.END) throw new ServerError("download", key, end.message);
  conn.deferFrame({ operation: Op.DOWNLOAD, key, message: Msg.ACK });
  if (hasher !== null) {
    const got = hasher.digest("hex");
    if (got !== start.digest.toLowerCase()) throw new DigestMismatchError(key, start.digest.toLowerCase(), got);
  }
  return start.size;
}

export interface ExistResult {
  size: number;
  type: "file" | "link" | "dir" | "unset";
  /** The SHA-256 the server recorded for the file (64 hex digits), when it has one. */
  digest?: string;
}

export async function existExchange(conn: WireConn, key: string): Promise<ExistResult> {
  await conn.sendFrame({ operation: Op.EXIST, key });
  const reply = await conn.readFrame();
  expectOp(reply, Op.EXIST_RSP, "exist");
  if (reply.message !== Msg.SUCCESS) throw new ServerError("exist", key, reply.message);
  const type = reply.type === FileType.FILE ? "file" : reply.type === FileType.DIR ? "dir" : reply.type === FileType.LINK ? "link" : "unset";
  return reply.digest === "" ? { size: reply.size, type } : { size: reply.size, type, digest: reply.digest };
}

/** An entry of a listing page: a stored file. */
export interface ListedEntry {
  key: string;
  size: number;
  mtime: Date;
  /** The SHA-256 the server recorded (hex), when it did. */
  sha256?: string;
}

/** One page of a listing (LIST): entries, then common prefixes, and where the next page starts ("" at the end). */
export interface ListedPage {
  entries: ListedEntry[];
  prefixes: string[];
  next: string;
}

/** Bytes a LIST page may carry: a server's listPageBytesMax at most (64 MiB), a line beyond. */
const LIST_PAGE_BYTES_MAX = 64 * 1024 * 1024 + 4096;

/**
 * One LIST exchange: the page after `after` (a previous page's `next`, "" for the first) of the
 * keys under `prefix`, with `delimiter` rolling deeper keys into common prefixes.
 */
export async function listExchange(conn: WireConn, prefix: string, delimiter: string, after: string, maxKeys: number): Promise<ListedPage> {
  await conn.sendFrame({ operation: Op.LIST, key: prefix, delimiter, after, maxKeys });
  const reply = await conn.readFrame();
  expectOp(reply, Op.LIST_RSP, "list");
  if (reply.message !== Msg.START) throw new ServerError("list", prefix, reply.message);
  if (!(reply.size >= 0 && reply.size <= LIST_PAGE_BYTES_MAX)) throw new ProtocolError(`list: a page of ${reply.size} bytes`);
  const parts: Uint8Array[] = [];
  await conn.readBody(reply.size, (part) => void parts.push(part.slice()));
  const page: ListedPage = { entries: [], prefixes: [], next: reply.nextAfter };
  const text = new TextDecoder().decode(Buffer.concat(parts));
  for (const line of text.split("\n")) {
    if (line === "") continue;
    let o: { key?: unknown; size?: unknown; mtime?: unknown; sha256?: unknown; prefix?: unknown };
    try {
      o = JSON.parse(line) as typeof o;
    } catch {
      throw new ProtocolError(`list: a page line is not JSON: ${line.slice(0, 80)}`);
    }
    if (typeof o.prefix === "string") page.prefixes.push(o.prefix);
    else if (typeof o.key === "string" && typeof o.size === "number" && typeof o.mtime === "string") {
      page.entries.push({ key: o.key, size: o.size, mtime: new Date(o.mtime), ...(typeof o.sha256 === "string" ? { sha256: o.sha256 } : {}) });
    } else throw new ProtocolError(`list: a page line is neither an entry nor a prefix: ${line.slice(0, 80)}`);
  }
  return page;
}

export async function deleteExchange(conn: WireConn, key: string): Promise<void> {
  await conn.sendFrame({ operation: Op.DELETE, key });
  const reply = await conn.readFrame();
  expectOp(reply, Op.DELETE_RSP, "delete");
  if (reply.message !== Msg.SUCCESS) throw new ServerError("delete", key, reply.message);
}
