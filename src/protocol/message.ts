// The protocol's one message, as the server and client see it once decoded (docs/PROTOCOL.md).
// Codecs (protobuf, json) convert between this shape and the wire; nothing else knows the encoding.

export const PROTOCOL_VERSION = "0001";
export const PROTOCOL_MAGIC = 0x12345;
export const PROTOCOL_APPID = 0x12345;

export const Op = {
  BENCH_MARK: 1,
  BENCH_MARK_RSP: 2,
  UPLOAD: 3,
  UPLOAD_RSP: 4,
  DOWNLOAD: 5,
  DOWNLOAD_RSP: 6,
  EXIST: 7,
  EXIST_RSP: 8,
  DELETE: 9,
  DELETE_RSP: 10,
  // Extensions (docs/PROTOCOL.md): op codes 11 and up.
  AUTH: 11,
  AUTH_RSP: 12,
  RESUME: 13,
  RESUME_RSP: 14,
  LIST: 15,
  LIST_RSP: 16,
} as const;

/**
 * The largest frame a client accepts from a server. A reply carries the request's key (at most 255
 * bytes, ~510 as escaped JSON), a size and a short text, so real replies stay under 1 KiB; this
 * leaves room for a server with longer texts. It is the client's own bound, not the server's
 * frameBytesMax (which bounds requests): a larger reply is a protocol violation, closed.
 */
export const REPLY_FRAME_BYTES_MAX = 16 * 1024;

export const FileType = { UNSET: 0, FILE: 1, LINK: 2, DIR: 3 } as const;

export const Msg = {
  START: "START",
  END: "END",
  ACK: "ACK",
  SUCCESS: "success",
} as const;

/**
 * The error text that ends an upload whose body was still arriving when the server shut down
 * (its grace over): nothing of it was stored or kept; a client may send it again from the start
 * once a server listens again (docs/PROTOCOL.md, "Shutdown").
 */
export const SHUTDOWN_TEXT = "server shutting down: upload interrupted, nothing stored";

export interface WireMessage {
  version: string;
  magic: number;
  appid: number;
  operation: number;
  /** The `Checksum` field: the file key. */
  key: string;
  type: number;
  /** int64 on the wire; values past 2^53 lose precision, which every bound check still rejects. */
  size: number;
  message: string;
  /** Extension field 9: an access token (AUTH). */
  token: string;
  /** Extension field 10: lowercase hex SHA-256 of a whole file. */
  digest: string;
  /** Extension fields 11-13: a download's range (offset, length; 0 = to the end) and the whole file's size. */
  offset: number;
  length: number;
  fileSize: number;
  /** Extension fields 14-15: a resumable upload's id, and an UPLOAD's request to be resumable. */
  uploadId: string;
  resumable: boolean;
  /** Extension fields 16-19: a LIST's delimiter, start and page size, and where its next page starts. */
  delimiter: string;
  after: string;
  maxKeys: number;
  nextAfter: string;
}

/** What a sender fills in; the version, magic and appid are always the protocol's own. */
export interface MessageInit {
  operation: number;
  key: string;
  type?: number;
  size?: number;
  message?: string;
  token?: string;
  digest?: string;
  offset?: number;
  length?: number;
  fileSize?: number;
  uploadId?: string;
  resumable?: boolean;
  delimiter?: string;
  after?: string;
  maxKeys?: number;
  nextAfter?: string;
}

/** A peer broke the protocol: the connection is closed (the Go original does the same). */
export class ProtocolError extends Error {}

/** Returns why a decoded message's header is not the protocol's, or null when it is. */
export function headerProblem(msg: WireMessage): string | null {
  if (msg.version !== PROTOCOL_VERSION) return `bad Version ${JSON.stringify(msg.version)}`;
  if (msg.magic !== PROTOCOL_MAGIC) return `bad Magic ${msg.magic}`;
  if (msg.appid !== PROTOCOL_APPID) return `bad Appid ${msg.appid}`;
  return null;
}
