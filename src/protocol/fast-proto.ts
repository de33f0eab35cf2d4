// A specialised encoder and decoder for the protocol's one message, for the hot path.
//
// Why: an upload exchange moves five frames and the bench exchange two, on both the server and the
// load generator, and protobuf-es's generic, reflection-driven fromBinary/toBinary cost ~4x what
// these functions do for this one message (scripts/bench-codec.ts: 0.86 -> 0.23 µs to decode,
// 0.52 -> 0.14 µs to encode; see BENCHMARKS.md).
//
// The generated schema (src/gen/netfs_pb.ts) stays the contract: test/protocol/fast-proto.test.ts
// checks byte-for-byte equality with protobuf-es's toBinary and field-for-field equality with its
// fromBinary over randomised messages. The decoder handles the canonical shape (fields 1..15, each
// with its declared wire type (1..19), in any order, repeated fields: last one wins) and hands anything
// else, such as unknown fields of a future extension or a wrong wire type, to protobuf-es itself,
// loaded on the first such frame: loading protobuf-es and the generated schema costs each event
// loop ~75 ms of CPU at start (more than the rest of its code), for frames a conforming client
// never sends.
import type * as ProtobufEs from "@bufbuild/protobuf";
import type * as Generated from "../gen/netfs_pb";
import { PROTOCOL_APPID, PROTOCOL_MAGIC, PROTOCOL_VERSION, ProtocolError, type MessageInit, type WireMessage } from "./message";

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();
const TWO_32 = 0x100000000;

/** Thrown inside the fast decoder when the frame is not in canonical shape; caught right here. */
const NOT_CANONICAL = Symbol("not canonical");

class Reader {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}

  /** High 32 bits of the last varint read. */
  hi = 0;

  /** Reads a varint (at most ten bytes); returns its low 32 bits and leaves the high 32 in `hi`. */
  varint(): number {
    const buf = this.buf;
    let lo = 0;
    let hi = 0;
    let shift = 0;
    for (; shift < 28; shift += 7) {
      const b = buf[this.pos++];
      if (b === undefined) throw NOT_CANONICAL;
      lo |= (b & 0x7f) << shift;
      if (b < 0x80) {
        this.hi = 0;
        return lo >>> 0;
      }
    }
    const middle = buf[this.pos++];
    if (middle === undefined) throw NOT_CANONICAL;
    lo |= (middle & 0x0f) << 28;
    hi = (middle & 0x7f) >> 4;
    if (middle >= 0x80) {
      for (shift = 3; shift <= 31; shift += 7) {
        const b = buf[this.pos++];
        if (b === undefined) throw NOT_CANONICAL;
        hi |= (b & 0x7f) << shift;
        if (b < 0x80) break;
        if (shift + 7 > 31) throw NOT_CANONICAL; // longer than 10 bytes
      }
    }
    this.hi = hi >>> 0;
    return lo >>> 0;
  }

  string(): string {
    const len = this.varint();
    if (this.hi !== 0) throw NOT_CANONICAL;
    const start = this.pos;
    const end = start + len;
    if (end > this.buf.length) throw NOT_CANONICAL;
    this.pos = end;
    return len === 0 ? "" : utf8.decode(this.buf.subarray(start, end));
  }
}

/** Decodes one message body (without the length prefix). Throws ProtocolError on a non-message. */
export function decodeProto(body: Uint8Array): WireMessage {
  const msg: WireMessage = { version: "", magic: 0, appid: 0, operation: 0, key: "", type: 0, size: 0, message: "", token: "", digest: "", offset: 0, length: 0, fileSize: 0, uploadId: "", resumable: false, delimiter: "", after: "", maxKeys: 0, nextAfter: "" };
  const r = new Reader(body);
  try {
    while (r.pos < body.length) {
      const tag = r.varint();
      if (r.hi !== 0) throw NOT_CANONICAL;
      const field = tag >>> 3;
      const wireType = tag & 7;
      const isLen = wireType === 2;
      const isVarint = wireType === 0;
      switch (field) {
        case 1:
          if (!isLen) throw NOT_CANONICAL;
          msg.version = r.string();
          break;
        case 5:
          if (!isLen) throw NOT_CANONICAL;
          msg.key = r.string();
          break;
        case 8:
          if (!isLen) throw NOT_CANONICAL;
          msg.message = r.string();
          break;
        case 9:
          if (!isLen) throw NOT_CANONICAL;
          msg.token = r.string();
          break;
        case 2:
        case 3:
        case 4:
        case 6: {
          if (!isVarint) throw NOT_CANONICAL;
          const v = r.varint() | 0; // int32: the low 32 bits, two's complement
          if (field === 2) msg.magic = v;
          else if (field === 3) msg.appid = v;
          else if (field === 4) msg.operation = v;
          else msg.type = v;
          break;
        }
        case 10:
          if (!isLen) throw NOT_CANONICAL;
          msg.digest = r.string();
          break;
        case 14:
          if (!isLen) throw NOT_CANONICAL;
          msg.uploadId = r.string();
          break;
        case 15: {
          if (!isVarint) throw NOT_CANONICAL;
          const lo = r.varint();
          msg.resumable = lo !== 0 || r.hi !== 0;
          break;
        }
        case 16:
          if (!isLen) throw NOT_CANONICAL;
          msg.delimiter = r.string();
          break;
        case 17:
          if (!isLen) throw NOT_CANONICAL;
          msg.after = r.string();
          break;
        case 18:
          if (!isVarint) throw NOT_CANONICAL;
          msg.maxKeys = r.varint() | 0;
          break;
        case 19:
          if (!isLen) throw NOT_CANONICAL;
          msg.nextAfter = r.string();
          break;
        case 7:
        case 11:
        case 12:
        case 13: {
          if (!isVarint) throw NOT_CANONICAL;
          const lo = r.varint();
          const hi = r.hi;
          const v = hi >= 0x80000000 ? -((~hi >>> 0) * TWO_32 + ((~lo >>> 0) + 1)) : hi * TWO_32 + lo;
          if (field === 7) msg.size = v;
          else if (field === 11) msg.offset = v;
          else if (field === 12) msg.length = v;
          else msg.fileSize = v;
          break;
        }
        default:
          throw NOT_CANONICAL;
      }
    }
    return msg;
  } catch (e) {
    if (e !== NOT_CANONICAL) {
      if (e instanceof TypeError) throw new ProtocolError(`undecodable protobuf frame: invalid UTF-8`);
      throw e;
    }
  }
  return decodeWithProtobufEs(body);
}

/** protobuf-es's fromBinary for the generated schema, once loaded (synchronously: Bun's require). */
let protobufEs: ((body: Uint8Array) => Generated.NetFsProtocolProto) | null = null;

function protobufEsDecoder(): (body: Uint8Array) => Generated.NetFsProtocolProto {
  if (protobufEs === null) {
    const { fromBinary } = require("@bufbuild/protobuf") as typeof ProtobufEs;
    const { NetFsProtocolProtoSchema } = require("../gen/netfs_pb") as typeof Generated;
    protobufEs = (body) => fromBinary(NetFsProtocolProtoSchema, body);
  }
  return protobufEs;
}

/** The general decoder: unknown fields, odd wire types and malformed input are its to judge. */
function decodeWithProtobufEs(body: Uint8Array): WireMessage {
  const decode = protobufEsDecoder();
  let m;
  try {
    m = decode(body);
  } catch (e) {
    throw new ProtocolError(`undecodable protobuf frame: ${(e as Error).message}`);
  }
  return {
    version: m.Version,
    magic: m.Magic,
    appid: m.Appid,
    operation: m.Operation,
    key: m.Checksum,
    type: m.Type,
    size: Number(m.Size),
    message: m.Message,
    token: m.Token,
    digest: m.Digest,
    offset: Number(m.Offset),
    length: Number(m.Length),
    fileSize: Number(m.FileSize),
    uploadId: m.UploadId,
    resumable: m.Resumable,
    delimiter: m.Delimiter,
    after: m.After,
    maxKeys: m.MaxKeys,
    nextAfter: m.NextAfter,
  };
}

// ---- encoding ----

/** Bytes of a varint of a non-negative integer below 2^53, or of a negative int32/int64 (10). */
function varintBytes(v: number): number {
  if (v < 0) return 10;
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

function writeVarint(out: Uint8Array, pos: number, v: number): number {
  if (v < 0) {
    // Negative int32 and int64 are sign-extended to 64 bits: always ten bytes. Rare: BigInt is fine.
    let x = BigInt.asUintN(64, BigInt(v));
    while (x >= 0x80n) {
      out[pos++] = Number(x & 0x7fn) | 0x80;
      x >>= 7n;
    }
    out[pos++] = Number(x);
    return pos;
  }
  while (v >= 0x80) {
    out[pos++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  out[pos++] = v;
  return pos;
}

const VERSION_BYTES = encoder.encode(PROTOCOL_VERSION);

/** Strings as UTF-8; the common ASCII case skips TextEncoder's allocation and call. */
type Utf8 = string | Uint8Array;
function utf8Of(text: string): Utf8 {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) >= 0x80) return encoder.encode(text);
  return text;
}
function writeUtf8(out: Uint8Array, pos: number, text: Utf8): number {
  if (typeof text !== "string") {
    out.set(text, pos);
    return pos + text.length;
  }
  for (let i = 0; i < text.length; i++) out[pos++] = text.charCodeAt(i);
  return pos;
}

/** Encodes a message as a whole frame (int32 LE length, then the protobuf bytes). */
export function encodeProtoFrame(msg: MessageInit): Uint8Array {
  const key = msg.key.length > 0 ? utf8Of(msg.key) : null;
  const message = msg.message ? utf8Of(msg.message) : null;
  const token = msg.token ? utf8Of(msg.token) : null;
  const digest = msg.digest ? utf8Of(msg.digest) : null;
  const offset = msg.offset ?? 0;
  const length = msg.length ?? 0;
  const fileSize = msg.fileSize ?? 0;
  const uploadId = msg.uploadId ? utf8Of(msg.uploadId) : null;
  const resumable = msg.resumable === true;
  const delimiter = msg.delimiter ? utf8Of(msg.delimiter) : null;
  const after = msg.after ? utf8Of(msg.after) : null;
  const maxKeys = msg.maxKeys ?? 0;
  const nextAfter = msg.nextAfter ? utf8Of(msg.nextAfter) : null;
  for (const v of [offset, length, fileSize]) if (!Number.isSafeInteger(v)) throw new RangeError(`${v} is not a safe integer`);
  const type = msg.type ?? 0;
  const size = msg.size ?? 0;
  if (!Number.isSafeInteger(size)) throw new RangeError(`size ${size} is not a safe integer`);
  let n = 2 + VERSION_BYTES.length + 1 + varintBytes(PROTOCOL_MAGIC) + 1 + varintBytes(PROTOCOL_APPID);
  if (msg.operation !== 0) n += 1 + varintBytes(msg.operation);
  if (key !== null) n += 1 + varintBytes(key.length) + key.length;
  if (type !== 0) n += 1 + varintBytes(type);
  if (size !== 0) n += 1 + varintBytes(size);
  if (message !== null) n += 1 + varintBytes(message.length) + message.length;
  if (token !== null) n += 1 + varintBytes(token.length) + token.length;
  if (digest !== null) n += 1 + varintBytes(digest.length) + digest.length;
  if (offset !== 0) n += 1 + varintBytes(offset);
  if (length !== 0) n += 1 + varintBytes(length);
  if (fileSize !== 0) n += 1 + varintBytes(fileSize);
  if (uploadId !== null) n += 1 + varintBytes(uploadId.length) + uploadId.length;
  if (resumable) n += 2;
  // Fields 16 and up take a two-byte tag.
  if (delimiter !== null) n += 2 + varintBytes(delimiter.length) + delimiter.length;
  if (after !== null) n += 2 + varintBytes(after.length) + after.length;
  if (maxKeys !== 0) n += 2 + varintBytes(maxKeys);
  if (nextAfter !== null) n += 2 + varintBytes(nextAfter.length) + nextAfter.length;
  const out = new Uint8Array(4 + n);
  out[0] = n & 0xff;
  out[1] = (n >>> 8) & 0xff;
  out[2] = (n >>> 16) & 0xff;
  out[3] = (n >>> 24) & 0xff;
  let p = 4;
  out[p++] = 0x0a; // field 1, LEN
  out[p++] = VERSION_BYTES.length;
  out.set(VERSION_BYTES, p);
  p += VERSION_BYTES.length;
  out[p++] = 0x10; // field 2, VARINT
  p = writeVarint(out, p, PROTOCOL_MAGIC);
  out[p++] = 0x18; // field 3
  p = writeVarint(out, p, PROTOCOL_APPID);
  if (msg.operation !== 0) {
    out[p++] = 0x20; // field 4
    p = writeVarint(out, p, msg.operation);
  }
  if (key !== null) {
    out[p++] = 0x2a; // field 5, LEN
    p = writeVarint(out, p, key.length);
    p = writeUtf8(out, p, key);
  }
  if (type !== 0) {
    out[p++] = 0x30; // field 6
    p = writeVarint(out, p, type);
  }
  if (size !== 0) {
    out[p++] = 0x38; // field 7
    p = writeVarint(out, p, size);
  }
  if (message !== null) {
    out[p++] = 0x42; // field 8, LEN
    p = writeVarint(out, p, message.length);
    p = writeUtf8(out, p, message);
  }
  if (token !== null) {
    out[p++] = 0x4a; // field 9, LEN
    p = writeVarint(out, p, token.length);
    p = writeUtf8(out, p, token);
  }
  if (digest !== null) {
    out[p++] = 0x52; // field 10, LEN
    p = writeVarint(out, p, digest.length);
    p = writeUtf8(out, p, digest);
  }
  if (offset !== 0) {
    out[p++] = 0x58; // field 11
    p = writeVarint(out, p, offset);
  }
  if (length !== 0) {
    out[p++] = 0x60; // field 12
    p = writeVarint(out, p, length);
  }
  if (fileSize !== 0) {
    out[p++] = 0x68; // field 13
    p = writeVarint(out, p, fileSize);
  }
  if (uploadId !== null) {
    out[p++] = 0x72; // field 14, LEN
    p = writeVarint(out, p, uploadId.length);
    p = writeUtf8(out, p, uploadId);
  }
  if (resumable) {
    out[p++] = 0x78; // field 15, VARINT
    out[p++] = 1;
  }
  if (delimiter !== null) {
    out[p++] = 0x82; // field 16, LEN: (16 << 3 | 2) as a varint
    out[p++] = 0x01;
    p = writeVarint(out, p, delimiter.length);
    p = writeUtf8(out, p, delimiter);
  }
  if (after !== null) {
    out[p++] = 0x8a; // field 17, LEN
    out[p++] = 0x01;
    p = writeVarint(out, p, after.length);
    p = writeUtf8(out, p, after);
  }
  if (maxKeys !== 0) {
    out[p++] = 0x90; // field 18, VARINT
    out[p++] = 0x01;
    p = writeVarint(out, p, maxKeys);
  }
  if (nextAfter !== null) {
    out[p++] = 0x9a; // field 19, LEN
    out[p++] = 0x01;
    p = writeVarint(out, p, nextAfter.length);
    p = writeUtf8(out, p, nextAfter);
  }
  return out;
}
