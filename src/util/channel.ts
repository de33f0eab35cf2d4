// A bounded async queue with Go channel semantics for one consumer: `trySend` answers false when the
// buffer is full (the producer decides what that means: for the C pool's completions, a bug, since
// there are never more completions than slots), `receive` waits while it is empty, `close` wakes
// the waiter. No polling: a waiter is a parked promise resolved by the send that unblocks it.

export class ChannelClosedError extends Error {
  constructor() {
    super("channel closed");
  }
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
  private readonly receivers: ParkedReceiver<T>[] = [];

  constructor(readonly capacity: number) {
    if (!(capacity >= 1)) throw new RangeError("Channel capacity must be at least 1");
    this.ring = new Array(capacity);
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

  /** Receives without waiting: undefined when empty. */
  tryReceive(): T | undefined {
    if (this.count === 0) return undefined;
    const value = this.ring[this.head] as T;
    this.ring[this.head] = undefined;
    this.head = (this.head + 1) % this.capacity;
    this.count--;
    return value;
  }

  /** Receives, waiting while empty. Rejects with ChannelClosedError once closed and drained. */
  receive(): Promise<T> {
    const value = this.tryReceive();
    if (value !== undefined) return Promise.resolve(value);
    if (this.closed) return Promise.reject(new ChannelClosedError());
    return new Promise<T>((resolve, reject) => this.receivers.push({ resolve, reject }));
  }

  /** Closes the channel: parked receivers are rejected; buffered values stay receivable. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const error = new ChannelClosedError();
    for (const r of this.receivers.splice(0)) r.reject(error);
  }
}
