// Reusable buffers of one size, for small uploads and downloads: a download of up to inlineBytesMax
// bytes is read into one buffer with room around it for its START and END frames, and leaves in one
// socket write; an upload body that arrives in pieces is gathered into one. Buffers come back once
// the socket has taken their bytes, or the engine has committed them. Reuse spares the allocation,
// zeroing and first-touch page faults of a fresh buffer per exchange. At most `keptMax` idle buffers
// are kept; past that a released buffer is left to the garbage collector, so the pool never grows
// beyond keptMax x bufferBytes of idle memory.
export class BufferPool {
  private readonly free: Uint8Array[] = [];

  constructor(
    readonly bufferBytes: number,
    private readonly keptMax: number,
  ) {}

  acquire(): Uint8Array {
    return this.free.pop() ?? new Uint8Array(this.bufferBytes);
  }

  release(buffer: Uint8Array): void {
    if (this.free.length < this.keptMax && buffer.length === this.bufferBytes) this.free.push(buffer);
  }
}

/**
 * A small upload's body, gathered whole for one store call: the one data chunk that held all of it
 * (kept as is, no copy: Bun never reuses a chunk), or a pooled buffer its pieces are copied into,
 * which goes back to the pool on release(). One per connection, reused exchange after exchange.
 */
export class GatheredBody {
  private buffer: Uint8Array | null = null;
  private pooled = false;
  private filled = 0;

  constructor(private readonly pool: BufferPool) {}

  /** The next piece; `whole` says it is the entire body (the first piece and the last). */
  add(part: Uint8Array, whole: boolean): void {
    if (whole) {
      this.buffer = part;
    } else {
      if (this.buffer === null) {
        this.buffer = this.pool.acquire();
        this.pooled = true;
      }
      this.buffer.set(part, this.filled);
    }
    this.filled += part.length;
  }

  /** The bytes gathered so far: valid until release(). */
  get bytes(): Uint8Array {
    if (this.buffer === null) return new Uint8Array(0);
    // The one chunk that held the body is the body: no view of it is made (see consume's).
    return this.filled === this.buffer.length ? this.buffer : this.buffer.subarray(0, this.filled);
  }

  release(): void {
    if (this.pooled) this.pool.release(this.buffer!);
    this.buffer = null;
    this.pooled = false;
    this.filled = 0;
  }
}
