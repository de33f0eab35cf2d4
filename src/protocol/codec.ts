// The two encodings of the message that the Go original can be built with: protobuf (the default;
// the schema generated in src/gen/ is the contract) and JSON with lower-case keys. Both produce
// whole frames.
import { decodeProto, encodeProtoFrame } from "./fast-proto";
import { frameOf } from "./frame-decoder";
import { PROTOCOL_APPID, PROTOCOL_MAGIC, PROTOCOL_VERSION, ProtocolError, type MessageInit, type WireMessage } from "./message";

export type WireName = "protobuf" | "json";

export interface WireCodec {
  readonly name: WireName;
  /** Decodes one frame's body; throws ProtocolError when it is not a message. */
  decode(body: Uint8Array): WireMessage;
  /** Encodes a message as a whole frame, length prefix included. */
  encodeFrame(msg: MessageInit): Uint8Array;
}

/** Protobuf through the specialised codec (fast-proto.ts), which defers to protobuf-es for any
 *  frame outside the canonical shape and is tested to be byte-identical to it. */
export const protobufCodec: WireCodec = {
  name: "protobuf",
  decode: decodeProto,
  encodeFrame: encodeProtoFrame,
};

const textDecoder = new TextDecoder("utf-8", { fatal: true });
const textEncoder = new TextEncoder();

/** Go's encoding/json matches object keys case-insensitively; so does this decoder. */
function jsonField(obj: Record<string, unknown>, lower: string): unknown {
  if (lower in obj) return obj[lower];
  for (const k in obj) if (k.toLowerCase() === lower) return obj[k];
  return undefined;
}

function jsonString(obj: Record<string, unknown>, name: string): string {
  const v = jsonField(obj, name);
  if (v === undefined || v === null) return "";
  if (typeof v !== "string") throw new ProtocolError(`json field ${name} is not a string`);
  return v;
}

function jsonInt(obj: Record<string, unknown>, name: string, bits: 32 | 64): number {
  const v = jsonField(obj, name);
  if (v === undefined || v === null) return 0;
  if (typeof v !== "number" || !Number.isInteger(v)) throw new ProtocolError(`json field ${name} is not an integer`);
  if (bits === 32 && (v < -0x80000000 || v > 0x7fffffff)) throw new ProtocolError(`json field ${name} is out of int32 range`);
  return v;
}

export const jsonCodec: WireCodec = {
  name: "json",
  decode(body) {
    let obj: unknown;
    try {
      obj = JSON.parse(textDecoder.decode(body));
    } catch (e) {
      throw new ProtocolError(`undecodable json frame: ${(e as Error).message}`);
    }
    if (typeof obj !== "object" || obj === null || Array.isArray(obj)) throw new ProtocolError("json frame is not an object");
    const o = obj as Record<string, unknown>;
    return {
      version: jsonString(o, "version"),
      magic: jsonInt(o, "magic", 32),
      appid: jsonInt(o, "appid", 32),
      operation: jsonInt(o, "operation", 32),
      key: jsonString(o, "checksum"),
      type: jsonInt(o, "type", 32),
      size: jsonInt(o, "size", 64),
      message: jsonString(o, "message"),
      token: jsonString(o, "token"),
      digest: jsonString(o, "digest"),
      offset: jsonInt(o, "offset", 64),
      length: jsonInt(o, "length", 64),
      fileSize: jsonInt(o, "filesize", 64),
      uploadId: jsonString(o, "uploadid"),
      resumable: jsonField(o, "resumable") === true,
      delimiter: jsonString(o, "delimiter"),
      after: jsonString(o, "after"),
      maxKeys: jsonInt(o, "maxkeys", 32),
      nextAfter: jsonString(o, "nextafter"),
    };
  },
  encodeFrame(msg) {
    const text = JSON.stringify({
      version: PROTOCOL_VERSION,
      magic: PROTOCOL_MAGIC,
      appid: PROTOCOL_APPID,
      operation: msg.operation,
      checksum: msg.key,
      type: msg.type ?? 0,
      size: msg.size ?? 0,
      message: msg.message ?? "",
      // An extension field appears only when set, so v1 frames stay byte for byte the original's.
      ...(msg.token ? { token: msg.token } : {}),
      ...(msg.digest ? { digest: msg.digest } : {}),
      ...(msg.offset ? { offset: msg.offset } : {}),
      ...(msg.length ? { length: msg.length } : {}),
      ...(msg.fileSize ? { filesize: msg.fileSize } : {}),
      ...(msg.uploadId ? { uploadid: msg.uploadId } : {}),
      ...(msg.resumable ? { resumable: true } : {}),
      ...(msg.delimiter ? { delimiter: msg.delimiter } : {}),
      ...(msg.after ? { after: msg.after } : {}),
      ...(msg.maxKeys ? { maxkeys: msg.maxKeys } : {}),
      ...(msg.nextAfter ? { nextafter: msg.nextAfter } : {}),
    });
    return frameOf(textEncoder.encode(text));
  },
};

export function codecFor(wire: WireName): WireCodec {
  return wire === "json" ? jsonCodec : protobufCodec;
}
