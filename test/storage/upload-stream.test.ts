// Proves the streamed upload's write plan and its endings, against a scripted fake engine: large
// chunks are written as they are (no copy), small ones gathered; offsets are exact with several
// writes in flight; a failure drops the rest and removes the temporary file; an abort cleans up; a
// body of another size than announced is never renamed into place.
import { describe, expect, test } from "bun:test";
import { BunHasher, bunDigestOf, callbacksFromPromises, type CallbackOps, type IoEngine, type OpenMode } from "../../src/engine/io-engine";
import { errnoName, ioErrorFromErrno } from "../../src/engine/io-error";
import { Partials, type ClientBudget } from "../../src/storage/partials";
import { UploadStream } from "../../src/storage/upload-stream";
import { recordingOwner } from "../helpers/recording-owner";

interface Call {
  op: string;
  path?: string;
  data?: Uint8Array;
  position?: number;
  settle: (error?: Error) => void;
}

function notUsed(): never {
  throw new Error("not used by an upload");
}

/** An engine whose operations complete only when the test says so. */
class FakeEngine implements IoEngine {
  readonly name = "fake";
  readonly inline = null;
  readonly callbacks: CallbackOps = callbacksFromPromises(this);
  readonly zeroCopy = null;
  readonly calls: Call[] = [];
  confine() {
    return 0;
  }
  newHasher() {
    return new BunHasher();
  }
  digestOf(bytes: Uint8Array, out: Uint8Array) {
    bunDigestOf(bytes, out);
  }
  private pending(op: string, extra: Partial<Call> = {}): Promise<any> {
    return new Promise((resolve, reject) => {
      this.calls.push({ op, ...extra, settle: (e?: Error) => (e ? reject(e) : resolve(op === "open" ? 7 : undefined)) });
    });
  }
  open(path: string, _mode: OpenMode): Promise<number> {
    return this.pending("open", { path });
  }
  write(_fd: number, data: Uint8Array, position: number): Promise<void> {
    return this.pending("write", { data, position });
  }
  close(): Promise<void> {
    return this.pending("close");
  }
  rename(): Promise<void> {
    return this.pending("rename");
  }
  unlink(): Promise<void> {
    return this.pending("unlink");
  }
  fsync(): Promise<void> {
    return this.pending("fsync");
  }
  // Not used by an upload: calling one fails the test.
  read = notUsed as IoEngine["read"];
  fstat = notUsed as IoEngine["fstat"];
  stat = notUsed as IoEngine["stat"];
  commitFile = notUsed as IoEngine["commitFile"];
  readWhole = notUsed as IoEngine["readWhole"];
  stats() {
    return { name: this.name, fsyncs: 0 };
  }
  async shutdown(): Promise<void> {}
  /** Completes the oldest pending call of `op`. */
  async complete(op: string, error?: Error): Promise<Call> {
    const i = this.calls.findIndex((c) => c.op === op);
    if (i < 0) throw new Error(`no pending ${op}; pending: ${this.calls.map((c) => c.op).join(", ")}`);
    const [call] = this.calls.splice(i, 1);
    call!.settle(error);
    await Bun.sleep(0);
    return call!;
  }
}

/** No per-client bounds: the table's own bounds are the ones under test. */
const noBudget: ClientBudget = {
  takeUpload: () => null,
  releaseUpload: () => {},
  takeBytes: () => null,
  releaseBytes: () => {},
};

interface UploadOptions {
  fsync?: boolean;
  expected?: Uint8Array;
  /** A resumable upload, registered in a table that keeps at most this many bytes. */
  resumableBytesMax?: number;
}

/** An upload on a fresh fake engine, its open asked (not yet answered). */
function newUpload(size: number, { fsync = false, expected, resumableBytesMax }: UploadOptions = {}) {
  const engine = new FakeEngine();
  const { o, events } = recordingOwner();
  let partial: { table: Partials; entry: any; resume: false } | undefined;
  if (resumableBytesMax !== undefined) {
    const table = new Partials({ uploadsMax: 10, bytesMax: resumableBytesMax, ttlMs: 60_000 }, noBudget);
    const entry = table.register("key", "/tmp/t", size, null, ["127.0.0.1"], Date.now());
    if (typeof entry === "string") throw new Error(entry);
    partial = { table, entry, resume: false };
  }
  const up = new UploadStream(engine, fsync ? "/data/ab/.tmp" : "/tmp/t", fsync ? "/data/ab/key" : "/tmp/f", size, {
    fsync,
    chunkBytesMax: 256 * KiB,
    writesInFlightMax: 2,
    owner: o,
    zeroCopy: null,
    expected: expected ?? null,
    partial,
  });
  up.open();
  return { engine, events, up, table: partial?.table };
}

/** An upload on a fresh fake engine, its temporary file already created. */
async function openedUpload(size: number, options: UploadOptions = {}) {
  const opened = newUpload(size, options);
  await opened.engine.complete("open");
  expect(opened.events).toEqual(["open:0"]);
  expect(opened.up.state).toBe("writing");
  return opened;
}

const KiB = 1024;

describe("UploadStream", () => {
  test("large chunks go out as they are, small ones are gathered; offsets exact with 2 writes in flight", async () => {
    const { engine, events, up } = await openedUpload(440 * KiB);
    const big1 = new Uint8Array(100 * KiB);
    const big2 = new Uint8Array(300 * KiB); // over chunkBytesMax: split, still without a copy
    up.push(big1);
    up.push(big2);
    const smalls = Array.from({ length: 10 }, () => new Uint8Array(4 * KiB));
    for (const s of smalls) up.push(s);
    expect(engine.calls.filter((c) => c.op === "write").length).toBe(2); // two in flight at most
    expect(up.backlogBytes).toBe(400 * KiB + 40 * KiB);
    let w = await engine.complete("write");
    expect(w.data).toBe(big1); // the very buffer pushed: no copy
    expect(w.position).toBe(0);
    w = await engine.complete("write");
    expect(w.data!.buffer).toBe(big2.buffer);
    expect([w.position, w.data!.length]).toEqual([100 * KiB, 256 * KiB]);
    w = await engine.complete("write");
    // The 44 KiB left of big2 is a small chunk now: gathered with the ten small ones, one write.
    expect([w.position, w.data!.length]).toEqual([356 * KiB, 84 * KiB]);
    up.end();
    await engine.complete("close");
    await engine.complete("rename");
    expect(events.at(-1)).toBe(`committed:${440 * KiB}`);
    expect(up.backlogBytes).toBe(0);
  });

  test("a failed write drops the rest of the body, removes the temporary file, and reports once the body is over", async () => {
    const { engine, events, up } = await openedUpload(200 * KiB);
    up.push(new Uint8Array(100 * KiB));
    await engine.complete("write", ioErrorFromErrno(-28, "write"));
    expect(events).toContain("progress"); // a socket paused for backlog gets to resume
    up.push(new Uint8Array(100 * KiB)); // dropped
    expect(engine.calls.map((c) => c.op)).toEqual(["close"]);
    await engine.complete("close");
    await engine.complete("unlink");
    expect(events.filter((e) => e.startsWith("failed"))).toEqual([]); // the body is not over yet
    up.end();
    await Bun.sleep(0);
    expect(events.at(-1)).toBe("failed:ENOSPC");
  });

  test("abort mid-body waits for writes in flight, then closes and unlinks; the owner hears nothing", async () => {
    const { engine, events, up } = await openedUpload(200 * KiB);
    up.push(new Uint8Array(100 * KiB));
    const done = up.abort();
    expect(engine.calls.map((c) => c.op)).toEqual(["write"]); // the fd stays open until it is back
    await engine.complete("write");
    await engine.complete("close");
    await engine.complete("unlink");
    await done;
    expect(events.filter((e) => e !== "progress")).toEqual(["open:0"]);
  });

  test("with fsync: the file is fsynced before its rename and its directory after it", async () => {
    const { engine, events, up } = await openedUpload(10, { fsync: true });
    up.push(new Uint8Array(10));
    up.end();
    const order: string[] = [];
    for (const op of ["write", "fsync", "close", "rename", "open", "fsync", "close"]) {
      const call = await engine.complete(op);
      order.push(op + (call.path ? ` ${call.path}` : ""));
    }
    expect(order).toEqual(["write", "fsync", "close", "rename", "open /data/ab", "fsync", "close"]);
    expect(events.at(-1)).toBe("committed:10");
  });

  test("an abort after the whole body arrived still commits", async () => {
    const { engine, up } = await openedUpload(10);
    up.push(new Uint8Array(10));
    up.end();
    const done = up.abort();
    await engine.complete("write");
    await engine.complete("close");
    await engine.complete("rename");
    await done;
    expect(engine.calls).toEqual([]);
  });

  test("a body of another size than announced is a bug: never renamed into place, its temporary file removed", async () => {
    const { engine, events, up } = await openedUpload(20);
    up.push(new Uint8Array(10));
    up.end(); // 10 bytes written of 20 announced: the caller's bookkeeping is wrong
    await engine.complete("write");
    expect(engine.calls.map((c) => c.op)).toEqual(["close"]);
    await engine.complete("close");
    await engine.complete("unlink");
    expect(engine.calls).toEqual([]);
    expect(events.at(-1)).toBe("bug:upload commit with 10 bytes written of 20 announced");
  });
  test("a body whose SHA-256 is not the announced one is answered DIGEST_MISMATCH, never renamed, its file removed", async () => {
    const { engine, events, up } = await openedUpload(3, { expected: new Uint8Array(32) });
    up.push(new Uint8Array([1, 2, 3]));
    up.end();
    await engine.complete("write");
    expect(up.state).toBe("removing");
    expect(engine.calls.map((c) => c.op)).toEqual(["close"]);
    await engine.complete("close");
    await engine.complete("unlink");
    expect(up.state).toBe("settled");
    expect(events.at(-1)).toBe("failed:the body's SHA-256 is not the one announced");
  });

  test("an open that fails ends the upload at once: the owner hears why, nothing to clean", async () => {
    const { engine, events, up } = newUpload(10);
    await engine.complete("open", ioErrorFromErrno(-13, "open"));
    expect(up.state).toBe("settled");
    expect(events).toEqual(["open failed:EACCES"]);
    expect(engine.calls).toEqual([]);
  });

  test("an owner gone while the file opens: once open, it is closed and removed, and nobody hears", async () => {
    const { engine, events, up } = newUpload(10);
    const done = up.abort();
    expect(up.state).toBe("opening");
    await engine.complete("open");
    expect(up.state).toBe("removing");
    await engine.complete("close");
    await engine.complete("unlink");
    await done;
    expect(up.state).toBe("settled");
    expect(events).toEqual([]);
  });

  test("a resumable upload whose owner goes is drained, then parked with exactly the bytes written", async () => {
    const { engine, events, up, table } = await openedUpload(300 * KiB, { resumableBytesMax: 1024 * KiB });
    up.push(new Uint8Array(100 * KiB));
    up.push(new Uint8Array(100 * KiB));
    up.push(new Uint8Array(50 * KiB)); // queued behind 2 writes in flight
    const done = up.abort();
    expect(up.state).toBe("draining");
    await engine.complete("write");
    await engine.complete("write");
    await engine.complete("write"); // the queued bytes go out before the file is closed
    expect(engine.calls.map((c) => c.op)).toEqual(["close"]);
    expect(up.state).toBe("parking");
    await engine.complete("close");
    await done;
    expect(up.state).toBe("settled");
    expect(engine.calls).toEqual([]); // kept: not unlinked
    expect(table!.size).toBe(1);
    expect(table!.keptBytes).toBe(250 * KiB);
    expect(events.filter((e) => e !== "progress")).toEqual(["open:0"]);
  });

  test("a resumable upload parked past the table's byte bound is discarded: its file removed, its entry gone", async () => {
    const { engine, up, table } = await openedUpload(300 * KiB, { resumableBytesMax: 64 * KiB });
    up.push(new Uint8Array(100 * KiB));
    const done = up.abort();
    await engine.complete("write");
    await engine.complete("close");
    await engine.complete("unlink");
    await done;
    expect(table!.size).toBe(0);
    expect(table!.keptBytes).toBe(0);
  });

  test("a write that fails while a resumable upload drains discards it after all: removed, forgotten", async () => {
    const { engine, up, table } = await openedUpload(300 * KiB, { resumableBytesMax: 1024 * KiB });
    up.push(new Uint8Array(100 * KiB));
    const done = up.abort();
    await engine.complete("write", ioErrorFromErrno(-5, "write"));
    expect(up.state).toBe("removing");
    await engine.complete("close");
    await engine.complete("unlink");
    await done;
    expect(up.state).toBe("settled");
    expect(table!.size).toBe(0);
  });

  test("a failed rename is told once; the rename removed its own file, nothing more is unlinked", async () => {
    const { engine, events, up } = await openedUpload(10);
    up.push(new Uint8Array(10));
    up.end();
    await engine.complete("write");
    expect(up.state).toBe("committing");
    await engine.complete("close");
    await engine.complete("rename", ioErrorFromErrno(-28, "rename"));
    await engine.complete("unlink"); // finishCommit's own cleanup
    await up.done;
    expect(up.state).toBe("settled");
    expect(engine.calls).toEqual([]);
    expect(events.filter((e) => e.startsWith("failed") || e.startsWith("committed"))).toEqual(["failed:ENOSPC"]);
  });
});
