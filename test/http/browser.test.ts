// A web page in a real browser (Debian's Chromium, headless) uploading and downloading through
// presigned URLs across origins: the page is served from one origin, the gateway is another, so
// every request is CORS (a preflight for the PUT, then the request; the ETag readable only because
// it is exposed). From an origin httpCorsOrigins does not list, the browser itself refuses and
// nothing is stored. Installed from Debian by the test as the S3 clients are; skipped with the
// reason when it cannot be. The browser also renders a prefix's listing page.
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Access, createAccessKey, newSecret } from "../../src/auth/token";
import { ensurePackages } from "../../scripts/lib/debian";
import { canonicalRequest, signatureOf } from "../../src/http/sigv4";
import type { RequestHead } from "../../src/http/request-head";
import { freePort, startServer, tempDir, type TestServer } from "../helpers/server";

const missing = ensurePackages(["chromium"], ["chromium"]);
if (missing !== null) test.skip(`the browser test is skipped: ${missing}`, () => {});

let server: TestServer | null = null;
const pages: { stop(force?: boolean): unknown }[] = [];
afterEach(async () => {
  for (const p of pages.splice(0)) p.stop(true);
  await server?.stop();
  server = null;
});

/** The page's body, made the same way in the page and here: 1 MiB and a little, not a round size. */
const SIZE = 1024 * 1024 + 123;
function pageBytes(): Uint8Array {
  const data = new Uint8Array(SIZE);
  for (let i = 0; i < SIZE; i++) data[i] = (i * 31 + 7) & 255;
  return data;
}

interface PageResult {
  put?: number;
  putEtag?: string | null;
  get?: number;
  length?: number;
  sha256?: string;
  unsigned?: number;
  error?: string;
}

/**
 * Serves a page on `port` (0: any; its own origin) whose script PUTs the bytes to `putUrl`, GETs
 * `getUrl`, tries `unsignedUrl`, and posts what it saw back; opens it in headless Chromium and
 * returns that, then closes the browser.
 */
async function runPage(port: number, putUrl: string, getUrl: string, unsignedUrl: string): Promise<PageResult> {
  let report!: (r: PageResult) => void;
  const reported = new Promise<PageResult>((r) => (report = r));
  const script = `
    const data = new Uint8Array(${SIZE});
    for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) & 255;
    const hex = (b) => [...new Uint8Array(b)].map((x) => x.toString(16).padStart(2, "0")).join("");
    (async () => {
      const r = {};
      try {
        const put = await fetch(${JSON.stringify(putUrl)}, { method: "PUT", body: data });
        r.put = put.status;
        r.putEtag = put.headers.get("ETag");
        const get = await fetch(${JSON.stringify(getUrl)});
        r.get = get.status;
        const body = await get.arrayBuffer();
        r.length = body.byteLength;
        r.sha256 = hex(await crypto.subtle.digest("SHA-256", body));
        r.unsigned = (await fetch(${JSON.stringify(unsignedUrl)})).status;
      } catch (e) {
        r.error = String(e);
      }
      await fetch("/result", { method: "POST", body: JSON.stringify(r) });
    })();`;
  const page = Bun.serve({
    hostname: "127.0.0.1",
    port,
    fetch: async (req) => {
      if (new URL(req.url).pathname === "/result") {
        report((await req.json()) as PageResult);
        return new Response("ok");
      }
      return new Response(`<!doctype html><html><body><script>${script}</script></body></html>`, { headers: { "content-type": "text/html" } });
    },
  });
  pages.push(page);
  return openInChromium(`http://127.0.0.1:${page.port}/`, reported);
}

async function openInChromium(url: string, reported: Promise<PageResult>): Promise<PageResult> {
  const profile = mkdtempSync(join(tmpdir(), "fsgw-chromium-"));
  // As root Chromium needs --no-sandbox; the rest keeps a headless run from touching anything else.
  const browser = Bun.spawn(["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check", "--disable-extensions", `--user-data-dir=${profile}`, url], { stdout: "ignore", stderr: "pipe" });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([reported, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error("the page did not report within 45 s")), 45_000)))]);
  } finally {
    clearTimeout(timer);
    browser.kill();
    await browser.exited;
    Bun.spawnSync(["rm", "-rf", profile]);
  }
}

describe.skipIf(missing !== null)("headless Chromium", () => {
  test("a page on another origin PUTs and GETs through presigned URLs (CORS); from an origin not allowed the browser refuses and nothing is stored", async () => {
    const dir = tempDir("browser");
    const secret = newSecret();
    writeFileSync(join(dir, "secret"), secret);
    // Two page origins are known before the gateway starts: their ports are chosen here.
    const allowedPort = freePort();
    const httpPort = freePort();
    server = await startServer({ httpPort, auth: "token", authSecretFile: join(dir, "secret"), httpCorsOrigins: `http://127.0.0.1:${allowedPort}` });
    const endpoint = `http://127.0.0.1:${httpPort}`;
    const keys = createAccessKey(new TextEncoder().encode(secret), { id: "browser", access: Access.READ | Access.WRITE, prefix: "web/", expiresAtMs: Date.now() + 600_000 });
    const client = new Bun.S3Client({ endpoint, bucket: "fsgw", region: "us-east-1", ...keys });
    const expected = pageBytes();
    const sha256 = new Bun.CryptoHasher("sha256").update(expected).digest("hex");
    const md5 = new Bun.CryptoHasher("md5").update(expected).digest("hex");

    // The allowed origin: its page is served from allowedPort.
    const put = client.presign("web/from-page.bin", { method: "PUT", expiresIn: 600 });
    const get = client.presign("web/from-page.bin", { method: "GET", expiresIn: 600 });
    const allowed = await runPage(allowedPort, put, get, `${endpoint}/fsgw/web/from-page.bin`);
    expect(allowed.error).toBeUndefined();
    expect(allowed.put).toBe(200);
    expect(allowed.putEtag).toBe(`"${md5}"`);
    expect(allowed.get).toBe(200);
    expect(allowed.length).toBe(SIZE);
    expect(allowed.sha256).toBe(sha256);
    expect(allowed.unsigned).toBe(403); // readable by the page: errors carry the CORS headers too
    expect(new Bun.CryptoHasher("sha256").update(await client.file("web/from-page.bin").arrayBuffer()).digest("hex")).toBe(sha256);

    // The listing page of the prefix, rendered by the browser (a presigned URL: auth is on).
    const listing = Bun.spawnSync(["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", `--user-data-dir=${mkdtempSync(join(tmpdir(), "fsgw-chromium-"))}`, "--dump-dom", presignPrefix(endpoint, keys, "/fsgw/web/")], { stdout: "pipe", stderr: "ignore", timeout: 45_000 });
    expect(listing.stdout.toString()).toContain('<a href="/fsgw/web/from-page.bin">from-page.bin</a>');
    expect(listing.stdout.toString()).toContain(`${SIZE}`);

    // Another origin: the preflight is refused, so the browser never sends the PUT.
    const put2 = client.presign("web/not-allowed.bin", { method: "PUT", expiresIn: 600 });
    const refused = await runPage(0, put2, get, `${endpoint}/fsgw/web/x`);
    expect(refused.error).toContain("TypeError");
    expect(await client.file("web/not-allowed.bin").exists()).toBe(false);
  }, 120_000);
});

/**
 * A presigned GET of a path that ends with '/' (a prefix's listing page): S3 SDKs drop the slash
 * of a "key", so this one is signed here, as SigV4's query form has it.
 */
function presignPrefix(endpoint: string, keys: { accessKeyId: string; secretAccessKey: string }, path: string): string {
  const amzDate = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  const date = amzDate.slice(0, 8);
  const scope = `${date}/us-east-1/s3/aws4_request`;
  const query = new URLSearchParams({ "X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Credential": `${keys.accessKeyId}/${scope}`, "X-Amz-Date": amzDate, "X-Amz-Expires": "600", "X-Amz-SignedHeaders": "host" });
  const head = { method: "GET", path, query: query.toString(), headers: new Map([["host", new URL(endpoint).host]]) } as unknown as RequestHead;
  const sig = { accessKeyId: keys.accessKeyId, date, region: "us-east-1", service: "s3", amzDate, signedHeaders: ["host"], signature: "", payloadHash: "UNSIGNED-PAYLOAD", presigned: true, expiresSeconds: 600 };
  const toSign = `AWS4-HMAC-SHA256\n${amzDate}\n${scope}\n${new Bun.CryptoHasher("sha256").update(canonicalRequest(head, query, sig)).digest("hex")}`;
  query.set("X-Amz-Signature", signatureOf(keys.secretAccessKey, date, "us-east-1", "s3", toSign));
  return `${endpoint}${path}?${query}`;
}
