// Request bodies decoded as they arrive (src/http/request-body.ts): AWS's two documented streaming
// uploads (chunks signed from the seed signature; and with a signed CRC-32C trailer) verify from
// their request heads through every chunk, fed in pieces of every size; a changed byte, chunk or
// trailer does not. Transfer-Encoding: chunked with extensions and trailers; each malformation and
// bound is a BodyError, never a guess.
import { expect, test } from "bun:test";
import { BodyError, RequestBody, type BodyForm } from "../../src/http/request-body";
import { parseSigV4, verifySigV4, type ChunkSigning } from "../../src/http/sigv4";
import { ChecksumHasher, crc32c } from "../../src/http/checksums";
import type { RequestHead } from "../../src/http/request-head";

const SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const AT = Date.UTC(2013, 4, 24);
const DATA = new Uint8Array(66_560).fill(0x61); // the examples' object: 66,560 bytes of "a"

function streamingHead(headers: Record<string, string>): RequestHead {
  return { method: "PUT", path: "/examplebucket/chunkObject.txt", query: "", headers: new Map(Object.entries(headers)), keepAlive: true, contentLength: null, chunked: false } as unknown as RequestHead;
}

/** The seed of AWS's "Example: PUT Object" (Transferring Payload in Multiple Chunks), verified from its head. */
function exampleSigning(): ChunkSigning {
  const head = streamingHead({
    host: "s3.amazonaws.com",
    "x-amz-date": "20130524T000000Z",
    "x-amz-storage-class": "REDUCED_REDUNDANCY",
    authorization:
      "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
    "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "content-encoding": "aws-chunked",
    "x-amz-decoded-content-length": "66560",
    "content-length": "66824",
  });
  return verifySigV4(head, new URLSearchParams(), parseSigV4(head, new URLSearchParams())!, [SECRET], AT);
}

/** The seed of AWS's example with trailing headers (Signature Calculations for Trailing Headers). */
function trailerSigning(): ChunkSigning {
  const head = streamingHead({
    host: "s3.amazonaws.com",
    "x-amz-date": "20130524T000000Z",
    "x-amz-storage-class": "REDUCED_REDUNDANCY",
    authorization:
      "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer,Signature=106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
    "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
    "content-encoding": "aws-chunked",
    "x-amz-decoded-content-length": "66560",
    "x-amz-trailer": "x-amz-checksum-crc32c",
  });
  return verifySigV4(head, new URLSearchParams(), parseSigV4(head, new URLSearchParams())!, [SECRET], AT);
}

const enc = (s: string) => new TextEncoder().encode(s);
function join(...parts: (string | Uint8Array)[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts.map((p) => (typeof p === "string" ? enc(p) : p))));
}

const EXAMPLE_BODY = join(
  "10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n", DATA.subarray(0, 65_536), "\r\n",
  "400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n", DATA.subarray(65_536), "\r\n",
  "0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n",
);
const TRAILER_BODY = join(
  "10000;chunk-signature=b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2\r\n", DATA.subarray(0, 65_536), "\r\n",
  "400;chunk-signature=1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7\r\n", DATA.subarray(65_536), "\r\n",
  "0;chunk-signature=2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992\r\n\r\n",
  "x-amz-checksum-crc32c:sOO8/Q==\r\n",
  "x-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n\r\n",
);

/** Decodes `wire` fed in pieces of `step` bytes: the payload and trailers, or the BodyError's code; and how many bytes the body took. */
function decode(form: BodyForm, wire: Uint8Array, step = wire.length): { payload?: Uint8Array; trailers?: ReadonlyMap<string, string>; error?: string; taken: number } {
  const body = new RequestBody(form);
  const out: Uint8Array[] = [];
  let taken = 0;
  try {
    for (let at = 0; at < wire.length && !body.done; at += step) {
      const piece = wire.subarray(at, Math.min(at + step, wire.length));
      const n = body.feed(piece, (p) => out.push(p.slice()));
      taken += n;
      if (n < piece.length) break;
    }
    if (!body.done) return { error: "unfinished", taken };
  } catch (e) {
    if (e instanceof BodyError) return { error: e.code, taken };
    throw e;
  }
  return { payload: new Uint8Array(Buffer.concat(out)), trailers: body.trailers, taken };
}

const sameBytes = (a: Uint8Array | undefined, b: Uint8Array) => a !== undefined && Buffer.from(a).equals(Buffer.from(b));

test("AWS's signed streaming example: the seed from its head, every chunk signature, in pieces of any size", () => {
  const signing = exampleSigning();
  expect(signing.seed).toBe("4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9");
  expect(EXAMPLE_BODY.length).toBe(66_824); // the example's Content-Length
  const form: BodyForm = { contentLength: EXAMPLE_BODY.length, aws: { signed: true, trailer: null, signing } };
  for (const step of [1, 7, 89, 4096, 65_600, EXAMPLE_BODY.length]) {
    const r = decode(form, EXAMPLE_BODY, step);
    expect(r.error).toBeUndefined();
    expect(sameBytes(r.payload, DATA)).toBe(true);
  }
  // A changed data byte, a dropped chunk, a wrong key: refused.
  const changed = EXAMPLE_BODY.slice();
  changed[66_000] = 0x62; // in the second chunk's data
  expect(decode({ ...form }, changed).error).toBe("SignatureDoesNotMatch");
  const other = { ...signing, key: Buffer.alloc(32, 1) };
  expect(decode({ contentLength: EXAMPLE_BODY.length, aws: { signed: true, trailer: null, signing: other } }, EXAMPLE_BODY).error).toBe("SignatureDoesNotMatch");
  const firstChunkEnd = EXAMPLE_BODY.indexOf(0x0a) + 1 + 65_536 + 2;
  const withoutFirst = EXAMPLE_BODY.subarray(firstChunkEnd);
  expect(decode({ contentLength: withoutFirst.length, aws: { signed: true, trailer: null, signing } }, withoutFirst).error).toBe("SignatureDoesNotMatch");
  // Without auth the signatures are framing only: the payload still decodes.
  const unchecked = decode({ contentLength: EXAMPLE_BODY.length, aws: { signed: true, trailer: null, signing: null } }, changed).payload!;
  expect(unchecked.length).toBe(DATA.length);
  expect(unchecked.filter((b) => b === 0x62).length).toBe(1);
});

test("AWS's example with a signed CRC-32C trailer: chunks, trailer and its signature", () => {
  const signing = trailerSigning();
  expect(signing.seed).toBe("106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e");
  const form: BodyForm = { contentLength: TRAILER_BODY.length, aws: { signed: true, trailer: "x-amz-checksum-crc32c", signing } };
  for (const step of [1, 13, 65_536, TRAILER_BODY.length]) {
    const r = decode(form, TRAILER_BODY, step);
    expect(r.error).toBeUndefined();
    expect(sameBytes(r.payload, DATA)).toBe(true);
    expect(r.trailers?.get("x-amz-checksum-crc32c")).toBe("sOO8/Q==");
  }
  // The trailer's value is what CRC-32C gives for the data.
  const h = new ChecksumHasher("crc32c");
  h.update(DATA);
  expect(h.base64()).toBe("sOO8/Q==");
  // A changed trailer value fails the trailer signature; a missing signature or trailer is refused.
  const changed = enc(Buffer.from(TRAILER_BODY).toString("latin1").replace("sOO8/Q==", "sOO8/A=="));
  expect(decode({ ...form, contentLength: changed.length }, changed).error).toBe("SignatureDoesNotMatch");
  const unsignedTrailer = enc(Buffer.from(TRAILER_BODY).toString("latin1").replace(/x-amz-trailer-signature:[0-9a-f]+\r\n/, ""));
  expect(decode({ ...form, contentLength: unsignedTrailer.length }, unsignedTrailer).error).toBe("MalformedTrailerError");
  const noTrailer = enc(Buffer.from(TRAILER_BODY).toString("latin1").replace("x-amz-checksum-crc32c:sOO8/Q==\r\n", ""));
  expect(decode({ ...form, contentLength: noTrailer.length }, noTrailer).error).toBe("MalformedTrailerError");
});

test("unsigned aws-chunked with a trailer (the SDKs' default for streamed uploads)", () => {
  const wire = join("5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n");
  const r = decode({ contentLength: wire.length, aws: { signed: false, trailer: "x-amz-checksum-crc32", signing: null } }, wire, 3);
  expect(new TextDecoder().decode(r.payload)).toBe("hello world");
  expect(r.trailers?.get("x-amz-checksum-crc32")).toBe("DUoRhQ==");
  const h = new ChecksumHasher("crc32");
  h.update(enc("hello "));
  h.update(enc("world"));
  expect(h.base64()).toBe("DUoRhQ==");
  expect(crc32c(enc("123456789"))).toBe(0xe3069283);
  // Cut before the last chunk: incomplete.
  const cut = join("5\r\nhello\r\n");
  expect(decode({ contentLength: cut.length, aws: { signed: false, trailer: null, signing: null } }, cut).error).toBe("IncompleteBody");
  // Signed chunks that carry no signature are refused when signatures are required.
  expect(decode({ contentLength: wire.length, aws: { signed: true, trailer: null, signing: exampleSigning() } }, wire).error).toBe("SignatureDoesNotMatch");
});

test("Transfer-Encoding: chunked: extensions ignored, trailers skipped, the next request left alone", () => {
  const wire = join("4;name=value\r\nWiki\r\n05\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\n\r\nGET / HTTP/1.1\r\n");
  for (const step of [1, 2, 5, wire.length]) {
    const r = decode({ contentLength: null, aws: null }, wire, step);
    expect(new TextDecoder().decode(r.payload)).toBe("Wikipedia in\r\n\r\nchunks.");
    expect(new TextDecoder().decode(wire.subarray(r.taken))).toBe("GET / HTTP/1.1\r\n");
  }
  // aws-chunked inside Transfer-Encoding: chunked (no Content-Length).
  const inner = "5\r\nhello\r\n0\r\n\r\n";
  const outer = join(`${inner.length.toString(16)}\r\n${inner}\r\n0\r\n\r\n`);
  expect(new TextDecoder().decode(decode({ contentLength: null, aws: { signed: false, trailer: null, signing: null } }, outer, 4).payload)).toBe("hello");
});

test("malformed chunked bodies and their bounds are refused", () => {
  const refused = (text: string) => decode({ contentLength: null, aws: null }, enc(text)).error;
  expect(refused("zz\r\nhello\r\n0\r\n\r\n")).toBe("IncompleteBody");
  expect(refused("5\nhello\r\n0\r\n\r\n")).toBe("IncompleteBody"); // a bare LF
  expect(refused("5\r\nhelloXX0\r\n\r\n")).toBe("IncompleteBody"); // data not followed by CRLF
  expect(refused("-5\r\nhello\r\n0\r\n\r\n")).toBe("IncompleteBody");
  expect(refused("fffffffffffffff\r\n")).toBe("IncompleteBody"); // a size past 13 hex digits
  expect(refused(`5;${"x".repeat(5000)}\r\n`)).toBe("IncompleteBody"); // a chunk line past its bound
  expect(refused(`0\r\n${"a: b\r\n".repeat(4000)}\r\n`)).toBe("IncompleteBody"); // trailers past theirs
  expect(refused("5\r\nhel")).toBe("unfinished");
});
