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
