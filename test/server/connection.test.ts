// Drives one Connection (src/server/connection.ts) through its states against a fake socket and a
// fake store: every exchange, its failures, input in any split, backpressure both ways, a close in
// the middle of a store operation, and bugs. Deterministic: no server, no disk, no clock; the test
// decides when each store operation answers.
import { describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { Access, type TokenScope, type Verified } from "../../src/auth/token";
import { Logger } from "../../src/log";
import { ServerStats } from "../../src/observe/stats";
import { protobufCodec } from "../../src/protocol/codec";
import { FrameDecoder } from "../../src/protocol/frame-decoder";
import { Msg, Op, type MessageInit, type WireMessage } from "../../src/protocol/message";
import { BufferPool } from "../../src/server/buffer-pool";
import { Connection, FRAME_ROOM, type ConnectionHost } from "../../src/server/connection";
import type { StoreKey } from "../../src/storage/keys";
import { EntryType, Failure, type BodyReader, type EntryKind, type FailureCause, type FailureKind, type StatTarget, type Store, type StoreTarget, type UploadOwner, type UploadSink } from "../../src/storage/store";

const INLINE_MAX = 1024;
const BUFFER_MAX = 64 * 1024;

/** The socket: records what the connection writes; takes at most `room` bytes a write. */
class FakeSocket {
  readonly out: Uint8Array[] = [];
  room = Infinity;
  paused = false;
  ended = false;
  readonly remoteAddress = "127.0.0.9";
  readonly remotePort = 40000;
  write(bytes: Uint8Array): number {
    if (this.ended) return -1;
    const n = Math.min(bytes.length, this.room);
    if (n > 0) this.out.push(bytes.slice(0, n));
    return n;
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  end(): void {
    this.ended = true;
  }
}

/** What the connection wrote, read in order: frames, and raw bodies between them. */
class Output {
  private buffered = new Uint8Array(0);
  private taken = 0;
  private readonly decoder = new FrameDecoder(1 << 20);
  constructor(private readonly socket: FakeSocket) {}
  private pull(): void {
    const fresh = this.socket.out.slice(this.taken);
    this.taken = this.socket.out.length;
    if (fresh.length > 0) this.buffered = Buffer.concat([this.buffered, ...fresh]);
  }
  frame(): WireMessage {
    this.pull();
    const used = this.decoder.feed(this.buffered, 0);
    this.buffered = this.buffered.subarray(used);
    const f = this.decoder.takeFrame();
    if (f === null) throw new Error("no whole frame written");
    return protobufCodec.decode(f);
  }
  body(n: number): Uint8Array {
    this.pull();
    if (this.buffered.length < n) throw new Error(`a body of ${n} bytes expected, ${this.buffered.length} written`);
    const b = this.buffered.slice(0, n);
    this.buffered = this.buffered.subarray(n);
    return b;
  }
  get pending(): number {
    this.pull();
    return this.buffered.length;
  }
}

/** One store operation the connection asked for, answered when the test says. */
interface Call {
  op: string;
  key: string;
  target: StoreTarget;
  body?: Uint8Array;
  into?: Uint8Array;
  digest?: Uint8Array;
}

/** A streamed upload's sink: keeps what is pushed; the test ends it. */
class FakeSink implements UploadSink {
  readonly pushed: Uint8Array[] = [];
  ended = false;
  aborted = false;
  backlogBytes = 0;
  constructor(
    readonly owner: UploadOwner,
    readonly uploadId?: string,
  ) {}
  push(chunk: Uint8Array): void {
    this.pushed.push(chunk.slice());
    this.backlogBytes += chunk.length;
  }
  end(): void {
    this.ended = true;
  }
  abort(): Promise<void> {
    this.aborted = true;
    return Promise.resolve();
  }
}

/** A streamed download's reader: the test answers its open and reads. */
class FakeReader implements BodyReader {
  size = 0;
  closed = false;
  ranged: [number, number] | null = null;
  readonly reads: { into: Uint8Array; target: StoreTarget }[] = [];
  opened: StoreTarget | null = null;
  open(target: StoreTarget): void {
    this.opened = target;
  }
  range(offset: number, length: number): void {
    this.ranged = [offset, length];
  }
  read(into: Uint8Array, target: StoreTarget): void {
    this.reads.push({ into, target });
  }
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

class FakeStore implements Store {
  readonly description = "fake";
  readonly calls: Call[] = [];
  readonly sinks: FakeSink[] = [];
  readonly readers: FakeReader[] = [];
  /** Throw from the next call: a bug of the store's own. */
  throwNext = false;
  init(): void {}
  private record(call: Call): void {
    if (this.throwNext) {
      this.throwNext = false;
      throw new Error("a bug in the store");
    }
    this.calls.push(call);
  }
  stat(key: StoreKey, target: StatTarget, digest?: Uint8Array): void {
    this.record({ op: "stat", key: key.name, target, digest });
  }
  remove(key: StoreKey, target: StoreTarget): void {
    this.record({ op: "remove", key: key.name, target });
  }
  putWhole(key: StoreKey, body: Uint8Array, target: StoreTarget, _expected?: Uint8Array | null, digest?: Uint8Array): void {
    this.record({ op: "putWhole", key: key.name, target, body: body.slice(), digest });
  }
  readWhole(key: StoreKey, into: Uint8Array, target: StoreTarget, digest?: Uint8Array): void {
    this.record({ op: "readWhole", key: key.name, target, into, digest });
  }
  beginUpload(key: StoreKey, _size: number, owner: UploadOwner): UploadSink {
    this.record({ op: "beginUpload", key: key.name, target: owner });
    const sink = new FakeSink(owner);
    this.sinks.push(sink);
    return sink;
  }
  openReader(key: StoreKey): BodyReader {
    this.record({ op: "openReader", key: key.name, target: null as never });
    const reader = new FakeReader();
    this.readers.push(reader);
    return reader;
  }
}

interface Rig {
  conn: Connection;
  socket: FakeSocket;
  out: Output;
  store: FakeStore;
  stats: ServerStats;
  lines: string[];
  closed: () => boolean;
  /** Bytes from the client, in one piece (or in pieces of `split` bytes). */
  send(msg: MessageInit | Uint8Array, split?: number): void;
  /** The store's answers: a value (stat: a size and what the key names), or a failure. */
  done(call: Call, value: number, entry?: EntryKind): void;
  fail(call: Call, kind: FailureKind): void;
  next(op: string): Call;
}

function rig(options: { tokens?: boolean; scope?: TokenScope } = {}): Rig {
  const socket = new FakeSocket();
  const store = new FakeStore();
  const stats = new ServerStats(0);
  const lines: string[] = [];
  let closedByServer = false;
  const host: ConnectionHost = {
    store,
    codec: protobufCodec,
    log: new Logger("debug", (l) => lines.push(l)),
    stats,
    frameBytesMax: 64 * 1024,
    connectionBufferBytesMax: BUFFER_MAX,
    uploadBytesMax: 1 << 30,
    listPageBytesMax: 1 << 20,
    inlineBytesMax: INLINE_MAX,
    ioChunkBytes: 4096,
    uploadWritesInFlightMax: 2,
    inlineBuffers: new BufferPool(FRAME_ROOM + INLINE_MAX + FRAME_ROOM, 4),
    zeroCopy: false,
    socketDescriptor: () => -1,
    track: () => {},
    workStarted: () => {},
    workDone: () => {},
    draining: false,
    onConnectionClosed: () => void (closedByServer = true),
    tokensRequired: options.tokens ?? false,
    verifyToken: (token: string): Verified => (token === "good" ? { ok: true, scope: options.scope ?? { id: "t", access: Access.READ | Access.WRITE | Access.DELETE, prefix: "", expiresAtMs: Number.MAX_SAFE_INTEGER } } : { ok: false, reason: "bad", id: "" }),
    authFailed: () => false,
    authenticatedChanged: () => {},
  };
  const conn = new Connection(socket as unknown as Socket<Connection>, host);
  const send = (msg: MessageInit | Uint8Array, split = 0) => {
    const bytes = msg instanceof Uint8Array ? msg : protobufCodec.encodeFrame(msg);
    if (split <= 0) return conn.onData(bytes.slice());
    for (let i = 0; i < bytes.length; i += split) conn.onData(bytes.slice(i, i + split));
  };
  return {
    conn,
    socket,
    out: new Output(socket),
    store,
    stats,
    lines,
    closed: () => closedByServer,
    send,
    done: (call, value, entry = EntryType.FILE) => (call.op === "stat" ? (call.target as StatTarget).onStat(value, entry) : call.target.onStoreDone(value)),
    fail: (call, kind) => call.target.onStoreFailed(kind, CAUSE),
    next(op) {
      const i = store.calls.findIndex((c) => c.op === op);
      if (i < 0) throw new Error(`no ${op} call (calls: ${store.calls.map((c) => c.op).join(", ") || "none"})`);
      return store.calls.splice(i, 1)[0]!;
    },
  };
}

const CAUSE: FailureCause = { text: "what the fake medium said" };
const bytes = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

describe("one request, one reply", () => {
  test("bench answers at once, a frame fed a byte at a time", () => {
    const r = rig();
    r.send({ operation: Op.BENCH_MARK, key: "b" }, 1);
    expect(r.out.frame()).toMatchObject({ operation: Op.BENCH_MARK_RSP, key: "b" });
    expect(r.conn.state).toBe("frame");
    expect(r.stats.ops.bench.count).toBe(1);
  });

  test("exist waits for the store, then answers size, type and digest; a failure is its text", () => {
    const r = rig();
    r.send({ operation: Op.EXIST, key: "k" });
    expect(r.conn.state).toBe("exist");
    const call = r.next("stat");
    call.digest!.set([1, ...new Uint8Array(32).fill(0xab)]);
    r.done(call, 1234, EntryType.FILE);
    expect(r.out.frame()).toMatchObject({ operation: Op.EXIST_RSP, key: "k", size: 1234, type: 1, message: Msg.SUCCESS, digest: "ab".repeat(32) });
    r.send({ operation: Op.EXIST, key: "gone" });
    r.fail(r.next("stat"), Failure.NOT_FOUND);
    expect(r.out.frame()).toMatchObject({ operation: Op.EXIST_RSP, message: "no such key" });
    expect(r.conn.state).toBe("frame");
    expect([r.stats.ops.exist.count, r.stats.ops.exist.errors]).toEqual([2, 1]);
  });

  test("delete waits for the store; its failures are texts", () => {
    const r = rig();
    r.send({ operation: Op.DELETE, key: "k" });
    r.done(r.next("remove"), 0);
    expect(r.out.frame()).toMatchObject({ operation: Op.DELETE_RSP, message: Msg.SUCCESS });
    for (const [kind, text] of [
      [Failure.PERMISSION, "permission denied"],
      [Failure.BUSY, "server busy: try again"],
      [Failure.LINK_REFUSED, "refused: a symbolic link stands in the data directory"],
    ] as const) {
      r.send({ operation: Op.DELETE, key: "k" });
      r.fail(r.next("remove"), kind);
      expect(r.out.frame().message).toBe(text);
    }
  });

  test("a bad key is refused with its reason and reaches no store", () => {
    const r = rig();
    for (const key of ["../x", "a//b", ""]) {
      r.send({ operation: Op.EXIST, key });
      expect(r.out.frame().message).toStartWith("invalid key");
    }
    expect(r.store.calls).toEqual([]);
  });

  test("requests sent while the store works are stashed, reading pauses, and they are answered in order", () => {
    const r = rig();
    const three = Buffer.concat([protobufCodec.encodeFrame({ operation: Op.EXIST, key: "a" }), protobufCodec.encodeFrame({ operation: Op.BENCH_MARK, key: "b" }), protobufCodec.encodeFrame({ operation: Op.EXIST, key: "c" })]);
    r.send(three);
    expect(r.socket.paused).toBe(true);
    expect(r.out.pending).toBe(0); // bench waits behind the exist
    r.done(r.next("stat"), 1, EntryType.FILE);
    expect(r.out.frame()).toMatchObject({ operation: Op.EXIST_RSP, key: "a" });
    expect(r.out.frame()).toMatchObject({ operation: Op.BENCH_MARK_RSP, key: "b" });
    r.done(r.next("stat"), 2, EntryType.FILE);
    expect(r.out.frame()).toMatchObject({ operation: Op.EXIST_RSP, key: "c", size: 2 });
    expect(r.socket.paused).toBe(false);
  });
});

describe("uploads", () => {
  test("a small body is gathered whole, stored in one call, answered END; the ACK ends the exchange", () => {
    const r = rig();
    const body = bytes(700);
    r.send({ operation: Op.UPLOAD, key: "s", size: 700 });
    expect(r.out.frame()).toMatchObject({ operation: Op.UPLOAD_RSP, message: Msg.START });
    r.send(body, 100);
    expect(r.conn.state).toBe("upload_commit");
    const put = r.next("putWhole");
    expect(Buffer.from(put.body!).equals(Buffer.from(body))).toBe(true);
    r.done(put, 700);
    expect(r.out.frame()).toMatchObject({ operation: Op.UPLOAD, message: Msg.END });
    expect(r.conn.state).toBe("upload_ack");
    r.send({ operation: Op.UPLOAD, key: "s", message: Msg.ACK });
    expect(r.conn.state).toBe("frame");
  });

  test("a store failure ends the upload with its text; the client's ACK, if it sends one, is skipped", () => {
    const r = rig();
    r.send({ operation: Op.UPLOAD, key: "s", size: 10 });
    r.out.frame();
    r.send(bytes(10));
    r.fail(r.next("putWhole"), Failure.NO_SPACE);
    expect(r.out.frame()).toMatchObject({ operation: Op.UPLOAD, message: "disk full" });
    expect(r.conn.state).toBe("upload_error");
    r.send({ operation: Op.UPLOAD, key: "s", message: Msg.ACK });
    r.send({ operation: Op.BENCH_MARK, key: "next" });
    expect(r.out.frame()).toMatchObject({ operation: Op.BENCH_MARK_RSP, key: "next" });
  });

  test("sizes outside 1..uploadBytesMax and bad digests are refused before START", () => {
    const r = rig();
    r.send({ operation: Op.UPLOAD, key: "z", size: 0 });
    expect(r.out.frame().message).toStartWith("invalid size 0");
    r.send({ operation: Op.UPLOAD, key: "z", size: 2 ** 31 });
    expect(r.out.frame().message).toStartWith("file too large");
    r.send({ operation: Op.UPLOAD, key: "z", size: 5, digest: "nothex" });
    expect(r.out.frame().message).toStartWith("invalid digest");
    expect(r.store.calls).toEqual([]);
  });

  test("a large body streams to the store's sink; past connectionBufferBytesMax held, reading pauses until it drains", () => {
    const r = rig();
    const size = 3 * BUFFER_MAX;
    r.send({ operation: Op.UPLOAD, key: "big", size });
    expect(r.conn.state).toBe("upload_open");
    const begin = r.next("beginUpload");
    const sink = r.store.sinks[0]!;
    r.done(begin, 0); // the store is ready for the body
    expect(r.out.frame()).toMatchObject({ operation: Op.UPLOAD_RSP, message: Msg.START });
    const body = bytes(size, 3);
    r.send(body.subarray(0, BUFFER_MAX + 1));
    expect(r.socket.paused).toBe(true); // more held than the bound
    sink.backlogBytes = 0; // the store wrote it out
    r.conn.onUploadProgress();
    expect(r.socket.paused).toBe(false);
    r.send(body.subarray(BUFFER_MAX + 1));
    expect(sink.ended).toBe(true);
    expect(Buffer.concat(sink.pushed).equals(Buffer.from(body))).toBe(true);
    r.conn.onUploadDone(size);
    expect(r.out.frame()).toMatchObject({ operation: Op.UPLOAD, message: Msg.END });
  });

  test("a client gone mid-body aborts the upload (its sink hears abort), and nothing more is written", () => {
    const r = rig();
    r.send({ operation: Op.UPLOAD, key: "big", size: 10_000 });
    r.done(r.next("beginUpload"), 0);
    r.out.frame();
    r.send(bytes(4000));
    r.conn.onClose();
    expect(r.store.sinks[0]!.aborted).toBe(true);
    expect(r.conn.state).toBe("closed");
    expect(r.closed()).toBe(true);
  });
});

describe("downloads", () => {
  test("a small file: one read, then START, body and END in one write; the ACK ends it", () => {
    const r = rig();
    r.send({ operation: Op.DOWNLOAD, key: "d" });
    const read = r.next("readWhole");
    const body = bytes(300, 5);
    read.into!.set(body);
    r.done(read, 300);
    expect(r.socket.out.length).toBe(1);
    expect(r.out.frame()).toMatchObject({ operation: Op.DOWNLOAD_RSP, message: Msg.START, size: 300 });
    expect(Buffer.from(r.out.body(300)).equals(Buffer.from(body))).toBe(true);
    expect(r.out.frame()).toMatchObject({ operation: Op.DOWNLOAD, message: Msg.END });
    expect(r.conn.state).toBe("download_ack");
    r.send({ operation: Op.DOWNLOAD, key: "d", message: Msg.ACK });
    expect(r.conn.state).toBe("frame");
  });

  test("a file larger than inlineBytesMax streams: open, then reads as the socket takes them", () => {
    const r = rig();
    const size = 10_000;
    const body = bytes(size, 7);
    r.send({ operation: Op.DOWNLOAD, key: "big" });
    r.done(r.next("readWhole"), size); // too large to read whole: its size
    r.next("openReader");
    const reader = r.store.readers[0]!;
    reader.size = size;
    reader.opened!.onStoreDone(size);
    expect(r.out.frame()).toMatchObject({ operation: Op.DOWNLOAD_RSP, message: Msg.START, size });
    let sent = 0;
    while (sent < size) {
      const { into, target } = reader.reads.shift()!;
      const n = Math.min(into.length, size - sent);
      into.set(body.subarray(sent, sent + n));
      sent += n;
      target.onStoreDone(n);
    }
    expect(Buffer.from(r.out.body(size)).equals(Buffer.from(body))).toBe(true);
    expect(r.out.frame()).toMatchObject({ operation: Op.DOWNLOAD, message: Msg.END });
    expect(reader.closed).toBe(true);
  });

  test("a range is asked of the reader and answered with offset and file size; past the end is refused", () => {
    const r = rig();
    r.send({ operation: Op.DOWNLOAD, key: "f", offset: 100, length: 50 });
    r.next("openReader");
    const reader = r.store.readers[0]!;
    reader.opened!.onStoreDone(1000);
    expect(reader.ranged).toEqual([100, 50]);
    expect(r.out.frame()).toMatchObject({ message: Msg.START, size: 50, offset: 100, fileSize: 1000 });
    const { into, target } = reader.reads.shift()!;
    into.fill(9, 0, 50);
    target.onStoreDone(50);
    r.out.body(50);
    expect(r.out.frame().message).toBe(Msg.END);
    r.send({ operation: Op.DOWNLOAD, key: "f", message: Msg.ACK });
    r.send({ operation: Op.DOWNLOAD, key: "f", offset: 5000 });
    r.next("openReader");
    r.store.readers[1]!.opened!.onStoreDone(1000);
    expect(r.out.frame().message).toStartWith("range not satisfiable");
    expect(r.store.readers[1]!.closed).toBe(true);
  });

  test("a reply the socket does not take waits, and past connectionBufferBytesMax reading pauses until it drains", () => {
    const r = rig();
    r.socket.room = 0; // the client reads nothing
    const frame = protobufCodec.encodeFrame({ operation: Op.BENCH_MARK, key: "x".repeat(200) });
    let sent = 0;
    while (!r.socket.paused && sent < 10_000) {
      r.send(frame);
      sent++;
    }
    expect(r.socket.paused).toBe(true);
    expect(sent).toBeGreaterThan(BUFFER_MAX / (frame.length + 50)); // paused only once past the bound
    r.socket.room = Infinity;
    r.conn.onDrain();
    expect(r.socket.paused).toBe(false);
    for (let i = 0; i < sent; i++) expect(r.out.frame().operation).toBe(Op.BENCH_MARK_RSP);
  });
});

describe("access and misbehaviour", () => {
  test("with tokens, nothing but AUTH is served until a good token; the scope is checked per exchange", () => {
    const r = rig({ tokens: true, scope: { id: "t", access: Access.READ, prefix: "p/", expiresAtMs: Number.MAX_SAFE_INTEGER } });
    r.send({ operation: Op.EXIST, key: "p/a" });
    expect(r.out.frame().message).toBe("unauthorized");
    r.send({ operation: Op.AUTH, key: "", token: "bad" });
    expect(r.out.frame().message).toBe("unauthorized");
    r.send({ operation: Op.AUTH, key: "", token: "good" });
    expect(r.out.frame().message).toBe(Msg.SUCCESS);
    expect(r.conn.authenticated).toBe(true);
    r.send({ operation: Op.DELETE, key: "p/a" });
    expect(r.out.frame().message).toBe("forbidden: operation not allowed");
    r.send({ operation: Op.EXIST, key: "q/a" });
    expect(r.out.frame().message).toBe("forbidden: key outside token scope");
    r.send({ operation: Op.EXIST, key: "p/a" });
    r.done(r.next("stat"), 3, EntryType.FILE);
    expect(r.out.frame().message).toBe(Msg.SUCCESS);
  });

  test("a frame longer than frameBytesMax, garbage, or anything but the ACK after END closes the connection", () => {
    for (const bad of [
      Uint8Array.from([0x01, 0x00, 0x02, 0x00]), // a length of 128 KiB + 1 > frameBytesMax: refused before any allocation
      Uint8Array.from([0, 0, 0, 0]), // a length of 0
      Uint8Array.from([3, 0, 0, 0, 0xff, 0xff, 0xff]), // 3 bytes that are no message
    ]) {
      const r = rig();
      r.send(bad);
      expect([r.conn.state, r.socket.ended]).toEqual(["closed", true]);
      expect(r.stats.protocolViolations).toBe(1);
    }
    const r = rig();
    r.send({ operation: Op.DOWNLOAD, key: "d" });
    r.done(r.next("readWhole"), 3);
    r.send({ operation: Op.BENCH_MARK, key: "not an ack" });
    expect(r.conn.state).toBe("closed");
  });

  test("a store that throws is a bug: logged with its stack, counted, and only this connection closes", () => {
    const r = rig();
    r.store.throwNext = true;
    r.send({ operation: Op.EXIST, key: "k" });
    expect(r.conn.state).toBe("closed");
    expect(r.stats.connectionBugs).toBe(1);
    expect(r.lines.find((l) => l.includes("event=connection_bug"))).toContain("a bug in the store");
  });

  test("a store result that arrives after the connection closed is dropped; its buffer goes back", () => {
    const r = rig();
    r.send({ operation: Op.DOWNLOAD, key: "d" });
    const read = r.next("readWhole");
    r.conn.onClose();
    r.done(read, 100);
    expect(r.socket.out).toEqual([]);
    expect(r.stats.connectionBugs).toBe(0);
  });
});
