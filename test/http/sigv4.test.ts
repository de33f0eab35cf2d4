// AWS Signature V4 (src/http/sigv4.ts): AWS's own documented example verifies, and a changed byte,
// header or clock does not; against a real server with auth "token": access keys from
// createAccessKey (`fsgw token create --s3`) through Bun's S3 client and presigned URLs, refusals
// (a wrong secret, a forged scope, an expired key, a key outside the scope, a request too old), and a
// signed payload whose body does not match stores nothing.
import { afterEach, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Access, createAccessKey, newSecret, scopeOfAccessKey } from "../../src/auth/token";
import { canonicalRequest, parseSigV4, signatureOf, SigV4Error, uriEncode, verifySigV4 } from "../../src/http/sigv4";
import type { RequestHead } from "../../src/http/request-head";
import { payload, sha256 } from "../helpers/data";
import { freePort, startServer, tempDir, type TestServer } from "../helpers/server";

let server: TestServer | null = null;
afterEach(async () => {
  await server?.stop();
  server = null;
});

// "Example: GET Object" of Amazon S3's "Signature Calculations for the Authorization Header".
const EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
function exampleHead(overrides: Record<string, string> = {}): RequestHead {
  const headers = new Map<string, string>(
    Object.entries({
      host: "examplebucket.s3.amazonaws.com",
      range: "bytes=0-9",
      "x-amz-content-sha256": EMPTY_SHA256,
      "x-amz-date": "20130524T000000Z",
      authorization:
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
      ...overrides,
    }),
  );
  return { method: "GET", path: "/test.txt", query: "", headers, keepAlive: true, contentLength: null, chunked: false } as unknown as RequestHead;
}

const errorCode = (f: () => void) => {
  try {
    f();
    return "verified";
  } catch (e) {
    return e instanceof SigV4Error ? e.code : String(e);
  }
};

test("AWS's documented example verifies; a changed header, secret or clock does not", () => {
  const at = Date.UTC(2013, 4, 24);
  const check = (head: RequestHead, secret = EXAMPLE_SECRET, now = at) => errorCode(() => verifySigV4(head, new URLSearchParams(), parseSigV4(head, new URLSearchParams())!, [secret], now));
  expect(check(exampleHead())).toBe("verified");
  expect(check(exampleHead({ range: "bytes=0-10" }))).toBe("SignatureDoesNotMatch");
  expect(check(exampleHead(), "another secret")).toBe("SignatureDoesNotMatch");
  // Any of the accepted secrets (a rotation) will do.
  expect(errorCode(() => verifySigV4(exampleHead(), new URLSearchParams(), parseSigV4(exampleHead(), new URLSearchParams())!, ["old", EXAMPLE_SECRET], at))).toBe("verified");
  expect(check(exampleHead(), EXAMPLE_SECRET, at + 16 * 60_000)).toBe("RequestTimeTooSkewed");
  expect(errorCode(() => parseSigV4(exampleHead({ authorization: "AWS4-HMAC-SHA256 Credential=x" }), new URLSearchParams()))).toBe("AuthorizationHeaderMalformed");
});

test("an access key id carries its scope; one spelling only", () => {
  const secret = new TextEncoder().encode(newSecret());
  const keys = createAccessKey(secret, { id: "k", access: Access.READ, prefix: "p/", expiresAtMs: 2_000_000_000_000 });
  expect(scopeOfAccessKey(keys.accessKeyId)).toEqual({ id: "k", access: Access.READ, prefix: "p/", expiresAtMs: 2_000_000_000_000 });
  expect(scopeOfAccessKey(keys.accessKeyId + "A")).toBeNull();
  expect(scopeOfAccessKey("AKIAIOSFODNN7EXAMPLE")).toBeNull();
});

async function signedServer() {
  const dir = tempDir("sigv4");
  const secret = newSecret();
  writeFileSync(join(dir, "secret"), secret);
  const httpPort = freePort();
  server = await startServer({ httpPort, auth: "token", authSecretFile: join(dir, "secret") });
  const endpoint = `http://127.0.0.1:${httpPort}`;
  const mint = (access: number, prefix = "", ttlMs = 60_000) => createAccessKey(new TextEncoder().encode(secret), { id: "t", access, prefix, expiresAtMs: Date.now() + ttlMs });
  const client = (keys: { accessKeyId: string; secretAccessKey: string }) => new Bun.S3Client({ endpoint, bucket: "fsgw", region: "us-east-1", ...keys });
  return { endpoint, mint, client };
}

const s3Code = async (p: Promise<unknown>) => {
  try {
    await p;
    return "ok";
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
};

test("with auth token: an access key pair works within its scope, and is refused outside it, forged, expired or with a wrong secret", async () => {
  const { endpoint, mint, client } = await signedServer();
  const all = mint(Access.READ | Access.WRITE | Access.DELETE, "team/");
  const body = payload(200_000, 1);
  await client(all).write("team/a.bin", body);
  expect(sha256(new Uint8Array(await client(all).file("team/a.bin").arrayBuffer()))).toBe(sha256(body));
  expect(await s3Code(client(all).write("other/a.bin", "x"))).toBe("AccessDenied");
  expect(await s3Code(client(mint(Access.READ, "team/")).write("team/b.bin", "x"))).toBe("AccessDenied");
  expect(await s3Code(client({ ...all, secretAccessKey: all.secretAccessKey.slice(1) + "A" }).file("team/a.bin").text())).toBe("SignatureDoesNotMatch");
  // A scope widened by hand is another id, whose secret nobody has.
  const widened = createAccessKey(new TextEncoder().encode(newSecret()), { id: "t", access: Access.READ, prefix: "", expiresAtMs: Date.now() + 60_000 });
  expect(await s3Code(client({ accessKeyId: widened.accessKeyId, secretAccessKey: all.secretAccessKey }).file("team/a.bin").text())).toBe("SignatureDoesNotMatch");
  expect(await s3Code(client({ accessKeyId: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "x" }).file("team/a.bin").text())).toBe("InvalidAccessKeyId");
  expect(await s3Code(client(mint(Access.READ, "", -1000)).file("team/a.bin").text())).toBe("AccessDenied");
  // Nothing signed: refused, with the way in named.
  const anonymous = await fetch(`${endpoint}/fsgw/team/a.bin`);
  expect(anonymous.status).toBe(403);
  expect(await anonymous.text()).toContain("fsgw token create --s3");
});

test("presigned URLs: a GET and a PUT by plain fetch, refused once expired or altered", async () => {
  const { endpoint, mint, client } = await signedServer();
  const s3 = client(mint(Access.READ | Access.WRITE));
  const body = payload(50_000, 2);
  const put = s3.presign("up/file.bin", { method: "PUT", expiresIn: 60 });
  expect((await fetch(put, { method: "PUT", body })).status).toBe(200);
  const get = s3.presign("up/file.bin", { expiresIn: 60 });
  const res = await fetch(get);
  expect(res.status).toBe(200);
  expect(sha256(new Uint8Array(await res.arrayBuffer()))).toBe(sha256(body));
  const altered = get.replace("up/file.bin", "up/other.bin");
  expect((await fetch(altered)).status).toBe(403);
  const old = new URL(get);
  old.searchParams.set("X-Amz-Date", "20200101T000000Z");
  expect(await (await fetch(old)).text()).toContain("<Code>");
  expect(endpoint).toStartWith("http://127.0.0.1:");
});

/** A request signed in the Authorization header (as the AWS CLI signs), claiming `claimedSha256` for its body. */
async function signedFetch(endpoint: string, keys: { accessKeyId: string; secretAccessKey: string }, method: string, path: string, query: string, body: Uint8Array, claimedSha256: string): Promise<Response> {
  const amzDate = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  const host = new URL(endpoint).host;
  const headers = new Map<string, string>([["host", host], ["x-amz-content-sha256", claimedSha256], ["x-amz-date", amzDate]]);
  const sig = { accessKeyId: keys.accessKeyId, date: amzDate.slice(0, 8), region: "us-east-1", service: "s3", amzDate, signedHeaders: ["host", "x-amz-content-sha256", "x-amz-date"], signature: "", payloadHash: claimedSha256, presigned: false, expiresSeconds: 0 };
  const head = { method, path, query, headers } as unknown as RequestHead;
  const canonical = canonicalRequest(head, new URLSearchParams(query), sig);
  const toSign = `AWS4-HMAC-SHA256\n${amzDate}\n${sig.date}/us-east-1/s3/aws4_request\n${sha256(new TextEncoder().encode(canonical))}`;
  const signature = signatureOf(keys.secretAccessKey, sig.date, "us-east-1", "s3", toSign);
  const authorization = `AWS4-HMAC-SHA256 Credential=${keys.accessKeyId}/${sig.date}/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=${signature}`;
  return fetch(`${endpoint}${path}${query === "" ? "" : `?${query}`}`, { method, body: body.length > 0 ? body : undefined, headers: { "x-amz-content-sha256": claimedSha256, "x-amz-date": amzDate, authorization } });
}

test("a signed payload (x-amz-content-sha256) whose body differs is refused and stores nothing, for an object and for a part", async () => {
  const { endpoint, mint, client } = await signedServer();
  const keys = mint(Access.READ | Access.WRITE);
  const good = payload(1000, 3);
  const bad = payload(1000, 4);
  expect((await signedFetch(endpoint, keys, "PUT", "/fsgw/sp/ok", "", good, sha256(good))).status).toBe(200);
  const res = await signedFetch(endpoint, keys, "PUT", "/fsgw/sp/obj", "", bad, sha256(good));
  expect(res.status).toBe(400);
  expect(await res.text()).toContain("XAmzContentSHA256Mismatch");
  expect(await s3Code(client(keys).file("sp/obj").text())).toBe("NoSuchKey");
  const created = await signedFetch(endpoint, keys, "POST", "/fsgw/sp/multi", "uploads=", new Uint8Array(0), sha256(new Uint8Array(0)));
  const id = /<UploadId>(\w+)<\/UploadId>/.exec(await created.text())![1]!;
  const part = await signedFetch(endpoint, keys, "PUT", "/fsgw/sp/multi", `partNumber=1&uploadId=${id}`, bad, sha256(good));
  expect(part.status).toBe(400);
  expect(await part.text()).toContain("XAmzContentSHA256Mismatch");
  const parts = await signedFetch(endpoint, keys, "GET", "/fsgw/sp/multi", `uploadId=${id}`, new Uint8Array(0), sha256(new Uint8Array(0)));
  expect(await parts.text()).not.toContain("<Part>");
});

test("SigV4's URI encoding: unreserved bytes kept, every other byte %XX in upper case, '/' kept only in a path", () => {
  expect(uriEncode("AZaz09-._~", true)).toBe("AZaz09-._~");
  expect(uriEncode("a b/c!'()*~+=&?#%", true)).toBe("a%20b%2Fc%21%27%28%29%2A~%2B%3D%26%3F%23%25");
  expect(uriEncode("a b/c!'()*", false)).toBe("a%20b/c%21%27%28%29%2A");
  expect(uriEncode("é€😀", true)).toBe("%C3%A9%E2%82%AC%F0%9F%98%80");
  expect(uriEncode("test:tester/20130524", true)).toBe("test%3Atester%2F20130524");
  expect(uriEncode("x\ud800y", true)).toBe("x%EF%BF%BDy"); // a lone surrogate, as TextEncoder writes it
});
