// The S3 store against a real object store (a one-node Swift, scripts/lib/swift.ts: installed when
// missing as root, started on free ports, stopped exactly; and any FSGW_TEST_S3_* endpoint): the
// store itself through Bun's own S3 client (put, stat, range, multipart, missing keys, an outage),
// gateways sharing one namespace, the read cache (hits, misses, staleness after an overwrite
// through another gateway, eviction at its byte bound), the sweep of stale multipart uploads,
// bounded memory for a 256 MiB upload, the store going away mid-upload and coming back, and every
// error text (a store that does not answer, one that refuses, a misconfigured bucket or secret).
// The protocol's conformance suite (test/helpers/conformance.ts) runs through two gateways here too.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { deleteExchange, downloadExchange, existExchange, ServerError, uploadExchange } from "../../src/client/exchanges";
import { WireConn } from "../../src/client/wire-conn";
import { connect as fsgwClient, type ListedPage } from "../../src/client/client";
import { bucketView, describeConformance } from "../helpers/conformance";
import { payload, sha256 } from "../helpers/data";
import { BucketView, gatewayFields, newPrefix, s3Targets, type S3Endpoint } from "../helpers/s3";
import { eventuallyAsync, freePort, startServer, tempDir, type TestServer } from "../helpers/server";

const MiB = 1024 * 1024;

const connect = (server: TestServer) => WireConn.connect({ host: "127.0.0.1", port: server.port });

async function upload(server: TestServer, key: string, body: Uint8Array, digest?: string): Promise<void> {
  const conn = await connect(server);
  try {
    await uploadExchange(conn, key, body.length, (c) => c.write(body), digest);
  } finally {
    conn.close();
  }
}

async function download(server: TestServer, key: string): Promise<Uint8Array> {
  const conn = await connect(server);
  try {
    const parts: Uint8Array[] = [];
    await downloadExchange(conn, key, (p) => void parts.push(p.slice()));
    return Buffer.concat(parts);
  } finally {
    conn.close();
  }
}

/** The error text a server answered, or "ok". */
async function textOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "ok";
  } catch (e) {
    if (e instanceof ServerError) return e.text;
    throw e;
  }
}

async function exist(server: TestServer, key: string) {
  const conn = await connect(server);
  try {
    return await existExchange(conn, key);
  } finally {
    conn.close();
  }
}

async function remove(server: TestServer, key: string): Promise<void> {
  const conn = await connect(server);
  try {
    await deleteExchange(conn, key);
  } finally {
    conn.close();
  }
}

async function storeStats(adminPort: number): Promise<Record<string, number>> {
  const r = await fetch(`http://127.0.0.1:${adminPort}/debug/stats`);
  return ((await r.json()) as { store: Record<string, number> }).store;
}

/** Files in a cache directory's shard directories (the copies). */
function cacheFiles(dir: string): string[] {
  const out: string[] = [];
  for (const d of readdirSync(dir)) {
    if (!statSync(join(dir, d)).isDirectory()) continue;
    for (const f of readdirSync(join(dir, d))) out.push(join(d, f));
  }
  return out;
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m![1]) * 1024;
}


const servers: TestServer[] = [];
async function gateway(s3: S3Endpoint, prefix: string, fields: Record<string, string | number> = {}): Promise<TestServer> {
  const server = await startServer({ ...gatewayFields(s3, prefix), inlineBytesMax: 65536, s3PartBytes: 5 * MiB, ...fields });
  servers.push(server);
  return server;
}
afterAll(async () => {
  for (const s of servers.splice(0)) await s.stop();
});

for (const target of s3Targets()) {
  if (target.skip !== null) {
    test.skip(`S3 store tests on ${target.name} skipped: ${target.skip}`, () => {});
    continue;
  }
  describe(`S3 store on ${target.name}`, () => {
    let s3: S3Endpoint;
    beforeAll(async () => {
      s3 = await target.start();
    }, 180_000);
    afterAll(async () => {
      for (const s of servers.splice(0)) await s.stop();
      await s3?.stop();
    });

    test("the store itself answers Bun's S3 client: put, stat, range, multipart, missing keys; a Swift's outage and return", async () => {
      const prefix = newPrefix("harness");
      const client = new Bun.S3Client({ endpoint: s3.endpoint, region: s3.region, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, bucket: s3.bucket });
      const small = payload(5000, 1);
      await client.write(`${prefix}small.bin`, small);
      expect((await client.stat(`${prefix}small.bin`)).size).toBe(5000);
      expect(sha256(new Uint8Array(await client.file(`${prefix}small.bin`).slice(100, 200).arrayBuffer()))).toBe(sha256(small.subarray(100, 200)));
      // Multipart: 12 MiB in 5 MiB parts.
      const big = payload(12 * MiB, 2);
      const writer = client.file(`${prefix}big.bin`).writer({ partSize: 5 * MiB });
      for (let at = 0; at < big.length; at += MiB) writer.write(big.subarray(at, at + MiB));
      await writer.end();
      expect(sha256(new Uint8Array(await client.file(`${prefix}big.bin`).arrayBuffer()))).toBe(sha256(big));
      const err = await client.file(`${prefix}missing`).text().catch((e) => e);
      expect([err?.name, err?.code]).toEqual(["S3Error", "NoSuchKey"]);
      if (s3.swift !== null) {
        // The store goes away, and comes back (what the outage tests below rely on).
        await s3.swift.stopProxy();
        expect(await client.exists(`${prefix}small.bin`).catch(() => "unreachable")).toBe("unreachable");
        await s3.swift.startProxy();
        expect(await client.exists(`${prefix}small.bin`)).toBe(true);
      }
      await client.delete(`${prefix}small.bin`);
      await client.delete(`${prefix}big.bin`);
      expect(await client.exists(`${prefix}small.bin`)).toBe(false);
    }, 60_000);

    describe("the protocol's conformance suite through two gateways on one namespace", () => {
      // Both up while the suite runs through each; the second with a read cache and two event loops.
      let gateways: TestServer[] = [];
      let bucket: BucketView;
      beforeAll(async () => {
        const prefix = newPrefix("e2e");
        // 32 requests to the store at once: the suite's 100 concurrent clients wait their turn for
        // it (as 200 would for the default 128), at half the requests to a Swift written in Python.
        const fields = { ...gatewayFields(s3, prefix), inlineBytesMax: 65536, ioChunkBytes: 65536, s3ConcurrentRequestsMax: 32 };
        gateways = [await startServer(fields), await startServer({ ...fields, cacheDir: join(tempDir("cache"), "c"), loops: 2 })];
        bucket = new BucketView(s3, prefix);
      }, 60_000);
      afterAll(async () => {
        for (const g of gateways) expect(await g.stop()).toBe(0);
      });
      const through = (i: number) => async () => ({ server: gateways[i]!, view: bucketView(bucket) });
      describeConformance("gateway 1 of 2", { digests: true, onS3: true, concurrentClients: 100 }, through(0), async () => {});
      describeConformance("gateway 2 of 2, with a read cache and 2 event loops", { digests: true, onS3: true, concurrentClients: 100 }, through(1), async () => {});
    });

    test("LIST through ListObjectsV2: order, delimiter, pages; two gateways on one bucket answer identical pages", async () => {
      const prefix = newPrefix("list");
      const a = await gateway(s3, prefix);
      const b = await gateway(s3, prefix, { loops: 2 });
      const keys = ["b", "a", "a/x", "a/b/c", "a/b/d", "ab", "é/1", "z/z/z", "A", "a-b"];
      for (let i = 0; i < 25; i++) keys.push(`many/${String(i).padStart(2, "0")}`);
      for (const [i, k] of keys.entries()) await upload(a, k, payload(1 + i, i));
      const pages = async (server: TestServer, options: { prefix?: string; delimiter?: string; pageKeys?: number }) => {
        const client = fsgwClient({ port: server.port });
        const all: ListedPage[] = [];
        for await (const page of client.list(options)) all.push(page);
        client.close();
        return all;
      };
      const sorted = [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
      const whole = await pages(a, { pageKeys: 7 });
      expect(whole.flatMap((p) => p.entries.map((e) => e.key))).toEqual(sorted);
      expect(whole.flatMap((p) => p.entries.map((e) => e.size))).toEqual(sorted.map((k) => keys.indexOf(k) + 1));
      expect(whole.length).toBe(Math.ceil(keys.length / 7));
      const top = await pages(a, { delimiter: "/", pageKeys: 2 });
      expect(top.flatMap((p) => p.entries.map((e) => e.key))).toEqual(["A", "a", "a-b", "ab", "b"]);
      expect(top.flatMap((p) => p.prefixes)).toEqual(["a/", "many/", "z/", "é/"]);
      // The same requests through the other gateway: the same pages, byte for byte.
      for (const options of [{ pageKeys: 7 }, { delimiter: "/", pageKeys: 2 }, { prefix: "a/", delimiter: "/" }]) {
        const [x, y] = [await pages(a, options), await pages(b, options)];
        expect(JSON.stringify(y)).toBe(JSON.stringify(x));
      }
      for (const k of keys) await remove(b, k);
      expect((await pages(a, {})).flatMap((p) => p.entries)).toEqual([]);
    }, 120_000);

    test("two gateways, one namespace: upload through one; stat, download and delete through the other", async () => {
      const prefix = newPrefix("two");
      const a = await gateway(s3, prefix);
      const b = await gateway(s3, prefix);
      const bodies: [string, Uint8Array, boolean][] = [
        ["small", payload(5000, 1), false],
        ["streamed", payload(1 * MiB + 3, 2), false], // one PUT
        ["multipart", payload(12 * MiB + 5, 3), false], // 3 parts of 5 MiB
        ["multipart-with-digest", payload(11 * MiB, 4), true],
      ];
      for (const [key, body, announce] of bodies) await upload(a, key, body, announce ? sha256(body) : undefined);
      for (const [key, body] of bodies) {
        const stat = await exist(b, key);
        expect(stat.size).toBe(body.length);
        // A multipart upload records its digest only when the client announced it (metadata is
        // fixed when the upload starts); a single PUT always does.
        expect(stat.digest).toBe(key === "multipart" ? undefined : sha256(body));
        expect(sha256(await download(b, key))).toBe(sha256(body));
      }
      // A part cut from a multipart object through the other gateway, across a part boundary.
      const conn = await connect(b);
      const parts: Uint8Array[] = [];
      await downloadExchange(conn, "multipart", (p) => void parts.push(p.slice()), undefined, { offset: 5 * MiB - 10, length: 20 });
      conn.close();
      expect(sha256(Buffer.concat(parts))).toBe(sha256(bodies[2]![1].subarray(5 * MiB - 10, 5 * MiB + 10)));
      for (const [key] of bodies) await remove(b, key);
      for (const [key] of bodies) {
        expect(await textOf(exist(a, key))).toBe("no such key");
        expect(await textOf(download(a, key))).toBe("no such key");
        expect(await textOf(remove(a, key))).toBe("no such key");
      }
      const view = new BucketView(s3, prefix);
      expect(await view.keys()).toEqual([]);
      expect(await view.multipartUploads()).toEqual([]);
    }, 120_000);

    test("a body whose digest is not the announced one stores nothing, in one PUT or in parts", async () => {
      const prefix = newPrefix("digest");
      const a = await gateway(s3, prefix);
      const view = new BucketView(s3, prefix);
      for (const [key, size] of [["small", 5000], ["streamed", 300_000], ["multipart", 11 * MiB]] as const) {
        const body = payload(size, 7);
        expect(await textOf(upload(a, key, body, sha256(payload(size, 8))))).toBe("digest mismatch");
      }
      expect(await view.keys()).toEqual([]);
      await eventuallyAsync(async () => (await view.multipartUploads()).length === 0, 10_000, "the multipart upload aborted");
    }, 60_000);

    test("read cache: hits and misses, staleness after an overwrite through another gateway, at once with cacheFreshMs 0", async () => {
      const prefix = newPrefix("cache");
      const writer = await gateway(s3, prefix);
      const freshAdmin = freePort();
      // One event loop each: a read cache is per loop (its hits and misses are counted here).
      const fresh = await gateway(s3, prefix, { cacheDir: join(tempDir("cache"), "c"), cacheFreshMs: 0, adminPort: freshAdmin, loops: 1 });
      // Within cacheFreshMs a gateway serves its copy without asking the store: one whose window
      // outlasts the test shows that (always stale here), one with a short window shows its end.
      const laggingAdmin = freePort();
      const lagging = await gateway(s3, prefix, { cacheDir: join(tempDir("cache"), "c"), cacheFreshMs: 600_000, adminPort: laggingAdmin, loops: 1 });
      const briefAdmin = freePort();
      const brief = await gateway(s3, prefix, { cacheDir: join(tempDir("cache"), "c"), cacheFreshMs: 300, adminPort: briefAdmin, loops: 1 });
      const v1 = payload(200_000, 11);
      const v2 = payload(150_000, 12);
      await upload(writer, "k", v1);
      expect(sha256(await download(fresh, "k"))).toBe(sha256(v1)); // miss: filled
      // The copy enters the table once written (just after the body reached the client).
      await eventuallyAsync(async () => (await storeStats(freshAdmin)).cacheEntries === 1, 5000, "the copy filled");
      expect(sha256(await download(fresh, "k"))).toBe(sha256(v1)); // hit, after a HEAD
      for (const [g, port] of [[lagging, laggingAdmin], [brief, briefAdmin]] as const) {
        expect(sha256(await download(g, "k"))).toBe(sha256(v1));
        await eventuallyAsync(async () => (await storeStats(port)).cacheEntries === 1, 5000, "the lagging copy filled");
      }
      const before = await storeStats(freshAdmin);
      expect([before.cacheMisses, before.cacheHits, before.cacheEntries]).toEqual([1, 1, 1]);

      await upload(writer, "k", v2); // overwritten through another gateway
      expect(sha256(await download(fresh, "k"))).toBe(sha256(v2)); // the HEAD saw a new ETag
      expect(sha256(await download(lagging, "k"))).toBe(sha256(v1)); // within its window: documented, and bounded
      // Past its window a gateway asks the store again, and serves the new version.
      await eventuallyAsync(async () => sha256(await download(brief, "k")) === sha256(v2), 10_000, "the brief window's end");

      // Deleted through another gateway: gone at once without a window, once the window ends with one.
      await remove(writer, "k");
      expect(await textOf(download(fresh, "k"))).toBe("no such key");
      await eventuallyAsync(async () => (await textOf(download(brief, "k"))) === "no such key", 10_000, "the deletion seen past the window");
      const after = await storeStats(freshAdmin);
      expect(after.cacheEntries).toBe(0);
    }, 60_000);

    test("read cache: eviction at cacheBytesMax, least recently used first; a copy removed by hand falls back to the store", async () => {
      const prefix = newPrefix("evict");
      const writer = await gateway(s3, prefix);
      const admin = freePort();
      const cacheDir = join(tempDir("cache"), "c");
      // One event loop: the cache's bounds are shared out between loops, and this counts one cache.
      const cached = await gateway(s3, prefix, { cacheDir, cacheBytesMax: 250_000, cacheFreshMs: 60_000, adminPort: admin, loops: 1 });
      const bodies = [1, 2, 3].map((i) => payload(100_000, 20 + i));
      for (let i = 0; i < 3; i++) await upload(writer, `k${i}`, bodies[i]!);
      const get = async (i: number) => expect(sha256(await download(cached, `k${i}`))).toBe(sha256(bodies[i]!));
      // A miss's copy enters the table once written, just after the body reached the client.
      const settled = (what: string, check: (s: Record<string, number>) => boolean) => eventuallyAsync(async () => check(await storeStats(admin)), 5000, what);
      await get(0); // miss
      await settled("k0 copied", (s) => s.cacheEntries === 1);
      await get(1); // miss
      await settled("k1 copied", (s) => s.cacheEntries === 2);
      await get(0); // hit: k0 is now the most recently used
      await get(2); // miss: 300,000 bytes > 250,000, so k1 (least recently used) goes
      await settled("k2 copied", (s) => s.cacheEvictions === 1);
      let stats = await storeStats(admin);
      expect([stats.cacheMisses, stats.cacheHits, stats.cacheEvictions, stats.cacheEntries, stats.cacheBytes]).toEqual([3, 1, 1, 2, 200_000]);
      await get(0); // still a hit
      await get(1); // a miss again
      await settled("k1 copied again", (s) => s.cacheEvictions === 2);
      stats = await storeStats(admin);
      expect([stats.cacheMisses, stats.cacheHits, stats.cacheEntries]).toEqual([4, 2, 2]);
      // The one loop's copies are in its own directory of the cache.
      const copies = join(cacheDir, "loop-0");
      await eventuallyAsync(async () => cacheFiles(copies).length === 2, 5000, "evicted copies removed from disk");
      // Copies removed behind the gateway's back: served from the store, never "no such key".
      for (const f of cacheFiles(copies)) rmSync(join(copies, f));
      await get(0);
      await get(1);
    }, 60_000);

    test("the start-up sweep aborts stale multipart uploads under the prefix and keeps young ones", async () => {
      const prefix = newPrefix("sweep");
      const view = new BucketView(s3, prefix);
      await view.leaveMultipartUpload("crashed-1");
      await view.leaveMultipartUpload("crashed-2");
      // Stores round Initiated to the second (Swift rounds it up): ages here are whole seconds apart.
      await Bun.sleep(4000);
      const young = await view.leaveMultipartUpload("in-progress-elsewhere");
      const g = await gateway(s3, prefix, { s3StaleUploadMs: 2500 });
      expect(g.lines.find((l) => l.includes("event=store_ready"))).toContain("staleUploadsAborted=2");
      expect(await view.multipartUploads()).toEqual([`${prefix}in-progress-elsewhere ${young}`]);
      await view.abortMultipartUpload("in-progress-elsewhere", young);
    }, 60_000);

    test("a 256 MiB upload streams in parts with bounded server memory; SHA-256 equal both ways", async () => {
      const prefix = newPrefix("big");
      const g = await gateway(s3, prefix, { s3PartBytes: 8 * MiB });
      const conn = await connect(g);
      const pieces = Array.from({ length: 8 }, (_, i) => payload(MiB, i));
      // Warm up: a multipart upload allocates the server's steady-state buffers.
      await uploadExchange(conn, "warmup", 32 * MiB, async (c) => {
        for (let i = 0; i < 32; i++) await c.write(pieces[i % 8]!);
      });
      Bun.gc(true);
      await Bun.sleep(200);
      const baseline = rssBytes(g.pid);
      let peak = baseline;
      const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(g.pid))), 20);
      const sent = createHash("sha256");
      await uploadExchange(conn, "big", 256 * MiB, async (c) => {
        for (let i = 0; i < 256; i++) {
          sent.update(pieces[i % 8]!);
          await c.write(pieces[i % 8]!);
        }
      });
      clearInterval(sampler);
      const growth = peak - baseline;
      expect(growth).toBeLessThan(64 * MiB); // the file store's bound (test/server/large-upload.test.ts)
      const got = createHash("sha256");
      expect(await downloadExchange(conn, "big", (p) => void got.update(p))).toBe(256 * MiB);
      expect(got.digest("hex")).toBe(sent.digest("hex"));
      await deleteExchange(conn, "big");
      await deleteExchange(conn, "warmup");
      conn.close();
    }, 180_000);

    const outage = target.name === "Swift" ? test : test.skip;
    outage("the store going away: 'store unavailable' for every exchange, mid-upload too; no multipart upload left; recovery when it returns", async () => {
      const swift = s3.swift!;
      const prefix = newPrefix("outage");
      const view = new BucketView(s3, prefix);
      const g = await gateway(s3, prefix, { s3TimeoutMs: 5000 });
      await upload(g, "there", payload(1000, 1));
      // Mid-upload: two parts stored, then the proxy stops; the rest of the body is sent.
      const body = payload(30 * MiB, 2);
      const conn = await connect(g);
      const cut = uploadExchange(conn, "cut", body.length, async (c) => {
        await c.write(body.subarray(0, 12 * MiB));
        await eventuallyAsync(async () => (await view.multipartUploads()).length === 1, 10_000, "the multipart upload started");
        await Bun.sleep(300);
        await swift.stopProxy();
        await c.write(body.subarray(12 * MiB));
      });
      expect(await textOf(cut)).toBe("store unavailable");
      conn.close();
      expect(await textOf(exist(g, "there"))).toBe("store unavailable");
      expect(await textOf(download(g, "there"))).toBe("store unavailable");
      expect(await textOf(upload(g, "new", payload(100, 3)))).toBe("store unavailable");
      expect(await textOf(remove(g, "there"))).toBe("store unavailable");
      await swift.startProxy();
      expect((await exist(g, "there")).size).toBe(1000);
      await upload(g, "new", payload(100, 3));
      expect(await view.keys()).toEqual(["new", "there"]);
      // The abort the store did not hear is sent again (every 5 s) once it answers.
      await eventuallyAsync(async () => (await view.multipartUploads()).length === 0, 20_000, "the cut upload aborted after the store came back");
    }, 120_000);

    test("a wrong secret or a missing bucket stops the start with a clear message", async () => {
      const wrongSecret = startServer({ ...gatewayFields(s3, newPrefix("x")), s3SecretAccessKey: "not-the-secret" });
      expect(await wrongSecret.then(() => "started", (e: Error) => e.message)).toMatch(/event=start_failed .*HTTP 403/);
      const noBucket = startServer({ ...gatewayFields(s3, newPrefix("x")), s3Bucket: "no-such-bucket-fsgw" });
      expect(await noBucket.then(() => "started", (e: Error) => e.message)).toMatch(/event=start_failed .*NoSuchBucket/);
    }, 60_000);
  });
}

describe("S3 store error texts from stores that misbehave (local HTTP servers)", () => {
  test("a store that never answers: 'store timeout'; one that refuses: 'permission denied'; one that fails: 'store unavailable'", async () => {
    // Accepts connections, never answers.
    const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    // Lists the bucket, refuses every object.
    const refusing = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (req) => (new URL(req.url).pathname === "/b" ? new Response("<ListBucketResult></ListBucketResult>") : new Response("<Error><Code>AccessDenied</Code><Message>no</Message></Error>", { status: 403 })),
    });
    const failing = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("<Error><Code>InternalError</Code></Error>", { status: 500 }) });
    try {
      const base = { store: "s3", s3Bucket: "b", s3AccessKeyId: "k", s3SecretAccessKey: "s", s3TimeoutMs: 300 };
      const cases: [string, string][] = [
        [`http://127.0.0.1:${silent.port}`, "store timeout"],
        [`http://127.0.0.1:${refusing.port}`, "permission denied"],
        [`http://127.0.0.1:${failing.port}`, "store unavailable"],
      ];
      for (const [endpoint, text] of cases) {
        const g = await startServer({ ...base, s3Endpoint: endpoint });
        servers.push(g);
        expect([endpoint, await textOf(exist(g, "k"))]).toEqual([endpoint, text]);
        expect([endpoint, await textOf(download(g, "k"))]).toEqual([endpoint, text]);
        expect([endpoint, await textOf(upload(g, "k", payload(10, 1)))]).toEqual([endpoint, text]);
        expect([endpoint, await textOf(upload(g, "k", payload(300_000, 1)))]).toEqual([endpoint, text]);
        expect([endpoint, await textOf(remove(g, "k"))]).toEqual([endpoint, text]);
        // Still serving: the connection and the process are fine.
        expect(g.proc.exitCode).toBeNull();
      }
    } finally {
      silent.stop(true);
      refusing.stop(true);
      failing.stop(true);
    }
  }, 60_000);
});
