// The protocol's conformance suite, run against one server per describe: every exchange end to end
// against a real server process (bytes in any split, many concurrent clients, ranges, keys with '/',
// bad keys, disconnects mid-body, frames of another shape, protocol violations), each checked
// against what the store holds, seen from outside the gateway (a data directory, or a bucket).
// test/server/e2e.test.ts runs it on every engine and path of the file store, and over TLS with
// tokens; test/storage/s3-store.test.ts through two S3 gateways on one namespace of its Swift.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { NetFsProtocolProtoSchema } from "../../src/gen/netfs_pb";
import { benchExchange, deleteExchange, downloadExchange, existExchange, ServerError, uploadExchange } from "../../src/client/exchanges";
import { WireConn, type ClientTls } from "../../src/client/wire-conn";
import { protobufCodec } from "../../src/protocol/codec";
import { frameOf } from "../../src/protocol/frame-decoder";
import { Op } from "../../src/protocol/message";
import { payload, sha256, sha256File } from "./data";
import { listFiles, storedFiles, tempFiles, volumeRecords } from "./fs";
import { eventuallyAsync, type TestServer } from "./server";
import type { BucketView } from "./s3";

/** What a subject's clients need besides the port (TLS, a token), by server. */
const clientSecurity = new WeakMap<TestServer, { tls?: ClientTls; token?: string }>();
const connect = (server: TestServer) => WireConn.connect({ host: "127.0.0.1", port: server.port, ...clientSecurity.get(server) });

async function upload(conn: WireConn, key: string, body: Uint8Array): Promise<void> {
  await uploadExchange(conn, key, body.length, (c) => c.write(body));
}

async function download(conn: WireConn, key: string): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  await downloadExchange(conn, key, (p) => void parts.push(p.slice()));
  return Buffer.concat(parts);
}

async function serverText(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ServerError) return e.text;
    throw e;
  }
  throw new Error("expected the server to answer with an error text");
}

/** What the store holds, seen from outside the gateway: a data directory, or a bucket. */
export interface StoredView {
  /** Keys stored. */
  keys(): Promise<string[]>;
  /** A stored key's bytes, or null. */
  bytes(key: string): Promise<Uint8Array | null>;
  /** What an upload in progress leaves and a finished or cut one must not: temporary files, multipart uploads. */
  leftovers(): Promise<string[]>;
  /** The file store's layout (shard directories) can be checked. */
  files: boolean;
}

export function fileView(dataDir: string): StoredView {
  return {
    keys: async () => storedFiles(dataDir).map((k) => k.replaceAll("\x1f", "/")),
    async bytes(key) {
      const name = key.replaceAll("/", "\x1f");
      const [shard] = readdirSync(dataDir).filter((d) => existsSync(join(dataDir, d, name)));
      return shard === undefined ? null : new Uint8Array(readFileSync(join(dataDir, shard, name)));
    },
    leftovers: async () => tempFiles(dataDir),
    files: true,
  };
}

/**
 * A data directory with volumes: keys are files and live records (read by the test's own parser of
 * the record format); a key that is both is a failure of the store (never left at rest).
 */
export function volumeView(dataDir: string): StoredView {
  const files = fileView(dataDir);
  return {
    async keys() {
      const records = volumeRecords(dataDir);
      const fileKeys = await files.keys();
      const both = fileKeys.filter((k) => records.has(k));
      if (both.length > 0) throw new Error(`keys both a file and a record: ${both.join(", ")}`);
      return [...fileKeys, ...records.keys()].sort();
    },
    async bytes(key) {
      return volumeRecords(dataDir).get(key) ?? (await files.bytes(key));
    },
    leftovers: async () => tempFiles(dataDir).filter((p) => !p.startsWith("volumes/")),
    files: false,
  };
}

export function bucketView(view: BucketView): StoredView {
  return { keys: () => view.keys(), bytes: (key) => view.bytes(key), leftovers: () => view.multipartUploads(), files: false };
}

/** A server under test, what its store holds, and what its clients need besides its port. */
export interface Subject {
  server: TestServer;
  view: StoredView;
  client?: { tls?: ClientTls; token?: string };
}

export interface ConformanceOptions {
  /** The store records each body's SHA-256 (the C pool's extended attribute, S3 metadata): exist reports it. */
  digests: boolean;
  /** Bodies of at most this many bytes record their SHA-256 even when `digests` is false (volumes' records carry it on every engine). */
  digestsUpTo?: number;
  /** The S3 store: a body past s3PartBytes is a multipart upload, which a cut upload must not leave behind. */
  onS3: boolean;
  /** Clients at once in the concurrency test (more than the server's own bounds in front of its store). */
  concurrentClients: number;
}

/** The suite as one describe, against the subject `start` brings up (and `stop` takes down). */
export function describeConformance(name: string, options: ConformanceOptions, start: () => Promise<Subject>, stop: (subject: Subject) => Promise<void>): void {
  describe(name, () => {
    let subject: Subject;
    let server: TestServer;
    let view: StoredView;
    const { onS3 } = options;
    beforeAll(async () => {
      subject = await start();
      server = subject.server;
      view = subject.view;
      if (subject.client !== undefined) clientSecurity.set(server, subject.client);
    }, 180_000);
    afterAll(async () => {
      await stop(subject);
    });

    test("every exchange, small (inline) and large (streamed) bodies, on one connection", async () => {
      const conn = await connect(server);
      await benchExchange(conn, "bench-key");
      for (const [key, size] of [["small", 5 * 1024], ["exactly-inline", 65536], ["large", 3 * 1024 * 1024 + 7]] as const) {
        const body = payload(size, size);
        await upload(conn, key, body);
        // The C pool records each file's SHA-256 with it; the bun and sync engines cannot (no xattrs).
        // The S3 store records it as object metadata (a body up to s3PartBytes: all of these).
        // A volume's record carries its body's SHA-256 on every engine.
        const recorded = options.digests || size <= (options.digestsUpTo ?? -1) ? { digest: sha256(body) } : {};
        expect(await existExchange(conn, key)).toEqual({ size, type: "file", ...recorded });
        expect(sha256(await download(conn, key))).toBe(sha256(body));
        expect(sha256((await view.bytes(key)) ?? new Uint8Array())).toBe(sha256(body));
        await deleteExchange(conn, key);
        expect(await serverText(existExchange(conn, key))).toBe("no such key");
        expect(await view.bytes(key)).toBeNull();
      }
      expect(await serverText(downloadExchange(conn, "missing", () => {}))).toBe("no such key");
      expect(await serverText(deleteExchange(conn, "missing"))).toBe("no such key");
      await benchExchange(conn, "still-alive");
      conn.close();
      expect(await view.leftovers()).toEqual([]);
    });

    test("an upload replaces the file under its key atomically", async () => {
      const conn = await connect(server);
      const first = payload(100_000, 1);
      const second = payload(7, 2);
      await upload(conn, "replace-me", first);
      await upload(conn, "replace-me", second);
      expect(await download(conn, "replace-me")).toEqual(second);
      conn.close();
    });

    test("upload sizes outside 1..uploadBytesMax are refused with a text, and the connection goes on", async () => {
      const conn = await connect(server);
      await conn.sendFrame({ operation: Op.UPLOAD, key: "zero", size: 0 });
      expect((await conn.readFrame()).message).toContain("invalid size 0");
      await conn.sendFrame({ operation: Op.UPLOAD, key: "neg", size: -5 });
      expect((await conn.readFrame()).message).toContain("invalid size -5");
      await conn.sendFrame({ operation: Op.UPLOAD, key: "huge", size: 2 ** 50 });
      expect((await conn.readFrame()).message).toContain("file too large");
      await benchExchange(conn, "ok");
      conn.close();
      expect(await view.keys()).not.toContain("zero");
    });

    test("bytes in any split: a whole exchange one byte at a time", async () => {
      const conn = await connect(server);
      const body = payload(300, 3);
      const stream = [
        protobufCodec.encodeFrame({ operation: Op.UPLOAD, key: "bytewise", size: body.length }),
        body,
        protobufCodec.encodeFrame({ operation: Op.UPLOAD, key: "bytewise", message: "ACK" }),
        protobufCodec.encodeFrame({ operation: Op.EXIST, key: "bytewise" }),
      ];
      for (const part of stream) {
        for (const byte of part) {
          await conn.write(new Uint8Array([byte]));
          await Bun.sleep(1); // so that the server mostly reads the bytes one by one
        }
      }
      expect((await conn.readFrame()).message).toBe("START");
      expect((await conn.readFrame()).message).toBe("END");
      expect(await conn.readFrame()).toMatchObject({ operation: Op.EXIST_RSP, size: 300, message: "success" });
      conn.close();
    });

    test("bytes in any split: body, ACK and the next requests in one chunk; pipelined requests answered in order", async () => {
      const conn = await connect(server);
      for (const size of [1000, 200_000]) {
        const key = `onechunk-${size}`;
        const body = payload(size, size);
        await conn.sendFrame({ operation: Op.UPLOAD, key, size });
        expect((await conn.readFrame()).message).toBe("START");
        await conn.write(
          Buffer.concat([
            body,
            protobufCodec.encodeFrame({ operation: Op.UPLOAD, key, message: "ACK" }),
            protobufCodec.encodeFrame({ operation: Op.EXIST, key }),
            protobufCodec.encodeFrame({ operation: Op.BENCH_MARK, key: "b1" }),
            protobufCodec.encodeFrame({ operation: Op.EXIST, key: "nope" }),
            protobufCodec.encodeFrame({ operation: Op.BENCH_MARK, key: "b2" }),
          ]),
        );
        expect((await conn.readFrame()).message).toBe("END");
        expect(await conn.readFrame()).toMatchObject({ operation: Op.EXIST_RSP, size, message: "success" });
        expect(await conn.readFrame()).toMatchObject({ operation: Op.BENCH_MARK_RSP, key: "b1" });
        expect(await conn.readFrame()).toMatchObject({ operation: Op.EXIST_RSP, message: "no such key" });
        expect(await conn.readFrame()).toMatchObject({ operation: Op.BENCH_MARK_RSP, key: "b2" });
      }
      conn.close();
    });

    test(`${options.concurrentClients} concurrent connections upload then download distinct files, equal by SHA-256`, async () => {
      const n = options.concurrentClients;
      const sizes = Array.from({ length: n }, (_, i) => [1, 5 * 1024, 50 * 1024, 65536, 65537, 300 * 1024][i % 6]!);
      const hashes = sizes.map((size, i) => sha256(payload(size, 1000 + i)));
      await Promise.all(
        sizes.map(async (size, i) => {
          const conn = await connect(server);
          await upload(conn, `concurrent_${i}`, payload(size, 1000 + i));
          conn.close();
        }),
      );
      const got = await Promise.all(
        sizes.map(async (_, i) => {
          const conn = await connect(server);
          const body = await download(conn, `concurrent_${i}`);
          conn.close();
          return sha256(body);
        }),
      );
      expect(got).toEqual(hashes);
      expect(await view.leftovers()).toEqual([]);
    }, 60_000);

    test("a disconnect mid-body leaves neither the file nor a temporary file (nor a multipart upload)", async () => {
      const cases: [string, number, number][] = [["cut-small", 50_000, 20_000], ["cut-large", 4 * 1024 * 1024, 1024 * 1024]];
      // On S3, a body past s3PartBytes is a multipart upload: cut after two parts went to the store.
      if (onS3) cases.push(["cut-multipart", 40 * 1024 * 1024, 20 * 1024 * 1024]);
      for (const [key, size, sent] of cases) {
        const conn = await connect(server);
        await conn.sendFrame({ operation: Op.UPLOAD, key, size });
        expect((await conn.readFrame()).message).toBe("START");
        await conn.write(payload(sent, 9));
        await Bun.sleep(50);
        conn.destroy();
        await eventuallyAsync(async () => (await view.leftovers()).length === 0, 10_000, "temporary files (multipart uploads) removed");
        expect(await view.keys()).not.toContain(key);
        const check = await connect(server);
        expect(await serverText(existExchange(check, key))).toBe("no such key");
        check.close();
      }
    });

    test("ranged downloads: first byte, last byte, middle, to the end, whole, clamped, past the end", async () => {
      const conn = await connect(server);
      for (const size of [5000, 300_000]) {
        const key = `ranged-${size}`;
        const body = payload(size, size + 3);
        await upload(conn, key, body);
        const cases: [number, number, number, number][] = [
          // offset, length asked; offset, length expected
          [0, 1, 0, 1],
          [size - 1, 1, size - 1, 1],
          [1000, 1000, 1000, 1000],
          [1000, 0, 1000, size - 1000],
          [0, size, 0, size],
          [size - 10, 100, size - 10, 10],
        ];
        for (const [offset, length, wantOffset, wantLength] of cases) {
          const parts: Uint8Array[] = [];
          const got = await downloadExchange(conn, key, (p) => void parts.push(p.slice()), undefined, { offset, length });
          expect([offset, length, got]).toEqual([offset, length, wantLength]);
          expect(sha256(Buffer.concat(parts))).toBe(sha256(body.subarray(wantOffset, wantOffset + wantLength)));
        }
        // The START of a range says where it starts and how large the whole file is.
        await conn.sendFrame({ operation: Op.DOWNLOAD, key, offset: 7, length: 3 });
        expect(await conn.readFrame()).toMatchObject({ operation: Op.DOWNLOAD_RSP, message: "START", size: 3, offset: 7, fileSize: size });
        await conn.readBody(3, () => {});
        expect((await conn.readFrame()).message).toBe("END");
        await conn.sendFrame({ operation: Op.DOWNLOAD, key, message: "ACK" });
        for (const [offset, length] of [[size, 1], [size, 0], [size + 1000, 5]] as [number, number][]) {
          expect(await serverText(downloadExchange(conn, key, () => {}, undefined, { offset, length }))).toBe(`range not satisfiable: offset ${offset} is past the end of the file (${size} bytes)`);
        }
        expect(await serverText(downloadExchange(conn, key, () => {}, undefined, { offset: -1, length: 5 }))).toBe("invalid range: offset -1, length 5");
        expect(await serverText(downloadExchange(conn, "no-such-ranged-key", () => {}, undefined, { offset: 1, length: 5 }))).toBe("no such key");
        // The connection is still in step: a whole download after the refusals.
        expect(sha256(await download(conn, key))).toBe(sha256(body));
      }
      conn.close();
    });

    test("keys with '/' (as in S3) work in every exchange, each one file in its shard, beside a key that is its prefix", async () => {
      const conn = await connect(server);
      const keys = ["dir", "dir/a", "dir/a/b.txt", "photos/2026/11/cat.jpg"];
      const bodies = new Map(keys.map((k, i) => [k, payload(1000 + 100_000 * i, i + 40)]));
      for (const key of keys) await upload(conn, key, bodies.get(key)!);
      for (const key of keys) {
        expect(sha256(await download(conn, key))).toBe(sha256(bodies.get(key)!));
        expect((await existExchange(conn, key)).size).toBe(bodies.get(key)!.length);
      }
      // Each key is stored under its own name, whole; in the file store, as a file directly in a
      // shard directory (no directory made for a key).
      for (const key of keys) expect(sha256((await view.bytes(key)) ?? new Uint8Array())).toBe(sha256(bodies.get(key)!));
      if (view.files) {
        const mine = storedFiles(server.dataDir).filter((p) => keys.some((k) => p.endsWith(k.replaceAll("/", "\x1f"))));
        expect(mine.length).toBe(keys.length);
        for (const p of mine) expect(p.split("/").length).toBe(1);
      }
      await deleteExchange(conn, "dir/a");
      expect(await serverText(existExchange(conn, "dir/a"))).toBe("no such key");
      expect((await existExchange(conn, "dir")).size).toBe(bodies.get("dir")!.length);
      for (const key of ["dir", "dir/a/b.txt", "photos/2026/11/cat.jpg"]) await deleteExchange(conn, key);
      conn.close();
    });

    test("bad keys are answered with an error text on every op and create nothing, anywhere", async () => {
      const parent = dirname(server.dataDir);
      const before = listFiles(parent);
      const keysBefore = await view.keys();
      const conn = await connect(server);
      const bad: [string, string][] = [
        ["../x", "invalid key: contains the segment '..'"],
        ["../../etc/x", "invalid key: contains the segment '..'"],
        ["/etc/x", "invalid key: starts with '/'"],
        ["a//b", "invalid key: contains '//'"],
        ["..", "invalid key: '..' is not a file name"],
        [".", "invalid key: '.' is not a file name"],
        ["", "invalid key: empty"],
        ["a\\b", "invalid key: contains '\\'"],
        ["a\0b", "invalid key: contains NUL"],
        ["tab\there", "invalid key: contains a control character"],
        ["k".repeat(256), "invalid key: longer than 255 bytes"],
      ];
      for (const [key, text] of bad) {
        await conn.sendFrame({ operation: Op.UPLOAD, key, size: 10 });
        expect(await conn.readFrame()).toMatchObject({ operation: Op.UPLOAD_RSP, message: text });
        expect(await serverText(downloadExchange(conn, key, () => {}))).toBe(text);
        expect(await serverText(existExchange(conn, key))).toBe(text);
        expect(await serverText(deleteExchange(conn, key))).toBe(text);
      }
      await benchExchange(conn, "still-alive");
      conn.close();
      expect(listFiles(parent)).toEqual(before);
      expect(await view.keys()).toEqual(keysBefore);
    });

    test("a frame in a shape of its own (unknown fields first, as a future extension may send) is answered as any other", async () => {
      // Not the canonical shape: the loop decodes it with protobuf-es, loaded on first use.
      const conn = await connect(server);
      const body = protobufCodec.encodeFrame({ operation: Op.BENCH_MARK, key: "extended" }).subarray(4);
      await conn.write(frameOf(new Uint8Array([0xa0, 0x01, 0x05, 0xaa, 0x01, 0x02, 0x68, 0x69, ...body])));
      const reply = await conn.readFrame();
      expect([reply.operation, reply.message]).toEqual([Op.BENCH_MARK_RSP, ""]);
      await benchExchange(conn, "after"); // the connection goes on
      conn.close();
    });

    test("protocol violations close only the offending connection", async () => {
      const bystander = await connect(server);
      const header = (n: number) => {
        const b = new Uint8Array(4);
        new DataView(b.buffer).setInt32(0, n, true);
        return b;
      };
      const violations: [string, Uint8Array][] = [
        ["oversized length", header(64 * 1024 + 1)],
        ["huge length", header(0x7fffffff)],
        ["zero length", header(0)],
        ["negative length", header(-1)],
        ["garbage protobuf", frameOf(new Uint8Array([0xff, 0xff, 0xff, 0xff]))],
        ["wrong version", framed({ Version: "0002" })],
        ["wrong magic", framed({ Magic: 1 })],
        ["wrong appid", framed({ Appid: 2 })],
        ["unknown op", protobufCodec.encodeFrame({ operation: 42, key: "k" })],
        ["a response op from a client", protobufCodec.encodeFrame({ operation: Op.UPLOAD_RSP, key: "k" })],
      ];
      for (const [what, bytes] of violations) {
        const conn = await connect(server);
        await conn.write(bytes);
        expect([what, await conn.closedWithin(3000)]).toEqual([what, true]);
        await benchExchange(bystander, what);
      }
      // Anything but the ACK after END is a violation too.
      const conn = await connect(server);
      await conn.sendFrame({ operation: Op.UPLOAD, key: "no-ack", size: 3 });
      expect((await conn.readFrame()).message).toBe("START");
      await conn.write(new Uint8Array([1, 2, 3]));
      expect((await conn.readFrame()).message).toBe("END");
      await conn.sendFrame({ operation: Op.EXIST, key: "no-ack" });
      expect(await conn.closedWithin(3000)).toBe(true);
      await benchExchange(bystander, "after all");
      bystander.close();
    });
  });
}

/** A protobuf frame with the header fields overridden (to forge a wrong Version, Magic or Appid). */
function framed(over: { Version?: string; Magic?: number; Appid?: number }): Uint8Array {
  const msg = create(NetFsProtocolProtoSchema, { Version: "0001", Magic: 0x12345, Appid: 0x12345, Operation: 1, Checksum: "k", ...over });
  return frameOf(toBinary(NetFsProtocolProtoSchema, msg));
}
