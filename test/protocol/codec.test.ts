// Proves both codecs produce the Go original's bytes and read them back, and refuse non-messages.
import { describe, expect, test } from "bun:test";
import { jsonCodec, protobufCodec } from "../../src/protocol/codec";
import { headerProblem, ProtocolError } from "../../src/protocol/message";

describe("protobuf codec", () => {
  test("encodes the exact proto3 bytes (field numbers and wire types of the spec)", () => {
    const frame = protobufCodec.encodeFrame({ operation: 3, key: "ab", size: 300 });
    // Version "0001" (1,LEN) Magic 74565 (2,VARINT) Appid 74565 (3,VARINT) Operation 3 (4) Checksum "ab" (5) Size 300 (7)
    const body = [0x0a, 4, 0x30, 0x30, 0x30, 0x31, 0x10, 0xc5, 0xc6, 0x04, 0x18, 0xc5, 0xc6, 0x04, 0x20, 3, 0x2a, 2, 0x61, 0x62, 0x38, 0xac, 0x02];
    expect([...frame]).toEqual([body.length, 0, 0, 0, ...body]);
  });

  test("round trip", () => {
    const frame = protobufCodec.encodeFrame({ operation: 8, key: "ключ", size: 2 ** 40, type: 1, message: "success" });
    const msg = protobufCodec.decode(frame.subarray(4));
    expect(msg).toEqual({ version: "0001", magic: 0x12345, appid: 0x12345, operation: 8, key: "ключ", type: 1, size: 2 ** 40, message: "success", token: "", digest: "", offset: 0, length: 0, fileSize: 0, uploadId: "", resumable: false, delimiter: "", after: "", maxKeys: 0, nextAfter: "" });
    expect(headerProblem(msg)).toBeNull();
  });

  test("unknown fields are ignored (extensions use field numbers 9 and up; 9 is the token)", () => {
    const frame = protobufCodec.encodeFrame({ operation: 1, key: "k" });
    const withExtra = new Uint8Array([...frame.subarray(4), 0xa0, 0x01, 0x07]); // field 20 varint 7
    expect(protobufCodec.decode(withExtra).key).toBe("k");
  });

  test("refuses bytes that are not a message, and invalid UTF-8 in a string", () => {
    expect(() => protobufCodec.decode(new Uint8Array([0xff, 0xff, 0xff]))).toThrow(ProtocolError);
    expect(() => protobufCodec.decode(new Uint8Array([0x2a, 2, 0xc3, 0x28]))).toThrow(ProtocolError);
  });

  test("header checks name what is wrong", () => {
    const good = protobufCodec.decode(protobufCodec.encodeFrame({ operation: 1, key: "k" }).subarray(4));
    expect(headerProblem({ ...good, version: "0002" })).toContain("Version");
    expect(headerProblem({ ...good, magic: 1 })).toContain("Magic");
    expect(headerProblem({ ...good, appid: 1 })).toContain("Appid");
  });
});

describe("json codec", () => {
  test("lower-case keys, every field present, size as a number", () => {
    const frame = jsonCodec.encodeFrame({ operation: 4, key: "k", message: "START" });
    const text = new TextDecoder().decode(frame.subarray(4));
    expect(JSON.parse(text)).toEqual({ version: "0001", magic: 74565, appid: 74565, operation: 4, checksum: "k", type: 0, size: 0, message: "START" });
    expect(new DataView(frame.buffer).getInt32(0, true)).toBe(frame.length - 4);
  });

  test("reads Go-style capitalised keys too (encoding/json matches case-insensitively)", () => {
    const body = new TextEncoder().encode('{"Version":"0001","Magic":74565,"Appid":74565,"Operation":7,"Checksum":"x","Size":9}');
    expect(jsonCodec.decode(body)).toMatchObject({ operation: 7, key: "x", size: 9 });
  });

  test("refuses non-objects and wrong types", () => {
    for (const text of ["[1]", "null", "{", '{"operation":"3"}', '{"checksum":5}', '{"size":1.5}', '{"magic":99999999999}']) {
      expect(() => jsonCodec.decode(new TextEncoder().encode(text))).toThrow(ProtocolError);
    }
  });
});

test("extension fields survive both codecs, and a v1 frame carries none of them", () => {
  const ext = { operation: 6, key: "k", message: "START", size: 10, offset: 2 ** 40, length: 7, fileSize: 2 ** 41, digest: "ab".repeat(32), token: "t", uploadId: "u1", resumable: true };
  for (const codec of [protobufCodec, jsonCodec]) {
    const back = codec.decode(codec.encodeFrame(ext).subarray(4));
    expect(back).toMatchObject(ext);
  }
  expect(new TextDecoder().decode(jsonCodec.encodeFrame({ operation: 5, key: "k" }).subarray(4))).not.toMatch(/token|digest|offset|length|filesize|uploadid|resumable/);
});

