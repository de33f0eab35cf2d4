// A bounded async queue with Go channel semantics: `send` waits while the buffer is full, `receive`
// waits while it is empty, `close` wakes every waiter. No polling: a waiter is a parked promise
// resolved by the operation that unblocks it.
//
// The buffer holds at most `capacity` values; parked senders are not buffered values, they are the
// callers' own backpressure (as in Go, each blocked sender holds its one value).

export class ChannelClosedError extends Error {
  constructor() {
    super("channel closed");
  }
}

interface ParkedSender<T> {
  value: T;
  resolve: () => void;
  reject: (e: Error) => void;
}
interface ParkedReceiver<T> {
  resolve: (v: T) => void;
  reject: (e: Error) => void;
}

export class Channel<T> {
  private readonly ring: (T | undefined)[];
  private head = 0;
  private count = 0;
  private closed = false;
  private readonly senders: ParkedSender<T>[] = [];
  private readonly receivers: ParkedReceiver<T>[] = [];

  constructor(readonly capacity: number) {
    if (!(capacity >= 1)) throw new RangeError("Channel capacity must be at least 1");
    this.ring = new Array(capacity);
  }

  /** Values buffered now (not counting parked senders). */
  get length(): number {
    return this.count;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Sends without waiting: false when the buffer is full. Throws once closed. */
  trySend(value: T): boolean {
    if (this.closed) throw new ChannelClosedError();
    const receiver = this.receivers.shift();
    if (receiver !== undefined) {
      receiver.resolve(value);
      return true;
    }
    if (this.count === this.capacity) return false;
    this.ring[(this.head + this.count) % this.capacity] = value;
    this.count++;
    return true;
  }

  /** Sends, waiting while the buffer is full. Rejects with ChannelClosedError once closed. */
  send(value: T): Promise<void> {
    if (this.trySend(value)) return Promise.resolve();
    return new Promise<void>((resolve, reject) => this.senders.push({ value, resolve, reject }));
  }

  /** Receives without waiting: undefined when empty. */
  tryReceive(): T | undefined {
    if (this.count === 0) return undefined; // senders park only on a full buffer, so none is parked
    const value = this.ring[this.head] as T;
    this.ring[this.head] = undefined;
    this.head = (this.head + 1) % this.capacity;
    this.count--;
    const sender = this.senders.shift();
    if (sender !== undefined) {
      this.ring[(this.head + this.count) % this.capacity] = sender.value;
      this.count++;
      sender.resolve();
    }
    return value;
  }

  /** Receives, waiting while empty. Rejects with ChannelClosedError once closed and drained. */
  receive(): Promise<T> {
    const value = this.tryReceive();
    if (value !== undefined) return Promise.resolve(value);
    if (this.closed) return Promise.reject(new ChannelClosedError());
    return new Promise<T>((resolve, reject) => this.receivers.push({ resolve, reject }));
  }

  /** Closes the channel: parked senders and receivers are rejected; buffered values stay receivable. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const error = new ChannelClosedError();
    for (const s of this.senders.splice(0)) s.reject(error);
    for (const r of this.receivers.splice(0)) r.reject(error);
  }
}
