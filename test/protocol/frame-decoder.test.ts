// Proves the frame decoder yields the same frames under every split of the input, and refuses
// bad lengths before allocating.
import { describe, expect, test } from "bun:test";
import { FrameDecoder, frameOf } from "../../src/protocol/frame-decoder";
import { protobufCodec, jsonCodec } from "../../src/protocol/codec";
import { ProtocolError } from "../../src/protocol/message";

function sampleStream(): { stream: Uint8Array; frames: Uint8Array[] } {
  const frames = [
    protobufCodec.encodeFrame({ operation: 1, key: "a" }),
    protobufCodec.encodeFrame({ operation: 3, key: "some/thing", size: 123456789 }),
    frameOf(new Uint8Array([7])), // a one-byte frame
    protobufCodec.encodeFrame({ operation: 8, key: "ключ-🔑", size: 5, type: 1, message: "success" }),
    frameOf(new Uint8Array(300).map((_, i) => i)),
  ];
  const total = frames.reduce((n, f) => n + f.length, 0);
  const stream = new Uint8Array(total);
  let o = 0;
  for (const f of frames) {
    stream.set(f, o);
    o += f.length;
  }
  return { stream, frames: frames.map((f) => f.subarray(4)) };
}

/** Feeds `chunks` in order and collects every frame (copied, since views alias the chunks). */
function decodeChunks(chunks: Uint8Array[], max = 65536): Uint8Array[] {
  const d = new FrameDecoder(max);
  const out: Uint8Array[] = [];
  for (const chunk of chunks) {
    let offset = 0;
    while (offset < chunk.length) {
      offset += d.feed(chunk, offset);
      const f = d.takeFrame();
      if (f) out.push(f.slice());
    }
  }
  return out;
}

describe("FrameDecoder", () => {
  const { stream, frames } = sampleStream();

  test("whole stream in one chunk", () => {
    expect(decodeChunks([stream])).toEqual(frames);
  });

  test("every two-way split", () => {
    for (let i = 0; i <= stream.length; i++) {
      expect(decodeChunks([stream.subarray(0, i), stream.subarray(i)])).toEqual(frames);
    }
  });

  test("every three-way split of the first 60 bytes", () => {
    const head = stream.subarray(0, 60);
    const expected = decodeChunks([head]);
    for (let i = 0; i <= head.length; i++) {
      for (let j = i; j <= head.length; j++) {
        expect(decodeChunks([head.subarray(0, i), head.subarray(i, j), head.subarray(j)])).toEqual(expected);
      }
    }
  });

  test("one byte at a time", () => {
    const chunks = Array.from(stream, (b) => new Uint8Array([b]));
    expect(decodeChunks(chunks)).toEqual(frames);
  });

  test("a truncated stream yields only the complete frames and reports a partial one", () => {
    const cut = stream.length - 10;
    const d = new FrameDecoder(65536);
    const out: Uint8Array[] = [];
    let offset = 0;
    const chunk = stream.subarray(0, cut);
    while (offset < chunk.length) {
      offset += d.feed(chunk, offset);
      const f = d.takeFrame();
      if (f) out.push(f.slice());
    }
    expect(out).toEqual(frames.slice(0, frames.length - 1));
    expect(d.midFrame).toBe(true);
  });

  test("a frame whole in its chunk comes back as a view, without a copy", () => {
    const d = new FrameDecoder(65536);
    d.feed(stream, 0);
    const f = d.takeFrame()!;
    expect(f.buffer).toBe(stream.buffer);
  });

  test("lengths at, over, zero and negative", () => {
    const header = (n: number) => {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setInt32(0, n, true);
      return b;
    };
    // At the bound: accepted, waits for the body.
    const ok = new FrameDecoder(100);
    expect(ok.feed(header(100), 0)).toBe(4);
    expect(ok.midFrame).toBe(true);
    // Over the bound, zero, negative: refused on the header alone, even a byte at a time.
    for (const n of [101, 0x7fffffff, 0, -1, -0x80000000]) {
      expect(() => new FrameDecoder(100).feed(header(n), 0)).toThrow(ProtocolError);
      const d = new FrameDecoder(100);
      const h = header(n);
      expect(() => {
        for (let i = 0; i < 4; i++) d.feed(h.subarray(i, i + 1), 0);
      }).toThrow(ProtocolError);
    }
  });

  test("garbage never escapes as anything but ProtocolError", () => {
    let seed = 12345;
    const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 16) & 0xff;
    for (let round = 0; round < 2000; round++) {
      const junk = new Uint8Array(5 + (rand() % 64)).map(() => rand());
      // Make half the rounds announce a small valid length so the body reaches the codecs.
      if (round % 2 === 0) junk.set([junk.length - 4, 0, 0, 0]);
      for (const codec of [protobufCodec, jsonCodec]) {
        const d = new FrameDecoder(1024);
        try {
          let offset = 0;
          while (offset < junk.length) {
            offset += d.feed(junk, offset);
            const f = d.takeFrame();
            if (f) codec.decode(f);
          }
        } catch (e) {
          expect(e).toBeInstanceOf(ProtocolError);
        }
      }
    }
  });
});
