// Proves the Channel behaves like a buffered Go channel with one consumer: bounded, a receive that
// waits while empty, woken by close.
import { describe, expect, test } from "bun:test";
import { Channel, ChannelClosedError } from "../../src/util/channel";

describe("Channel", () => {
  test("buffers up to capacity, then trySend says no", () => {
    const ch = new Channel<number>(2);
    expect(ch.trySend(1)).toBe(true);
    expect(ch.trySend(2)).toBe(true);
    expect(ch.trySend(3)).toBe(false);
    expect(ch.tryReceive()).toBe(1);
    expect(ch.tryReceive()).toBe(2);
    expect(ch.tryReceive()).toBeUndefined();
  });

  test("values come out in the order they went in, across the ring's wrap", () => {
    const ch = new Channel<number>(3);
    const out: number[] = [];
    for (let i = 0; i < 10; i++) {
      expect(ch.trySend(i)).toBe(true);
      if (i % 2 === 1) out.push(ch.tryReceive()!, ch.tryReceive()!);
    }
    expect(out).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  test("receive waits while empty; a send hands the value straight to the waiter", async () => {
    const ch = new Channel<string>(4);
    const p = ch.receive();
    let got: string | null = null;
    void p.then((v) => (got = v));
    await Bun.sleep(5);
    expect(got).toBeNull();
    expect(ch.trySend("x")).toBe(true);
    expect(await p).toBe("x");
    expect(ch.tryReceive()).toBeUndefined();
  });

  test("close wakes a blocked receiver; buffered values stay receivable", async () => {
    const ch = new Channel<number>(1);
    const waiting = ch.receive();
    ch.close();
    expect(waiting).rejects.toBeInstanceOf(ChannelClosedError);
    const full = new Channel<number>(1);
    full.trySend(1);
    full.close();
    expect(full.tryReceive()).toBe(1);
    expect(full.receive()).rejects.toBeInstanceOf(ChannelClosedError);
    expect(() => full.trySend(3)).toThrow(ChannelClosedError);
  });
});
