// Splits a byte stream into control frames: an int32 little-endian length N, then N bytes.
//
// The announced length is checked before anything is allocated: N <= 0 or N > frameBytesMax throws
// ProtocolError, and the caller closes the connection (the Go original allocated whatever N said).
// A frame that arrives whole inside one chunk is returned as a view of that chunk (no copy); only a
// frame split across chunks is gathered, into one buffer of exactly N bytes.
import { ProtocolError } from "./message";

const HEADER_BYTES = 4;

export class FrameDecoder {
  private readonly header = new Uint8Array(HEADER_BYTES);
  private headerHave = 0;
  /** The frame being gathered across chunks, or null between frames. */
  private partial: Uint8Array | null = null;
  private partialHave = 0;
  private frame: Uint8Array | null = null;

  constructor(private readonly frameBytesMax: number) {}

  /** True while part of a frame has been fed but not yet completed. */
  get midFrame(): boolean {
    return this.headerHave > 0 || this.partial !== null;
  }

  /**
   * Consumes bytes of `chunk` from `offset`, up to the end of the first frame that completes.
   * Returns how many bytes it consumed; `takeFrame()` then yields the frame, if one completed.
   */
  feed(chunk: Uint8Array, offset: number): number {
    const start = offset;
    const end = chunk.length;
    if (this.partial === null) {
      if (this.headerHave === 0 && end - offset >= HEADER_BYTES) {
        // Fast path: the whole header is in this chunk.
        const n = chunk[offset]! | (chunk[offset + 1]! << 8) | (chunk[offset + 2]! << 16) | (chunk[offset + 3]! << 24);
        this.checkLength(n);
        offset += HEADER_BYTES;
        if (end - offset >= n) {
          this.frame = chunk.subarray(offset, offset + n);
          return offset + n - start;
        }
        this.partial = new Uint8Array(n);
      } else {
        while (this.headerHave < HEADER_BYTES && offset < end) this.header[this.headerHave++] = chunk[offset++]!;
        if (this.headerHave < HEADER_BYTES) return offset - start;
        const h = this.header;
        const n = h[0]! | (h[1]! << 8) | (h[2]! << 16) | (h[3]! << 24);
        this.headerHave = 0;
        this.checkLength(n);
        this.partial = new Uint8Array(n);
      }
      this.partialHave = 0;
    }
    const want = this.partial.length - this.partialHave;
    const take = Math.min(want, end - offset);
    this.partial.set(chunk.subarray(offset, offset + take), this.partialHave);
    this.partialHave += take;
    offset += take;
    if (this.partialHave === this.partial.length) {
      this.frame = this.partial;
      this.partial = null;
    }
    return offset - start;
  }

  takeFrame(): Uint8Array | null {
    const frame = this.frame;
    this.frame = null;
    return frame;
  }

  private checkLength(n: number): void {
    if (n <= 0) throw new ProtocolError(`frame length ${n} is not positive`);
    if (n > this.frameBytesMax) throw new ProtocolError(`frame length ${n} exceeds frameBytesMax ${this.frameBytesMax}`);
  }
}

/** Prefixes an encoded message with its int32 LE length. */
export function frameOf(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES + body.length);
  const n = body.length;
  out[0] = n & 0xff;
  out[1] = (n >>> 8) & 0xff;
  out[2] = (n >>> 16) & 0xff;
  out[3] = (n >>> 24) & 0xff;
  out.set(body, HEADER_BYTES);
  return out;
}
