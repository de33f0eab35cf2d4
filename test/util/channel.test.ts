// Proves the Channel behaves like a Go channel: bounded, blocking both ways, woken by close.
import { describe, expect, test } from "bun:test";
import { Channel, ChannelClosedError } from "../../src/util/channel";

describe("Channel", () => {
  test("buffers up to capacity, then trySend says no", () => {
    const ch = new Channel<number>(2);
    expect(ch.trySend(1)).toBe(true);
    expect(ch.trySend(2)).toBe(true);
    expect(ch.trySend(3)).toBe(false);
    expect(ch.length).toBe(2);
    expect(ch.tryReceive()).toBe(1);
    expect(ch.tryReceive()).toBe(2);
    expect(ch.tryReceive()).toBeUndefined();
  });

  test("send waits while full and resumes when a value is received, in order", async () => {
    const ch = new Channel<number>(1);
    await ch.send(1);
    let sent = false;
    const p = ch.send(2).then(() => (sent = true));
    await Bun.sleep(5);
    expect(sent).toBe(false);
    expect(await ch.receive()).toBe(1);
    await p;
    expect(sent).toBe(true);
    expect(await ch.receive()).toBe(2);
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
    expect(ch.length).toBe(0);
  });

  test("close wakes blocked receivers and senders; buffered values stay receivable", async () => {
    const ch = new Channel<number>(1);
    const waiting = ch.receive();
    ch.close();
    expect(waiting).rejects.toBeInstanceOf(ChannelClosedError);
    const full = new Channel<number>(1);
    full.trySend(1);
    const blocked = full.send(2);
    full.close();
    expect(blocked).rejects.toBeInstanceOf(ChannelClosedError);
    expect(full.tryReceive()).toBe(1);
    expect(full.receive()).rejects.toBeInstanceOf(ChannelClosedError);
    expect(() => full.trySend(3)).toThrow(ChannelClosedError);
  });
});
