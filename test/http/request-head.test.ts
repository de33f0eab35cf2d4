// Proves the HTTP/1.1 request-head parser (src/http/request-head.ts): what it takes, what it needs
// more bytes for, and each refusal that keeps a request from being read two ways (smuggling).
import { describe, expect, test } from "bun:test";
import { parseRequestHead, type HeadResult } from "../../src/http/request-head";

const bytes = (text: string) => Buffer.from(text, "latin1");
const parse = (text: string, max = 8192): HeadResult => parseRequestHead(bytes(text), max);
const status = (text: string, max?: number) => {
  const r = parse(text, max);
  return r !== null && "error" in r ? r.error.status : r === null ? "more" : "ok";
};

describe("request heads", () => {
  test("a GET: method, target split into path and query, headers by lower-case name, keep-alive", () => {
    const text = "GET /fsgw/photos%2Fa.jpg?list-type=2&prefix=a HTTP/1.1\r\nHost: x:9000\r\nX-Amz-Date: 20261204T000000Z\r\nAccept: a\r\naccept: b\r\n\r\nNEXT";
    const r = parse(text);
    if (r === null || "error" in r) throw new Error(JSON.stringify(r));
    expect(r.bytes).toBe(text.length - 4);
    expect(r.head).toMatchObject({ method: "GET", path: "/fsgw/photos%2Fa.jpg", query: "list-type=2&prefix=a", version: "1.1", contentLength: null, chunked: false, keepAlive: true });
    expect(r.head.headers.get("x-amz-date")).toBe("20261204T000000Z");
    expect(r.head.headers.get("accept")).toBe("a, b");
  });

  test("bodies: Content-Length, agreeing repeats, chunked; connection close and HTTP/1.0", () => {
    const cl = parse("PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
    expect(cl !== null && "head" in cl && cl.head.contentLength).toBe(5);
    const chunked = parse("PUT /b/k HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n");
    expect(chunked !== null && "head" in chunked && [chunked.head.chunked, chunked.head.keepAlive]).toEqual([true, false]);
    const old = parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    expect(old !== null && "head" in old && [old.head.version, old.head.keepAlive]).toEqual(["1.0", true]);
  });

  test("an incomplete head asks for more, until it is too long", () => {
    expect(status("GET / HTTP/1.1\r\nHost: h\r\n")).toBe("more");
    expect(status("GET / HTTP/1.1\r\nHost: h\r\nX: " + "y".repeat(100), 64)).toBe(431);
    expect(status("GET / HTTP/1.1\r\nHost: h\r\n\r\n", 64)).toBe("ok");
  });

  test("refusals: each ambiguity is a 400 (or 501/505), never a guess", () => {
    const cases: [string, number][] = [
      ["GET / HTTP/1.1\r\n\r\n", 400], // no Host
      ["GET / HTTP/1.1\nHost: h\n\n\r\n\r\n", 400], // bare LF
      ["GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", 400],
      ["G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400],
      ["GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505],
      ["GET / HTTPS/1.1\r\nHost: h\r\n\r\n", 400],
      ["GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n", 400],
      ["GET / HTTP/1.1\r\nHost h\r\n\r\n", 400],
      ["GET / HTTP/1.1\r\nBad Name: v\r\nHost: h\r\n\r\n", 400],
      ["GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n", 400],
      ["PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400],
      ["PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n", 400],
      ["PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400],
      ["PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400],
      ["PUT / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501],
    ];
    for (const [text, want] of cases) expect([JSON.stringify(text), status(text) as string | number]).toEqual([JSON.stringify(text), want]);
  });
});
