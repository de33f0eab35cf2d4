// The server's counters that every event loop adds to: open connections (connectionsMax is the
// server's bound) and resumable uploads held and the bytes their parked files keep (the resumable
// bounds are the server's). Each loop adds only to its own cell, and a bound is checked against the
// sum of every loop's cells, so what a loop holds is always its own: a loop that ends without giving
// its counts back (its thread died before its cleanup) has its cells zeroed by the supervisor, and
// the totals are right again. Cells are written with Atomics; a sum is a few loads (loops <= 64).

/** Counts per loop: the cells of one quantity. */
class PerLoop {
  constructor(private readonly cells: Int32Array) {}

  add(loop: number, n: number): void {
    Atomics.add(this.cells, loop, n);
  }

  total(): number {
    let sum = 0;
    for (let i = 0; i < this.cells.length; i++) sum += Atomics.load(this.cells, i);
    return sum;
  }

  /** Adds `n` to the loop's cell unless the total would pass `max`: true when added. */
  addWithin(loop: number, n: number, max: number): boolean {
    Atomics.add(this.cells, loop, n);
    if (this.total() <= max) return true;
    Atomics.sub(this.cells, loop, n);
    return false;
  }

  reset(loop: number): void {
    Atomics.store(this.cells, loop, 0);
  }
}

/** Bytes per loop (beyond 2^31: BigInt64 cells). */
class PerLoopBytes {
  constructor(private readonly cells: BigInt64Array) {}

  add(loop: number, n: number): void {
    Atomics.add(this.cells, loop, BigInt(n));
  }

  total(): number {
    let sum = 0n;
    for (let i = 0; i < this.cells.length; i++) sum += Atomics.load(this.cells, i);
    return Number(sum);
  }

  addWithin(loop: number, n: number, max: number): boolean {
    Atomics.add(this.cells, loop, BigInt(n));
    if (this.total() <= max) return true;
    Atomics.sub(this.cells, loop, BigInt(n));
    return false;
  }

  reset(loop: number): void {
    Atomics.store(this.cells, loop, 0n);
  }
}

/** The shared memory for `loops` loops (the supervisor makes it once and gives it to every loop). */
export function sharedCountersMemory(loops: number): SharedArrayBuffer {
  return new SharedArrayBuffer(8 * loops + 4 * loops * 2);
}

export class SharedCounters {
  readonly connections: PerLoop;
  readonly resumableUploads: PerLoop;
  readonly resumableBytes: PerLoopBytes;

  constructor(memory: SharedArrayBuffer) {
    const loops = memory.byteLength / 16;
    this.resumableBytes = new PerLoopBytes(new BigInt64Array(memory, 0, loops));
    this.connections = new PerLoop(new Int32Array(memory, 8 * loops, loops));
    this.resumableUploads = new PerLoop(new Int32Array(memory, 12 * loops, loops));
  }

  /** A loop ended without giving back what it counted: its cells are zeroed. */
  resetLoop(loop: number): void {
    this.connections.reset(loop);
    this.resumableUploads.reset(loop);
    this.resumableBytes.reset(loop);
  }
}
