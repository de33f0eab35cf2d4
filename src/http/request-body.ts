// A request's body as it arrives, decoded in place (no copies of the payload: what is emitted are
// views of what arrived). Two layers, as HTTP has them:
//
//   framing (where the body ends on the wire): Content-Length bytes, or Transfer-Encoding: chunked
//     (RFC 9112, 7.1: hex size, extensions ignored, data, CRLF; a zero-size chunk; trailer lines
//     until an empty one);
//   content coding: identity, or S3's aws-chunked (x-amz-content-sha256: STREAMING-*): chunks
//     framed the same way whose extensions carry a chunk-signature that chains from the request's
//     seed signature (each covers its chunk's SHA-256 and the signature before it, so a chunk
//     cannot be changed, dropped, added or moved), a zero-size last chunk, then trailers
//     (x-amz-checksum-<algorithm>, and x-amz-trailer-signature over them when the trailer is
//     signed). https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html
//
// Bounds: a chunk line at most CHUNK_LINE_BYTES_MAX, the trailer section at most
// TRAILER_BYTES_MAX; anything else malformed is a BodyError (400), after which the connection
// cannot be read further and closes.
import { sameBytesConstantTime, sha256Hex } from "../util/crypto";
import { chunkSignatureOf, trailerSignatureOf, type ChunkSigning } from "./sigv4";

/** A chunk-size line, extensions (chunk-signature=<64 hex>) included. */
const CHUNK_LINE_BYTES_MAX = 4096;
/** All trailer lines of a body together. */
const TRAILER_BYTES_MAX = 16 * 1024;
const EMPTY_SHA256 = sha256Hex("");

export class BodyError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export type Emit = (payload: Uint8Array) => void;

/** Where a request body ends on the wire. */
interface Framing {
  /** Takes what it can of `input` (emitting the body's content); how many bytes it took. Throws BodyError. */
  feed(input: Uint8Array, emit: Emit): number;
  readonly done: boolean;
}

class LengthFraming implements Framing {
  private left: number;
  constructor(size: number) {
    this.left = size;
  }
  get done(): boolean {
    return this.left === 0;
  }
  feed(input: Uint8Array, emit: Emit): number {
    const take = Math.min(this.left, input.length);
    if (take > 0) emit(take === input.length ? input : input.subarray(0, take));
    this.left -= take;
    return take;
  }
}

/**
 * The chunked grammar both layers share: lines (CRLF-ended, bounded) and data. In "http" mode the
 * trailer section ends at an empty line (the framing's end); in "aws" mode the outer framing says
 * where the content ends, and finish() checks what arrived: the last chunk, the trailers named,
 * every chunk signature and the trailer's.
 */
class Chunks implements Framing {
  private state: "size" | "data" | "data-end" | "trailers" | "done" = "size";
  private line = "";
  private dataLeft = 0;
  private trailerBytes = 0;
  private lastSeen = false;
  /** The trailers that arrived (lower-case names). */
  readonly trailers = new Map<string, string>();
  /** aws mode: the signature the next one chains from, the one the chunk being read must have, and its hash. */
  private previous: string;
  private expected = "";
  private chunkHash: Bun.CryptoHasher | null = null;

  constructor(
    private readonly mode: "http" | "aws",
    /** aws mode with auth: the chunks' signatures are checked; without, they are taken as framing only. */
    private readonly signing: ChunkSigning | null,
    /** aws mode: the chunks carry signatures (STREAMING-AWS4-HMAC-SHA256-PAYLOAD*). */
    private readonly signed: boolean,
    /** aws mode: the trailer the request announced (x-amz-trailer), or null. */
    private readonly trailer: string | null,
  ) {
    this.previous = signing?.seed ?? "";
  }

  get done(): boolean {
    return this.state === "done";
  }

  feed(input: Uint8Array, emit: Emit): number {
    let at = 0;
    while (at < input.length && this.state !== "done") {
      if (this.state === "data") {
        const take = Math.min(this.dataLeft, input.length - at);
        const piece = input.subarray(at, at + take);
        this.chunkHash?.update(piece);
        emit(piece);
        this.dataLeft -= take;
        at += take;
        if (this.dataLeft === 0) {
          this.checkChunk();
          this.state = "data-end";
        }
        continue;
      }
      const next = this.takeLine(input, at);
      if (next < 0) return input.length;
      at = next;
      const line = this.line;
      this.line = "";
      if (this.state === "data-end") {
        if (line !== "") throw malformed("a chunk's data is not followed by CRLF");
        this.state = "size";
      } else if (this.state === "size") {
        this.chunkLine(line);
      } else {
        this.trailerLine(line);
      }
    }
    return at;
  }

  /** aws mode, at the end of the content: everything that must have arrived did. */
  finish(): void {
    if (!this.lastSeen) throw incomplete("the body ended before its last (zero-size) chunk");
    if (this.line !== "") throw malformed("the body ended inside a trailer line");
    if (this.trailer !== null && !this.trailers.has(this.trailer)) throw new BodyError(400, "MalformedTrailerError", `the trailer ${this.trailer} announced by x-amz-trailer did not arrive`);
    if (this.signed && this.trailer !== null) {
      const given = this.trailers.get("x-amz-trailer-signature");
      if (given === undefined) throw new BodyError(400, "MalformedTrailerError", "a signed trailer needs x-amz-trailer-signature");
      if (this.signing !== null) {
        let text = "";
        for (const [name, value] of this.trailers) if (name !== "x-amz-trailer-signature") text += `${name}:${value}\n`;
        this.verify(given, trailerSignatureOf(this.signing, this.previous, text));
      }
    }
    this.state = "done";
  }

  /** Appends input up to the next LF to the line; the position after it, or -1 when none arrived yet. */
  private takeLine(input: Uint8Array, at: number): number {
    const lf = input.indexOf(0x0a, at);
    const end = lf < 0 ? input.length : lf;
    const bound = this.state === "trailers" ? TRAILER_BYTES_MAX - this.trailerBytes : CHUNK_LINE_BYTES_MAX;
    if (this.line.length + (end - at) > bound) throw malformed(this.state === "trailers" ? `trailers longer than ${TRAILER_BYTES_MAX} bytes` : `a chunk line longer than ${CHUNK_LINE_BYTES_MAX} bytes`);
    this.line += Buffer.from(input.buffer, input.byteOffset + at, end - at).toString("latin1");
    if (lf < 0) return -1;
    if (!this.line.endsWith("\r")) throw malformed("a chunk line must end with CRLF");
    this.line = this.line.slice(0, -1);
    if (this.state === "trailers") this.trailerBytes += this.line.length + 2;
    return lf + 1;
  }

  private chunkLine(line: string): void {
    const m = /^([0-9a-fA-F]{1,13})[ \t]*(;.*)?$/.exec(line);
    if (m === null) throw malformed(`a malformed chunk size line: ${JSON.stringify(line.slice(0, 40))}`);
    const size = parseInt(m[1]!, 16);
    if (this.mode === "aws") {
      const signature = /;\s*chunk-signature=([0-9a-f]{64})\s*$/.exec(m[2] ?? "")?.[1];
      if (this.signed && signature === undefined) throw new BodyError(403, "SignatureDoesNotMatch", "a chunk of a signed streaming payload has no chunk-signature");
      if (this.signing !== null && this.signed) {
        this.expected = signature!;
        this.chunkHash = new Bun.CryptoHasher("sha256");
      }
    }
    if (size === 0) {
      this.lastSeen = true;
      if (this.chunkHash !== null) this.checkChunk();
      this.state = "trailers";
      return;
    }
    this.dataLeft = size;
    this.state = "data";
  }

  private trailerLine(line: string): void {
    if (line === "") {
      // HTTP: the end of the body. aws: blank lines around the trailers are tolerated (clients differ).
      if (this.mode === "http") this.state = "done";
      return;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) throw malformed("a malformed trailer line");
    if (this.mode === "aws") this.trailers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }

  /** The chunk just read against its signature (aws mode with auth). */
  private checkChunk(): void {
    if (this.chunkHash === null) return;
    const hash = this.chunkHash.digest("hex");
    this.chunkHash = null;
    this.verify(this.expected, chunkSignatureOf(this.signing!, this.previous, EMPTY_SHA256, hash));
  }

  private verify(given: string, computed: string): void {
    if (!sameBytesConstantTime(Buffer.from(given), Buffer.from(computed))) {
      throw new BodyError(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided (a chunk or trailer of the streaming payload).");
    }
    this.previous = computed;
  }
}

/** How a request's body is framed and coded, from its head and signature. */
export interface BodyForm {
  /** Content-Length; null with Transfer-Encoding: chunked. */
  contentLength: number | null;
  /** aws-chunked content coding, or null (identity). */
  aws: { signed: boolean; trailer: string | null; signing: ChunkSigning | null } | null;
}

/** A request body being received: feed it what arrives; it emits the payload and knows its end. */
export class RequestBody {
  private readonly framing: Framing;
  private readonly content: Chunks | null;
  private finished = false;

  constructor(form: BodyForm) {
    this.framing = form.contentLength !== null ? new LengthFraming(form.contentLength) : new Chunks("http", null, false, null);
    this.content = form.aws === null ? null : new Chunks("aws", form.aws.signing, form.aws.signed, form.aws.trailer);
  }

  get done(): boolean {
    return this.finished;
  }

  /** The aws-chunked trailers (lower-case names), once done. */
  get trailers(): ReadonlyMap<string, string> {
    return this.content?.trailers ?? new Map();
  }

  /** Takes what belongs to the body of `input`, emitting the payload; how many bytes it took. Throws BodyError. */
  feed(input: Uint8Array, emit: Emit): number {
    if (this.finished) return 0;
    const content = this.content;
    const taken = content === null ? this.framing.feed(input, emit) : this.framing.feed(input, (piece) => void content.feed(piece, emit));
    if (this.framing.done) {
      content?.finish();
      this.finished = true;
    }
    return taken;
  }
}

function malformed(message: string): BodyError {
  return new BodyError(400, "IncompleteBody", `malformed chunked body: ${message}`);
}

function incomplete(message: string): BodyError {
  return new BodyError(400, "IncompleteBody", message);
}
