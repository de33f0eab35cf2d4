// Reusable buffers of one size, for small downloads: a download of up to inlineBytesMax bytes is
// read into one buffer with room around it for its START and END frames, and leaves in one socket
// write. Buffers come back once the socket has taken their bytes. At most `keptMax` idle buffers
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
