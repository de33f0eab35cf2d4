// Small bodies in append-only volumes (issue 27) against a real server: where bodies go (records in
// <dataDir>/volumes, no file per key; larger bodies stay files), every exchange on them (download
// whole and ranged, exist with its digest, LIST, delete), overwrites between records and files in
// both directions, a restart that keeps every acknowledged write and no deleted key, a torn tail
// left unread, a file and a record of one key settled by the later, group fsync, and kill -9
// under a mixed load compared key by key against a model of what was acknowledged.
import { afterEach, describe, expect, test } from "bun:test";
import { appendFileSync, closeSync, existsSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, truncateSync, utimesSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { connect, ServerError } from "../../src/client/client";
import { NativeIndex, VolumeCodec, VolumeKind, VolumeRecords } from "../../src/ffi/pool-binding";
import { fileNameOf } from "../../src/storage/file-store";
import { checkKey, type StoreKey } from "../../src/storage/keys";
import { WireConn } from "../../src/client/wire-conn";
import { Msg, Op, type WireMessage } from "../../src/protocol/message";
import { payload, sha256 } from "../helpers/data";
import { tempFiles, volumeRecords } from "../helpers/fs";
import { runFsgw } from "../helpers/proc";
import { eventuallyAsync, freePort, startServer, tempDir, type TestServer } from "../helpers/server";

let server: TestServer | null = null;
afterEach(async () => {
  if (server !== null && server.proc.exitCode === null) await server.stop();
  server = null;
});

const VOLUMES = { volumes: true };

/** Files of the shard directories (keys stored as files), by key. */
function shardFiles(dataDir: string): string[] {
  const keys: string[] = [];
  for (const d of readdirSync(dataDir, { withFileTypes: true })) {
    if (!d.isDirectory() || d.name === "volumes") continue;
    for (const name of readdirSync(join(dataDir, d.name))) if (!name.includes("\\")) keys.push(name.replaceAll("\x1f", "/"));
  }
  return keys.sort();
}

function volumeFiles(dataDir: string): string[] {
  return readdirSync(join(dataDir, "volumes"))
    .filter((n) => n.endsWith(".fsv"))
    .sort();
}

function pathOf(dataDir: string, name: string, shards = 256): string {
  const key = checkKey(name) as StoreKey;
  return join(dataDir, (key.hash % shards).toString(16).padStart(2, "0"), fileNameOf(name));
}

async function absent(client: ReturnType<typeof connect>, key: string): Promise<boolean> {
  const e = await client.download(key).catch((err) => err);
  return e instanceof ServerError && /no such/.test(e.text);
}

describe("records", () => {
  test("encode and scan: a record's bytes, its checksum, and a scan that stops at the first damaged one", () => {
    const codec = new VolumeCodec();
    const dir = tempDir("vol-codec");
    const out = new Uint8Array(64 * 1024);
    let used = 0;
    const bodies = [payload(10, 1), payload(5000, 2), payload(1, 3)];
    const digest = new Uint8Array(32).fill(7);
    for (let i = 0; i < bodies.length; i++) used += codec.encode(out.subarray(used), VolumeKind.BODY, `k${i}`, bodies[i]!, digest, i + 1, 1_700_000_000_000 + i);
    used += codec.encode(out.subarray(used), VolumeKind.TOMBSTONE, "k0", null, null, 10, 1_700_000_000_100, 1);
    expect(used % 8).toBe(0);
    // The body sits at the record's offset + 88 + the key's length.
    expect(Buffer.from(out.subarray(88 + 2, 88 + 2 + 10)).equals(Buffer.from(bodies[0]!))).toBe(true);
    const path = join(dir, "00000001.fsv");
    writeFileSync(path, out.subarray(0, used));
    const records = new VolumeRecords();
    const whole = records.scan(path, 1);
    expect(whole).toMatchObject({ end: used, bodies: 3, tombstones: 1, seqMax: 10, sealed: false, badAt: -1 });
    const index = NativeIndex.scratch();
    expect(records.mergeInto(index)).toEqual([]);
    records.close();
    expect(index.get("k0")).toBe(false); // deleted by its tombstone
    expect(index.get("k1") && index.lastVolume === 1 && index.lastSize === 5000 && index.lastSeq === 2).toBe(true);
    expect(index.lastOffset).toBe(VolumeCodec.recordBytes(2, 10));
    expect(index.get("k2")).toBe(true);
    index.close();
    // One byte of k1's body changed: the scan stops at k1's record, which is not served.
    const second = VolumeCodec.recordBytes(2, 10);
    const damaged = out.slice(0, used);
    damaged[second + 88 + 2 + 100]! ^= 1;
    writeFileSync(path, damaged);
    const r2 = new VolumeRecords();
    expect(r2.scan(path, 1)).toMatchObject({ bodies: 1, badAt: second, end: second });
    const i2 = NativeIndex.scratch();
    r2.mergeInto(i2);
    r2.close();
    expect(i2.get("k0")).toBe(true);
    expect(i2.get("k1")).toBe(false);
    i2.close();
    // The CRC-32C is Castagnoli's: "123456789" -> e3069283.
    expect(codec.crc32c(new TextEncoder().encode("123456789")).toString(16)).toBe("e3069283");
  });

  test("a scan of many records in random order: each key's last body unless a tombstone deleted it, in byte order; every other body noted dead in its volume", () => {
    const codec = new VolumeCodec();
    const dir = tempDir("vol-many");
    // 30,000 records over 9,000 keys of 1..40 bytes (some sharing their first 16 bytes), in random
    // order, bodies and tombstones, spread over three volumes; the model says what must be live.
    let x = 12345;
    const rand = (n: number) => ((x = (x * 1103515245 + 12345) >>> 0) % n);
    const keyOf = (k: number) => (k % 3 === 0 ? `shared/prefix/16/${k}` : k % 3 === 1 ? `${k}` : `k${"x".repeat(k % 30)}${k}`);
    const model = new Map<string, { seq: number; dead: number }>();
    /** Per key, the volumes of its bodies that do not win (a bit each). */
    const deadIn = new Map<string, number>();
    /** Per key, the volume of its latest body. */
    const lastIn = new Map<string, number>();
    const out = new Uint8Array(4 << 20);
    let seq = 0;
    for (let v = 1; v <= 3; v++) {
      let used = 0;
      for (let r = 0; r < 10_000; r++) {
        const key = keyOf(rand(9000));
        const m = model.get(key) ?? { seq: 0, dead: 0 };
        model.set(key, m);
        seq++;
        if (rand(5) === 0 && m.seq > 0) {
          used += codec.encode(out.subarray(used), VolumeKind.TOMBSTONE, key, null, null, seq, 1, m.seq);
          m.dead = Math.max(m.dead, m.seq);
        } else {
          used += codec.encode(out.subarray(used), VolumeKind.BODY, key, new Uint8Array(seq % 7), null, seq, 1);
          if (m.seq > 0) deadIn.set(key, (deadIn.get(key) ?? 0) | (1 << lastIn.get(key)!));
          lastIn.set(key, v);
          m.seq = seq;
        }
      }
      writeFileSync(join(dir, `0000000${v}.fsv`), out.subarray(0, used));
    }
    const records = new VolumeRecords();
    for (let v = 1; v <= 3; v++) expect(records.scan(join(dir, `0000000${v}.fsv`), v).badAt).toBe(-1);
    const index = NativeIndex.scratch();
    records.mergeInto(index);
    records.close();
    const live = [...model].filter(([, m]) => m.seq > m.dead).map(([k]) => k);
    expect(index.count).toBe(live.length);
    // A deleted key's last body is dead too. Asked from a volume of none (4): a key with dead
    // bodies is named with one of their volumes; a key without may be named only when its 32-bit
    // hash is shared (rare).
    let shared = 0;
    for (const [key, m] of model) {
      const bits = (deadIn.get(key) ?? 0) | (m.seq > m.dead ? 0 : 1 << lastIn.get(key)!);
      const found = index.deadElsewhere(key, 4);
      if (bits === 0) shared += found.state === "none" ? 0 : 1;
      else expect(found.state === "blocked" && (bits & (1 << found.volume)) !== 0).toBe(true);
    }
    expect(shared).toBeLessThan(5);
    for (const [key, m] of model) {
      if (m.seq > m.dead) {
        expect(index.get(key)).toBe(true);
        expect(index.lastSeq).toBe(m.seq);
      } else {
        expect(index.get(key)).toBe(false);
      }
    }
    const listed: string[] = [];
    let after = "";
    for (;;) {
      const page = index.list("", "", after, false, 1000, 1 << 20);
      // (An index without a volumes directory lists records without their digests: nothing to read.)
      if (!("lines" in page)) throw new Error("an index of no volumes asked for headers");
      const keys = new TextDecoder().decode(page.lines).trim().split("\n").filter((l) => l !== "").map((l) => (JSON.parse(l) as { key: string }).key);
      listed.push(...keys);
      if (page.next === "") break;
      after = page.next.slice(1);
    }
    expect(listed).toEqual([...live].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
    index.close();
  });
});

describe("a server with volumes", () => {
  test("LIST shows records' digests from their headers, also headers out of the page cache (read on the pool first); exist and download too", async () => {
    const adminPort = freePort();
    server = await startServer({ ...VOLUMES, adminPort, volumeFileBytesMax: 1 << 20 });
    const client = connect({ port: server.port, poolSize: 8 });
    const bodies = new Map<string, Uint8Array>();
    for (let i = 0; i < 300; i++) bodies.set(`k/${String(i).padStart(3, "0")}`, payload(2000 + ((i * 131) % 6000), i));
    await Promise.all([...bodies].map(([k, b]) => client.upload(k, b)));
    const readsOnPool = async () => ((await (await fetch(`http://127.0.0.1:${adminPort}/debug/stats`)).json()) as { store: { volumeListHeaderReads: number } }).store.volumeListHeaderReads;
    const listAll = async () => {
      const listed: { key: string; size: number; sha256?: string }[] = [];
      for await (const page of client.list({ prefix: "k/", pageKeys: 100 })) listed.push(...(page.entries as never[]));
      return listed;
    };
    const expectDigests = (listed: { key: string; size: number; sha256?: string }[]) => {
      expect(listed.map((e) => e.key)).toEqual([...bodies.keys()]);
      for (const e of listed) expect(e).toMatchObject({ size: bodies.get(e.key)!.length, sha256: sha256(bodies.get(e.key)!) });
    };
    expectDigests(await listAll());
    expect(await readsOnPool()).toBe(0); // just written: every header cached
    // The volumes' pages out of the page cache (written back first: only clean pages can go).
    const dropCache = () => {
      expect(Bun.spawnSync(["sync"]).exitCode).toBe(0);
      const volumes = volumeFiles(server!.dataDir);
      expect(volumes.length).toBeGreaterThan(1);
      for (const v of volumes) expect(Bun.spawnSync(["dd", `if=${join(server!.dataDir, "volumes", v)}`, "iflag=nocache", "count=0", "status=none"]).stderr.toString()).toBe("");
    };
    dropCache();
    expectDigests(await listAll());
    expect(await readsOnPool()).toBeGreaterThan(0);
    // Exist and download read a header not cached on the pool as well.
    dropCache();
    for (const [k, b] of [...bodies].slice(0, 40)) {
      expect(await client.exist(k)).toMatchObject({ size: b.length, type: "file", digest: sha256(b) });
      expect(sha256(await client.download(k))).toBe(sha256(b));
    }
    client.close();
  });

  test("a record whose header is damaged under a running server: its exist and download fail, LIST shows it without a digest, the others are whole", async () => {
    server = await startServer({ ...VOLUMES });
    const client = connect({ port: server.port });
    const bodies = new Map([...["dmg/a", "dmg/b", "dmg/c"]].map((k, i) => [k, payload(3000 + i, i)] as const));
    for (const [k, b] of bodies) await client.upload(k, b);
    // b's record, found by walking the volume as its format says (88-byte header, key, body, to 8).
    const [volume] = volumeFiles(server.dataDir);
    const path = join(server.dataDir, "volumes", volume!);
    const bytes = readFileSync(path);
    let at = 0;
    while (bytes.subarray(at + 88, at + 88 + bytes[at + 5]!).toString() !== "dmg/b") at += (88 + bytes[at + 5]! + Number(bytes.readBigInt64LE(at + 24)) + 7) & ~7;
    // Its sequence number changed in place: the header is no longer the one the index points at.
    const fd = openSync(path, "r+");
    writeSync(fd, Buffer.from([bytes[at + 8]! ^ 0xff]), 0, 1, at + 8);
    closeSync(fd);
    await expect(client.exist("dmg/b")).rejects.toThrow(ServerError);
    await expect(client.download("dmg/b")).rejects.toThrow(ServerError);
    const listed: { key: string; sha256?: string }[] = [];
    for await (const page of client.list({ prefix: "dmg/" })) listed.push(...(page.entries as never[]));
    expect(listed.map((e) => [e.key, e.sha256])).toEqual([...bodies].map(([k, b]) => [k, k === "dmg/b" ? undefined : sha256(b)]));
    for (const k of ["dmg/a", "dmg/c"]) {
      expect((await client.exist(k)).digest).toBe(sha256(bodies.get(k)!));
      expect(sha256(await client.download(k))).toBe(sha256(bodies.get(k)!));
    }
    client.close();
  });

  test("small bodies are records, larger ones files; download, range, exist, LIST and delete on both; restart keeps them", async () => {
    server = await startServer({ ...VOLUMES, volumeBytesMax: 8192 });
    const { dataDir } = server;
    const client = connect({ port: server.port, poolSize: 8 });
    const bodies = new Map<string, Uint8Array>();
    for (let i = 0; i < 200; i++) bodies.set(`small/${i}`, payload(1 + ((i * 97) % 8192), i));
    for (let i = 0; i < 5; i++) bodies.set(`large/${i}`, payload(8193 + i * 10_000, 1000 + i));
    await Promise.all([...bodies].map(([k, b]) => client.upload(k, b)));
    // Where they went: no small key is a file; every large one is.
    expect(shardFiles(dataDir)).toEqual([...bodies.keys()].filter((k) => k.startsWith("large/")).sort());
    expect(volumeFiles(dataDir).length).toBeGreaterThanOrEqual(1);
    for (const [k, b] of bodies) {
      expect(sha256(await client.download(k))).toBe(sha256(b));
      expect(await client.exist(k)).toMatchObject({ size: b.length, type: "file", digest: sha256(b) });
    }
    // A range of a record: bytes [100, 600) of a 5000-byte body.
    const ranged = payload(5000, 77);
    await client.upload("ranged", ranged);
    const partPath = join(tempDir("vol-range"), "part");
    expect(await client.download("ranged", partPath, { range: { offset: 100, length: 500 } })).toBe(500);
    expect(sha256(readFileSync(partPath))).toBe(sha256(ranged.subarray(100, 600)));
    // LIST shows records and files alike, with their digests.
    const listed: { key: string; size: number; sha256?: string }[] = [];
    for await (const page of client.list({ prefix: "" })) listed.push(...(page.entries as never[]));
    expect(listed.length).toBe(bodies.size + 1);
    bodies.set("ranged", ranged);
    // (A record's digest is read from its header: the index keeps only where the record is.)
    for (const e of listed) expect(e).toMatchObject({ size: bodies.get(e.key)!.length, sha256: sha256(bodies.get(e.key)!) });
    // Delete: a record and a file.
    await client.delete("small/0");
    await client.delete("large/0");
    expect(await absent(client, "small/0")).toBe(true);
    expect(await absent(client, "large/0")).toBe(true);
    await expect(client.delete("small/0")).rejects.toThrow(/no such/);
    client.close();
    await server.stop();

    server = await startServer({ ...VOLUMES, volumeBytesMax: 8192, dataDir });
    const again = connect({ port: server.port, poolSize: 8 });
    for (const [k, b] of bodies) {
      if (k === "small/0" || k === "large/0") expect(await absent(again, k)).toBe(true);
      else expect(sha256(await again.download(k))).toBe(sha256(b));
    }
    // A clean stop left a checkpoint: its 200 live records are read from it, no volume record is.
    expect(server.lines.join("\n")).toMatch(/event=volumes_ready volumes=\d+ checkpointRecords=200 bodyRecords=0 tombstones=0 scannedBytes=0 /);
    again.close();
    // Volumes off: the records stay readable and deletable; new bodies are files.
    await server.stop();
    server = await startServer({ dataDir, volumes: false });
    const off = connect({ port: server.port });
    expect(sha256(await off.download("small/7"))).toBe(sha256(bodies.get("small/7")!));
    await off.delete("small/7");
    expect(await absent(off, "small/7")).toBe(true);
    await off.upload("after-off", payload(100, 5));
    expect(existsSync(pathOf(dataDir, "after-off"))).toBe(true);
    off.close();
  });

  test("overwrites between a record and a file, both ways: the latest body, one copy, across a restart", async () => {
    server = await startServer({ ...VOLUMES, volumeBytesMax: 4096 });
    const { dataDir } = server;
    const client = connect({ port: server.port });
    const small1 = payload(1000, 1);
    const large = payload(100_000, 2);
    const small2 = payload(3000, 3);
    await client.upload("k", small1);
    expect(existsSync(pathOf(dataDir, "k"))).toBe(false);
    await client.upload("k", large); // the record is deleted by a tombstone before the answer
    expect(existsSync(pathOf(dataDir, "k"))).toBe(true);
    expect(sha256(await client.download("k"))).toBe(sha256(large));
    await client.upload("k", small2); // the file is removed before the answer
    expect(existsSync(pathOf(dataDir, "k"))).toBe(false);
    expect(sha256(await client.download("k"))).toBe(sha256(small2));
    await client.upload("j", small1);
    await client.upload("j", large);
    client.close();
    await server.stop();
    server = await startServer({ ...VOLUMES, volumeBytesMax: 4096, dataDir });
    const again = connect({ port: server.port });
    expect(sha256(await again.download("k"))).toBe(sha256(small2));
    expect(sha256(await again.download("j"))).toBe(sha256(large));
    expect(server.lines.join("\n")).not.toContain("volumes_settled");
    again.close();
  });

  test("streamed and resumable small bodies become records: the temporary file read back into a volume and removed, a file of the key replaced", async () => {
    // inlineBytesMax below the bodies: each one streams into a temporary file before it is whole.
    server = await startServer({ ...VOLUMES, volumeBytesMax: 16_384, inlineBytesMax: 1024 });
    const { dataDir } = server;
    const client = connect({ port: server.port });
    const streamed = payload(10_000, 1);
    await client.upload("streamed", streamed);
    const large = payload(20_000, 2);
    await client.upload("was-file", large);
    expect(existsSync(pathOf(dataDir, "was-file"))).toBe(true);
    const replacing = payload(9_000, 3);
    await client.upload("was-file", replacing); // the file is removed before the answer
    expect(existsSync(pathOf(dataDir, "was-file"))).toBe(false);

    // A resumable one, broken after 5000 of its 12000 bytes and finished by RESUME.
    const body = payload(12_000, 4);
    const digest = sha256(body);
    let conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
    await conn.sendFrame({ operation: Op.UPLOAD, key: "resumed", size: body.length, digest, resumable: true });
    const start = await conn.readFrame();
    expect(start.message).toBe("START");
    await conn.write(body.subarray(0, 5000));
    conn.destroy();
    let reply: WireMessage;
    for (let attempt = 0; ; attempt++) {
      conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
      await conn.sendFrame({ operation: Op.RESUME, key: "resumed", uploadId: start.uploadId });
      reply = await conn.readFrame();
      if (reply.message !== "upload in progress on another connection" || attempt > 200) break;
      conn.close();
      await Bun.sleep(5);
    }
    expect([reply.operation, reply.message]).toEqual([Op.RESUME_RSP, "START"]);
    await conn.write(body.subarray(reply.offset));
    const end = await conn.readFrame();
    expect([end.message, end.digest]).toEqual(["END", digest]);
    await conn.sendFrame({ operation: Op.UPLOAD, key: "resumed", message: Msg.ACK });
    conn.close();

    // Records, read by the test's own parser of the format; no file of theirs, no temporary file.
    const records = volumeRecords(dataDir);
    expect(sha256(records.get("streamed")!)).toBe(sha256(streamed));
    expect(sha256(records.get("was-file")!)).toBe(sha256(replacing));
    expect(sha256(records.get("resumed")!)).toBe(digest);
    expect(shardFiles(dataDir)).toEqual([]);
    expect(tempFiles(dataDir)).toEqual([]);
    expect(await client.exist("resumed")).toMatchObject({ size: body.length, digest });
    client.close();
    await server.stop();
    server = await startServer({ ...VOLUMES, volumeBytesMax: 16_384, inlineBytesMax: 1024, dataDir });
    const again = connect({ port: server.port });
    expect(sha256(await again.download("streamed"))).toBe(sha256(streamed));
    expect(sha256(await again.download("was-file"))).toBe(sha256(replacing));
    expect(sha256(await again.download("resumed"))).toBe(digest);
    again.close();
  });

  test("migration: a data directory written without volumes opens unchanged under the default; its small files are served, overwritten into records and deleted", async () => {
    server = await startServer({ volumes: false });
    const { dataDir } = server;
    let client = connect({ port: server.port, poolSize: 8 });
    const bodies = new Map<string, Uint8Array>();
    for (let i = 0; i < 60; i++) bodies.set(`old/${i}`, payload(100 + i * 50, i));
    await Promise.all([...bodies].map(([k, b]) => client.upload(k, b)));
    client.close();
    await server.stop();
    expect(shardFiles(dataDir)).toEqual([...bodies.keys()].sort());
    expect(existsSync(join(dataDir, "volumes"))).toBe(false);

    server = await startServer({ dataDir }); // the default: volumes on
    client = connect({ port: server.port, poolSize: 8 });
    for (const [k, b] of bodies) expect(await client.exist(k)).toMatchObject({ size: b.length, digest: sha256(b) });
    // Overwrite 20 (each becomes a record, its file removed before the answer), delete 20 files, add 20 records.
    for (let i = 0; i < 20; i++) bodies.set(`old/${i}`, payload(700 + i, 100 + i));
    for (let i = 0; i < 20; i++) bodies.set(`new/${i}`, payload(300 + i, 200 + i));
    await Promise.all([...bodies].filter(([k]) => !/^old\/(2\d|3\d)$/.test(k) && !/^old\/(4\d|5\d)$/.test(k)).map(([k, b]) => client.upload(k, b)));
    for (let i = 20; i < 40; i++) {
      await client.delete(`old/${i}`);
      bodies.delete(`old/${i}`);
    }
    const files = shardFiles(dataDir);
    expect(files).toEqual(Array.from({ length: 20 }, (_, i) => `old/${40 + i}`).sort());
    const records = volumeRecords(dataDir);
    expect([...records.keys()].sort()).toEqual([...bodies.keys()].filter((k) => !files.includes(k)).sort());
    const listed: string[] = [];
    for await (const page of client.list({ prefix: "" })) listed.push(...page.entries.map((e) => e.key));
    expect(listed).toEqual([...bodies.keys()].sort());
    client.close();
    await server.stop();

    server = await startServer({ dataDir });
    client = connect({ port: server.port, poolSize: 8 });
    for (const [k, b] of bodies) expect(sha256(await client.download(k))).toBe(sha256(b));
    for (let i = 20; i < 40; i++) expect(await absent(client, `old/${i}`)).toBe(true);
    client.close();
  });

  test("a torn tail is not served and the records before it are; new writes go on", async () => {
    server = await startServer(VOLUMES);
    const { dataDir } = server;
    const client = connect({ port: server.port });
    for (let i = 0; i < 10; i++) await client.upload(`t/${i}`, payload(2000, i));
    client.close();
    server.proc.kill("SIGKILL"); // a crash: no checkpoint
    await server.proc.exited;
    const [volume] = volumeFiles(dataDir);
    const path = join(dataDir, "volumes", volume!);
    const size = statSync(path).size;
    const record = VolumeCodec.recordBytes(3, 2000);
    // The last record cut in the middle of its body, as a crash during its write leaves it.
    truncateSync(path, size - Math.floor(record / 2));
    appendFileSync(path, new Uint8Array(100)); // and zeros after, as a file system may show
    server = await startServer({ ...VOLUMES, dataDir });
    const again = connect({ port: server.port });
    for (let i = 0; i < 9; i++) expect(sha256(await again.download(`t/${i}`))).toBe(sha256(payload(2000, i)));
    expect(await absent(again, "t/9")).toBe(true);
    expect(await server.line("event=volume_tail_unread")).toContain(`offset=${size - record}`);
    await again.upload("t/9", payload(2000, 9));
    expect(sha256(await again.download("t/9"))).toBe(sha256(payload(2000, 9)));
    again.close();
  });

  test("a checkpoint at a clean stop: the next start reads it and only what the volumes gained since; a crash, a compaction or damage after it change nothing a client sees", async () => {
    const fields = { ...VOLUMES, volumeBytesMax: 8192, volumeFileBytesMax: 1 << 20, volumeCompactLivePercent: 0 };
    server = await startServer(fields);
    const { dataDir } = server;
    const expected = new Map<string, Uint8Array | null>();
    let client = connect({ port: server.port, poolSize: 8 });
    for (let i = 0; i < 150; i++) {
      expected.set(`p/${i}`, payload(5000, i));
      await client.upload(`p/${i}`, expected.get(`p/${i}`)!);
    }
    client.close();
    await server.stop();
    expect(server.lines.join("\n")).toMatch(/event=volume_checkpoint_saved records=150 /);
    const check = async () => {
      const c = connect({ port: server!.port, poolSize: 8 });
      for (const [key, body] of expected) {
        if (body === null) expect(await absent(c, key)).toBe(true);
        else expect(sha256(await c.download(key))).toBe(sha256(body));
      }
      c.close();
    };
    // Read from the checkpoint alone; then changes after it, and a crash.
    server = await startServer({ ...fields, dataDir });
    expect(await server.line("event=volumes_ready")).toMatch(/checkpointRecords=150 bodyRecords=0 tombstones=0 scannedBytes=0 /);
    client = connect({ port: server.port, poolSize: 8 });
    await client.delete("p/0");
    expected.set("p/0", null);
    expected.set("p/1", payload(3000, 1001));
    await client.upload("p/1", expected.get("p/1")!);
    expected.set("p/2", payload(100_000, 1002)); // a file now: the record is deleted by a tombstone
    await client.upload("p/2", expected.get("p/2")!);
    expected.set("p/new", payload(10, 1003));
    await client.upload("p/new", expected.get("p/new")!);
    client.close();
    server.proc.kill("SIGKILL");
    await server.proc.exited;
    server = await startServer({ ...fields, dataDir });
    expect(await server.line("event=volumes_ready")).toMatch(/checkpointRecords=150 bodyRecords=2 tombstones=2 /);
    await check();
    // Most keys deleted, the first volume compacted, then a crash: the checkpoint's view of that
    // volume is stale, and the copies found in the volumes begun since put it right.
    client = connect({ port: server.port, poolSize: 8 });
    for (let i = 3; i < 120; i++) {
      await client.delete(`p/${i}`);
      expected.set(`p/${i}`, null);
    }
    client.close();
    server.proc.kill("SIGKILL");
    await server.proc.exited;
    server = await startServer({ ...fields, dataDir, volumeCompactLivePercent: 60, volumeCompactCheckMs: 100 });
    await server.line(/event=volume_compacted volume=1 /, 10_000); // the checkpoint's volume
    server.proc.kill("SIGKILL");
    await server.proc.exited;
    server = await startServer({ ...fields, dataDir });
    await check();
    await server.stop();
    // A damaged checkpoint is not used: said, and the volumes are read whole.
    const cp = join(dataDir, "volumes", "checkpoint.fsc");
    const bytes = new Uint8Array(readFileSync(cp));
    bytes[bytes.length - 100] = bytes[bytes.length - 100]! ^ 1;
    writeFileSync(cp, bytes);
    server = await startServer({ ...fields, dataDir });
    expect(await server.line("event=volume_checkpoint_unread")).toContain("checksum");
    await check();
  }, 60_000);

  test("a key left both as a file and as a record (a crash between a commit and its clean-up): the later stays, once", async () => {
    server = await startServer(VOLUMES);
    const { dataDir } = server;
    const client = connect({ port: server.port });
    await client.upload("newer-file", payload(500, 1));
    await client.upload("newer-record", payload(600, 2));
    client.close();
    // A crash (no clean stop: no checkpoint), after which each key is also found as a file.
    server.proc.kill("SIGKILL");
    await server.proc.exited;
    // A file written after the record (its removal of the record never happened) ...
    const fileBody = payload(700, 3);
    writeFileSync(pathOf(dataDir, "newer-file"), fileBody);
    // ... and a file older than the record (the record's removal of it never happened).
    writeFileSync(pathOf(dataDir, "newer-record"), payload(800, 4));
    const past = new Date(Date.now() - 3600_000);
    utimesSync(pathOf(dataDir, "newer-record"), past, past);
    server = await startServer({ ...VOLUMES, dataDir });
    expect(await server.line("event=volumes_settled")).toContain("filesRemoved=1 recordsDeleted=1");
    const again = connect({ port: server.port });
    expect(sha256(await again.download("newer-file"))).toBe(sha256(fileBody));
    expect(sha256(await again.download("newer-record"))).toBe(sha256(payload(600, 2)));
    expect(existsSync(pathOf(dataDir, "newer-record"))).toBe(false);
    again.close();
    await server.stop();
    // Settled for good: the next start finds nothing to settle, and the same bodies.
    server = await startServer({ ...VOLUMES, dataDir });
    await server.line("event=volumes_ready");
    expect(server.lines.join("\n")).not.toContain("volumes_settled");
    const third = connect({ port: server.port });
    expect(sha256(await third.download("newer-file"))).toBe(sha256(fileBody));
    third.close();
  });

  test("records that wait for room in a batch, and files committed meanwhile, keep their own digests: 96 uploads at once into batches of four", async () => {
    // Batches of 64 KiB, bodies of 15 KiB: while one write is in flight, four records fill the next
    // batch and the rest wait, each with the digest its upload computed (in memory the store reuses
    // for the next upload as soon as the record is handed over). Bodies of 20 KB are files, whose
    // commit records the digest on the pool, after the next upload has begun.
    server = await startServer({ ...VOLUMES, volumeBytesMax: 16384, volumeBatchBytesMax: 65536, volumeCompactLivePercent: 0 });
    const client = connect({ port: server.port, poolSize: 96 });
    const records = Array.from({ length: 64 }, (_, i) => [`w/${i}`, payload(15_000 + i, 500 + i)] as const);
    const files = Array.from({ length: 32 }, (_, i) => [`f/${i}`, payload(20_000 + i, 900 + i)] as const);
    const bodies = new Map([...records, ...files]);
    await Promise.all([...bodies].map(([k, b]) => client.upload(k, b)));
    for (const [k, b] of bodies) expect((await client.exist(k)).digest).toBe(sha256(b));
    client.close();
    await server.stop();
    expect(shardFiles(server.dataDir)).toEqual(files.map(([k]) => k).sort());
    // A start reads the files' digests back from the files themselves.
    server = await startServer({ ...VOLUMES, dataDir: server.dataDir });
    const again = connect({ port: server.port });
    for (const [k, b] of files) expect((await again.exist(k)).digest).toBe(sha256(b));
    again.close();
    await server.stop();
    const verify = runFsgw("volumes", "verify", "--data-dir", server.dataDir);
    expect(verify.out).toContain(" 0 problems");
    expect(verify.code).toBe(0);
  });

  test("fsyncOnCommit: records are synced before they are answered, one fsync for those that arrive together", async () => {
    const adminPort = freePort();
    server = await startServer({ ...VOLUMES, fsyncOnCommit: true, adminPort });
    const stats = async () => (await (await fetch(`http://127.0.0.1:${adminPort}/debug/stats`)).json()) as { engine: { fsyncs: number }; store?: { volumeWrites: number; volumeRecords: number } };
    const client = connect({ port: server.port, poolSize: 64 });
    await client.upload("first", payload(100, 1)); // a new volume: its records and its name
    let before = (await stats()).engine.fsyncs;
    await client.upload("second", payload(100, 2));
    expect((await stats()).engine.fsyncs).toBe(before + 1);
    before = (await stats()).engine.fsyncs;
    await Promise.all(Array.from({ length: 200 }, (_, i) => client.upload(`burst/${i}`, payload(2000, i))));
    const after = await stats();
    expect(after.engine.fsyncs).toBeGreaterThan(before);
    expect(after.engine.fsyncs - before).toBeLessThan(200); // grouped
    client.close();
  });

  test("compaction: a volume mostly dead is copied away, its space given back, the copies synced first; every key as it was, also after a restart", async () => {
    // Batches of 64 KiB and no pacing of the reads: the copies in flight are held to two batches.
    const fields = { ...VOLUMES, volumeFileBytesMax: 1 << 20, volumeCompactCheckMs: 200, volumeCompactLivePercent: 50, volumeBytesMax: 8192, volumeBatchBytesMax: 65536, volumeCompactBytesPerSecond: 64 * 1024 ** 3 };
    const adminPort = freePort();
    server = await startServer({ ...fields, adminPort });
    const { dataDir } = server;
    const client = connect({ port: server.port, poolSize: 8 });
    const expected = new Map<string, Uint8Array | null>();
    for (let i = 0; i < 400; i++) {
      const body = payload(5000, i);
      expected.set(`c/${i}`, body);
      await client.upload(`c/${i}`, body);
    }
    const first = volumeFiles(dataDir);
    expect(first.length).toBeGreaterThanOrEqual(2); // 2 MB in volumes of 1 MiB
    // Most of the first volumes die: overwritten (into the current volume) or deleted.
    for (let i = 0; i < 400; i++) {
      if (i % 4 === 0) continue;
      if (i % 4 === 1) {
        await client.delete(`c/${i}`);
        expected.set(`c/${i}`, null);
      } else {
        const body = payload(3000, 10_000 + i);
        expected.set(`c/${i}`, body);
        await client.upload(`c/${i}`, body);
      }
    }
    // Listings meanwhile, each whole and right: a record's digest is read from where the index
    // pointed as its page was made, also while its volume is copied away and removed.
    const live = [...expected].filter(([, b]) => b !== null).sort(([a], [b]) => (a < b ? -1 : 1));
    let listing = true;
    let listings = 0;
    const lister = (async () => {
      const c = connect({ port: server!.port });
      while (listing || (listings < 3 && server !== null)) {
        const listed: { key: string; sha256?: string }[] = [];
        for await (const page of c.list({ prefix: "c/", pageKeys: 40 })) listed.push(...(page.entries as never[]));
        expect(listed.map((e) => [e.key, e.sha256])).toEqual(live.map(([k, b]) => [k, sha256(b!)]));
        listings++;
      }
      c.close();
    })();
    try {
      await server.line("event=volume_compacted", 10_000);
    } finally {
      listing = false; // (also when the wait fails: no lister left running into the next test)
    }
    await lister;
    // Without fsyncOnCommit the only fsyncs are a sealed volume's and a compaction's (its copies are
    // made durable before the volume they came from is removed): one each.
    type Stats = { engine: { fsyncs: number }; store: { volumesBegun: number; volumeCompactions: number; volumeCopyBytesHigh: number } };
    await eventuallyAsync(async () => {
      const st = (await (await fetch(`http://127.0.0.1:${adminPort}/debug/stats`)).json()) as Stats;
      return st.store.volumeCompactions >= 1 && st.engine.fsyncs === st.store.volumesBegun - 1 + st.store.volumeCompactions;
    }, 5000, "one fsync per sealed volume and per compaction");
    const high = ((await (await fetch(`http://127.0.0.1:${adminPort}/debug/stats`)).json()) as Stats).store.volumeCopyBytesHigh;
    expect(high).toBeGreaterThan(0);
    expect(high).toBeLessThanOrEqual(2 * 65536);
    const check = async (port: number) => {
      const c = connect({ port, poolSize: 8 });
      for (const [key, body] of expected) {
        if (body === null) expect(await absent(c, key)).toBe(true);
        else expect(sha256(await c.download(key))).toBe(sha256(body));
      }
      c.close();
    };
    await check(server.port);
    // The first volume is gone (its live quarter copied), and the store says so.
    expect(volumeFiles(dataDir)).not.toContain(first[0]);
    client.close();
    await server.stop();
    server = await startServer({ ...fields, volumeCompactLivePercent: 0, dataDir });
    await check(server.port);
  });


  test("compaction keeps the tombstones: a key deleted in a compacted volume stays deleted when its record lives in another", async () => {
    const fields = { ...VOLUMES, volumeFileBytesMax: 1 << 20 };
    // A first run writes the key and 150 others that stay: a volume mostly live, never compacted.
    server = await startServer({ ...fields, volumeCompactLivePercent: 0 });
    const { dataDir } = server;
    let client = connect({ port: server.port, poolSize: 8 });
    await client.upload("doomed", payload(5000, 1));
    for (let i = 0; i < 150; i++) await client.upload(`keep/${i}`, payload(5000, 100 + i));
    client.close();
    await server.stop();
    // A second run deletes it (its tombstone goes to a new volume), then fills that volume past its
    // size with bodies it deletes again: a volume of tombstones and dead records, compacted.
    server = await startServer({ ...fields, volumeCompactCheckMs: 200, volumeCompactLivePercent: 50, dataDir });
    client = connect({ port: server.port, poolSize: 8 });
    await client.delete("doomed");
    for (let i = 0; i < 250; i++) await client.upload(`fill/${i}`, payload(5000, 1000 + i));
    for (let i = 0; i < 250; i++) await client.delete(`fill/${i}`);
    expect(await server.line("event=volume_compacted", 10_000)).toContain("volume=2 ");
    client.close();
    await server.stop();
    server = await startServer({ ...fields, volumeCompactLivePercent: 0, dataDir });
    client = connect({ port: server.port });
    expect(await absent(client, "doomed")).toBe(true);
    expect(sha256(await client.download("keep/7"))).toBe(sha256(payload(5000, 107)));
    client.close();
  });

  test("a tombstone is kept while another volume holds a record it deletes, then dropped; a start that reads the volumes whole (or a checkpoint) brings no deleted key back", async () => {
    // A chain of one key over three volumes, each written by a run of its own: its first body in
    // volume 1 (with 30 keepers: 73% live), an overwrite in volume 2, the delete's tombstone in
    // volume 3 (both with nothing live).
    const off = { ...VOLUMES, volumeCompactLivePercent: 0 };
    server = await startServer(off);
    const { dataDir } = server;
    const run = async (work: (c: ReturnType<typeof connect>) => Promise<void>) => {
      server ??= await startServer({ ...off, dataDir });
      const c = connect({ port: server.port });
      await work(c);
      c.close();
      await server.stop();
      server = null;
    };
    const keepers = new Map<string, Uint8Array>();
    const gone = new Set<string>();
    const churn = async (c: ReturnType<typeof connect>, prefix: string, n: number) => {
      for (let i = 0; i < n; i++) await c.upload(`${prefix}/${i}`, payload(5000, 9000 + i));
      for (let i = 0; i < n; i++) await c.delete(`${prefix}/${i}`);
    };
    await run(async (c) => {
      await c.upload("chain", payload(5000, 1));
      for (let i = 0; i < 30; i++) {
        keepers.set(`a/${i}`, payload(5000, 100 + i));
        await c.upload(`a/${i}`, keepers.get(`a/${i}`)!);
      }
      await churn(c, "x1", 10);
    });
    await run(async (c) => {
      await c.upload("chain", payload(5000, 2));
      await churn(c, "x2", 12);
    });
    await run(async (c) => {
      await c.delete("chain");
      gone.add("chain");
      await churn(c, "x3", 20);
    });
    expect(volumeFiles(dataDir)).toEqual(["00000001.fsv", "00000002.fsv", "00000003.fsv"]);
    type Compacted = { compacted: string[]; tombstonesDropped: number };
    const compact = (percent: number) => JSON.parse(runFsgw("volumes", "compact", "--data-dir", dataDir, "--live-percent", String(percent), "--json").out) as Compacted;
    const tombstones = () => (JSON.parse(runFsgw("volumes", "stats", "--data-dir", dataDir, "--json").out) as { totals: { tombstones: number } }).totals.tombstones;
    const name = (id: number) => `${id.toString(16).padStart(8, "0")}.fsv`;
    /** Every key as it should be, by a server that reads the volumes whole (no checkpoint). */
    const check = async () => {
      rmSync(join(dataDir, "volumes", "checkpoint.fsc"), { force: true });
      server = await startServer({ ...off, dataDir });
      expect(await server.line("event=volumes_ready")).toContain("checkpointRecords=0 ");
      const c = connect({ port: server.port, poolSize: 8 });
      for (const key of gone) expect(await absent(c, key)).toBe(true);
      for (const [key, body] of keepers) expect(sha256(await c.download(key))).toBe(sha256(body));
      c.close();
      await server.stop(); // (a clean stop: a checkpoint, which the next step may read)
      server = null;
    };
    /** A server compacts under 50% live (after the checkpoint the last clean stop left): its log line of `volume`. */
    const serverCompacts = async (volume: number) => {
      server = await startServer({ ...off, dataDir, volumeCompactLivePercent: 50, volumeCompactCheckMs: 100 });
      expect(await server.line("event=volumes_ready")).not.toContain("checkpointRecords=0 ");
      const line = await server.line(`event=volume_compacted volume=${volume} `, 10_000);
      // Killed: the next start reads the volumes whole.
      server.proc.kill("SIGKILL");
      await server.proc.exited;
      server = null;
      return line;
    };
    // Volumes 2 and 3 go. The chain's tombstone stays (copied to volume 4): volume 1 holds the
    // chain's first body, which a scan without the tombstone would bring back (the index learnt
    // that at the overwrite, two runs ago, and each clean stop's checkpoint kept it). The churn's
    // tombstones go with the bodies they deleted.
    expect(await serverCompacts(3)).toContain(" tombstonesKept=1 tombstonesDropped=20 ");
    expect(tombstones()).toBe(10 + 1); // volume 1's own, and the chain's
    await check();
    // Volume 4 goes: the tombstone stays, now from what the start-up scan found dead (and the
    // checkpoint kept).
    expect(await serverCompacts(4)).toContain(" tombstonesKept=1 tombstonesDropped=0 ");
    expect(tombstones()).toBe(11);
    await check();
    // The tombstone's volume (5) first, kept once more, then volume 1, all into volume 6.
    expect(compact(80)).toEqual(expect.objectContaining({ compacted: [name(5), name(1)], tombstonesDropped: 10 }));
    expect(tombstones()).toBe(1);
    await check();
    // Most keepers are deleted (their tombstones in volume 7, their bodies dead in volume 6): volume
    // 7 is compacted first and keeps all 28; then volume 6, where nothing is left for the chain's
    // tombstone to delete: dropped. Then volume 8, where the 28 are kept: dropped too.
    await run(async (c) => {
      for (let i = 2; i < 30; i++) {
        await c.delete(`a/${i}`);
        keepers.delete(`a/${i}`);
        gone.add(`a/${i}`);
      }
    });
    expect(compact(50)).toEqual(expect.objectContaining({ compacted: [name(7), name(6)], tombstonesDropped: 1 }));
    expect(tombstones()).toBe(28);
    await check();
    expect(compact(100)).toEqual(expect.objectContaining({ compacted: [name(8)], tombstonesDropped: 28 }));
    expect(tombstones()).toBe(0);
    await check();
  }, 90_000);

  test("volumeDeadRecordsMax bounds what the index remembers of dead records: past it every tombstone is kept, and the stats and the log say so", async () => {
    const adminPort = freePort();
    const fields = { ...VOLUMES, volumeDeadRecordsMax: 2, volumeCompactCheckMs: 100, volumeCompactLivePercent: 50 };
    // One run writes 3 keys (volume 1), the next deletes them (their tombstones in volume 2: 3 dead
    // records, one past the bound) and compacts volume 1; the third compacts volume 2.
    server = await startServer({ ...fields, volumeCompactLivePercent: 0 });
    const { dataDir } = server;
    let client = connect({ port: server.port });
    for (const k of ["a", "b", "c"]) await client.upload(k, payload(5000, k.charCodeAt(0)));
    client.close();
    await server.stop();
    server = await startServer({ ...fields, dataDir, adminPort });
    client = connect({ port: server.port });
    for (const k of ["a", "b", "c"]) await client.delete(k);
    client.close();
    await server.line("event=volume_compacted volume=1 ", 10_000);
    const stats = (await (await fetch(`http://127.0.0.1:${adminPort}/debug/stats`)).json()) as { store: { volumeDeadRecordsFull: number; volumeDeadRecords: number } };
    expect(stats.store).toMatchObject({ volumeDeadRecordsFull: 1 });
    await server.stop();
    // The checkpoint says the set was full: its tombstones are kept (all three: nothing says that no
    // other volume holds their records).
    server = await startServer({ ...fields, dataDir });
    expect(await server.line("event=volume_compacted volume=2 ", 10_000)).toContain(" tombstonesKept=3 tombstonesDropped=0 ");
    expect(server.lines.some((l) => l.includes("event=volume_dead_records_full"))).toBe(true);
    client = connect({ port: server.port });
    for (const k of ["a", "b", "c"]) expect(await absent(client, k)).toBe(true);
    client.close();
  });

  test("volumeFilesOpenMax bounds the descriptors of volumes a loop keeps for reading", async () => {
    const adminPort = freePort();
    server = await startServer({ ...VOLUMES, volumeFileBytesMax: 1 << 20, volumeFilesOpenMax: 4, volumeCompactLivePercent: 0, adminPort });
    const client = connect({ port: server.port, poolSize: 8 });
    const keys = Array.from({ length: 1600 }, (_, i) => `f/${i}`);
    for (const [i, k] of keys.entries()) await client.upload(k, payload(5000, i));
    expect(volumeFiles(server.dataDir).length).toBeGreaterThanOrEqual(7);
    for (let round = 0; round < 2; round++) for (const [i, k] of keys.entries()) expect(sha256(await client.download(k))).toBe(sha256(payload(5000, i)));
    client.close();
    const open = readdirSync(`/proc/${server.pid}/fd`).filter((fd) => {
      try {
        return readlinkSync(`/proc/${server!.pid}/fd/${fd}`).includes("/volumes/");
      } catch {
        return false;
      }
    });
    // At most 4 for reading, and the volume being appended to.
    expect(open.length).toBeLessThanOrEqual(5);
    const stats = (await (await fetch(`http://127.0.0.1:${adminPort}/debug/stats`)).json()) as { store: { volumeFilesOpen: number; volumeFilesEvicted: number } };
    expect(stats.store.volumeFilesOpen).toBeLessThanOrEqual(4);
    expect(stats.store.volumeFilesEvicted).toBeGreaterThan(0);
  });

  for (const compacting of [false, true]) {
    test(`kill -9 under uploads, overwrites and deletes${compacting ? ", with volumes compacted all the while" : ""}: every key is what was acknowledged, or what was in flight`, async () => {
      // Compacting: small volumes, each compacted as soon as a fifth of it is dead.
      const fields = { ...VOLUMES, volumeBytesMax: 16384, ...(compacting ? { volumeFileBytesMax: 1 << 20, volumeCompactCheckMs: 100, volumeCompactLivePercent: 80 } : {}) };
      server = await startServer({ ...fields, loops: 2 });
    const { dataDir, port } = server;
    /** Per key: the body acknowledged last (null: deleted or never), and what was in flight. */
    const model = new Map<string, { acked: string | null; inFlight: string | null | undefined }>();
    const workers = Array.from({ length: 8 }, async (_, w) => {
      const client = connect({ port });
      try {
        for (let i = 0; ; i++) {
          const key = `m/${w}/${i % 25}`;
          const state = model.get(key) ?? { acked: null, inFlight: undefined };
          model.set(key, state);
          if (i % 7 === 6) {
            state.inFlight = null;
            await client.delete(key).catch((e) => {
              if (!(e instanceof ServerError)) throw e; // not there: still deleted
            });
            state.acked = null;
          } else {
            // Mostly records, now and then a file: overwrites cross between the two.
            const body = payload(i % 5 === 4 ? 40_000 : 1 + ((i * 131) % 16384), w * 100_000 + i);
            state.inFlight = sha256(body);
            await client.upload(key, body);
            state.acked = state.inFlight;
          }
          state.inFlight = undefined;
        }
      } catch {
        // the server went away
      } finally {
        client.close();
      }
    });
    await Bun.sleep(compacting ? 3000 : 1500);
    const killedDuring = [...server.lines];
    server.proc.kill("SIGKILL");
    await server.proc.exited;
    await Promise.all(workers);
    server = await startServer({ ...fields, dataDir });
    const client = connect({ port: server.port, poolSize: 8 });
    let checked = 0;
    for (const [key, { acked, inFlight }] of model) {
      const got = await client.download(key).then(
        (b) => sha256(b),
        (e) => {
          if (e instanceof ServerError && /no such/.test(e.text)) return null;
          throw e;
        },
      );
      const allowed = inFlight === undefined ? [acked] : [acked, inFlight];
      if (!allowed.includes(got)) throw new Error(`${key}: got ${got}, acknowledged ${acked}, in flight ${inFlight}`);
      checked++;
    }
    expect(checked).toBeGreaterThan(100);
    // One copy of each key: no key is both a file and a record.
    const files = new Set(shardFiles(dataDir));
    const listed: string[] = [];
    for await (const page of client.list({ prefix: "m/" })) listed.push(...page.entries.map((e) => e.key));
    expect(new Set(listed).size).toBe(listed.length);
    for (const k of files) if (k.startsWith("m/")) expect(listed).toContain(k);
    client.close();
    expect(readFileSync(join(dataDir, "fsgw-layout.json"), "utf8")).toContain("fnv1a32");
    if (compacting) expect(killedDuring.some((l) => l.includes("event=volume_compacted"))).toBe(true);
  }, 60_000);
  }
});
