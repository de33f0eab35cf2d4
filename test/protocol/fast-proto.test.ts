// Proves the hot-path codec is the generated one in disguise: byte-identical encoding to
// protobuf-es's toBinary and identical decoding to its fromBinary, over randomised messages,
// unknown fields, repeated fields, negative numbers and corrupted bytes.
import { describe, expect, test } from "bun:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { NetFsProtocolProtoSchema } from "../../src/gen/netfs_pb";
import { decodeProto, encodeProtoFrame } from "../../src/protocol/fast-proto";
import { ProtocolError } from "../../src/protocol/message";

let seed = 42;
function rand(n: number): number {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed % n;
}
const samples = ["", "a", "bench_mark_file_123", "ключ", "🔑emoji", "x".repeat(200), "START", "END", "ACK", "no such key", '"'.repeat(255)];
const ints = [0, 1, 2, 127, 128, 300, 74565, 0x7fffffff, -1, -128, -0x80000000];
const sizes = [0, 1, 127, 128, 5120, 65536, 2 ** 31, 2 ** 40, Number.MAX_SAFE_INTEGER, -1, -5120, -(2 ** 40)];
const pick = <T>(xs: T[]) => xs[rand(xs.length)]!;

function reference(body: Uint8Array) {
  const m = fromBinary(NetFsProtocolProtoSchema, body);
  return { version: m.Version, magic: m.Magic, appid: m.Appid, operation: m.Operation, key: m.Checksum, type: m.Type, size: Number(m.Size), message: m.Message, token: m.Token, digest: m.Digest, offset: Number(m.Offset), length: Number(m.Length), fileSize: Number(m.FileSize), uploadId: m.UploadId, resumable: m.Resumable, delimiter: m.Delimiter, after: m.After, maxKeys: m.MaxKeys, nextAfter: m.NextAfter };
}

describe("fast protobuf codec", () => {
  test("encodes exactly what protobuf-es encodes", () => {
    for (let i = 0; i < 3000; i++) {
      const init = { operation: pick(ints), key: pick(samples), type: pick(ints), size: pick(sizes), message: pick(samples), token: pick(samples), digest: pick(samples), offset: pick(sizes), length: pick(sizes), fileSize: pick(sizes), uploadId: pick(samples), resumable: rand(2) === 1, delimiter: pick(samples), after: pick(samples), maxKeys: pick(ints), nextAfter: pick(samples) };
      const frame = encodeProtoFrame(init);
      const expected = toBinary(
        NetFsProtocolProtoSchema,
        create(NetFsProtocolProtoSchema, { Version: "0001", Magic: 74565, Appid: 74565, Operation: init.operation, Checksum: init.key, Type: init.type, Size: BigInt(init.size), Message: init.message, Token: init.token, Digest: init.digest, Offset: BigInt(init.offset), Length: BigInt(init.length), FileSize: BigInt(init.fileSize), UploadId: init.uploadId, Resumable: init.resumable, Delimiter: init.delimiter, After: init.after, MaxKeys: init.maxKeys, NextAfter: init.nextAfter }),
      );
      expect(new DataView(frame.buffer).getInt32(0, true)).toBe(expected.length);
      expect(Buffer.from(frame.subarray(4)).equals(Buffer.from(expected))).toBe(true);
    }
  });

  test("decodes exactly what protobuf-es decodes, including foreign field orders, repeats and unknown fields", () => {
    for (let i = 0; i < 3000; i++) {
      const m = create(NetFsProtocolProtoSchema, {
        Version: pick(samples),
        Magic: pick(ints),
        Appid: pick(ints),
        Operation: pick(ints),
        Checksum: pick(samples),
        Type: pick(ints),
        Size: BigInt(pick(sizes)),
        Message: pick(samples),
        Token: pick(samples),
        Digest: pick(samples),
        Offset: BigInt(pick(sizes)),
        Length: BigInt(pick(sizes)),
        FileSize: BigInt(pick(sizes)),
        UploadId: pick(samples),
        Resumable: rand(2) === 1,
        Delimiter: pick(samples),
        After: pick(samples),
        MaxKeys: pick(ints),
        NextAfter: pick(samples),
      });
      let body = toBinary(NetFsProtocolProtoSchema, m);
      if (i % 3 === 1) body = new Uint8Array([...body, ...toBinary(NetFsProtocolProtoSchema, create(NetFsProtocolProtoSchema, { Checksum: "later", Size: 7n }))]); // repeats: last wins
      if (i % 3 === 2) body = new Uint8Array([0xe0, 0x01, 0x05, 0xea, 0x01, 0x02, 0x68, 0x69, ...body]); // unknown fields 28 and 29 first
      expect(decodeProto(body)).toEqual(reference(body));
    }
  });

  test("rejects what protobuf-es rejects, and accepts what it accepts, on corrupted frames", () => {
    const good = toBinary(NetFsProtocolProtoSchema, create(NetFsProtocolProtoSchema, { Version: "0001", Magic: 74565, Operation: 3, Checksum: "ключ-file", Size: 123456n, Message: "ACK" }));
    for (let i = 0; i < 20000; i++) {
      const body = good.slice(0, 1 + rand(good.length));
      const flips = 1 + rand(3);
      for (let f = 0; f < flips; f++) body[rand(body.length)] = rand(256);
      let expected: unknown;
      try {
        expected = reference(body);
      } catch {
        expected = "rejected";
      }
      let got: unknown;
      try {
        got = decodeProto(body);
      } catch (e) {
        expect(e).toBeInstanceOf(ProtocolError);
        got = "rejected";
      }
      expect(got).toEqual(expected);
    }
  });
});
