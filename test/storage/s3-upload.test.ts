// Proves the S3 upload's states and endings against a scripted fake store (every request waits until
// the test answers it): parts in flight bounded, a completion listing every part in order, a
// failure told once the body is over and the multipart upload aborted after the parts in flight
// are back, an owner gone while creating or mid-body, and a body left whole by its owner still
// committed. Deterministic: no network, no clock.
import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { BunHasher } from "../../src/engine/io-engine";
import type { StoreKey } from "../../src/storage/keys";
import { S3Failure } from "../../src/storage/s3-client";
import { S3Upload, type S3Store } from "../../src/storage/s3-store";
import { recordingOwner } from "../helpers/recording-owner";

const MiB = 1024 * 1024;

interface Request {
  method: string;
  query: Record<string, string>;
  body?: Uint8Array | string;
  answer: (answer: { text?: string; etag?: string } | Error) => void;
}

/** The part of an S3Store an upload uses, every request answered only when the test says so. */
class FakeStore {
  readonly partBytes = MiB;
  readonly partsInFlightMax = 2;
  readonly uploads = new Set<unknown>();
  readonly cache = null;
  readonly requests: Request[] = [];
  readonly aborts: string[] = [];
  readonly client = {
    request: (method: string, _name: string, options: { query?: Record<string, string>; body?: Uint8Array | string } = {}) =>
      new Promise((resolve, reject) => {
        this.requests.push({
          method,
          query: options.query ?? {},
          body: options.body,
          answer: (a) => (a instanceof Error ? reject(a) : resolve({ text: a.text ?? "", headers: new Headers(a.etag === undefined ? {} : { etag: a.etag }) })),
        });
      }),
  };
  objectOf(key: StoreKey): string {
    return key.name;
  }
  newHasher() {
    return new BunHasher();
  }
  takePart(size: number): Uint8Array {
    return new Uint8Array(size);
  }
  givePart(): void {}
  abortMultipart(_name: string, id: string): Promise<void> {
    this.aborts.push(id);
    return Promise.resolve();
  }
  /** Answers the oldest pending request that `matches`. */
  async answer(matches: (r: Request) => boolean, a: { text?: string; etag?: string } | Error = {}): Promise<Request> {
    const i = this.requests.findIndex(matches);
    if (i < 0) throw new Error(`no such request pending; pending: ${this.requests.map((r) => `${r.method} ${JSON.stringify(r.query)}`).join(", ")}`);
    const [r] = this.requests.splice(i, 1);
    r!.answer(a);
    await Bun.sleep(0);
    return r!;
  }
  pending(): string[] {
    return this.requests.map((r) => (r.query.partNumber !== undefined ? `PUT part ${r.query.partNumber}` : `${r.method}${r.query.uploads !== undefined ? " create" : ""}`));
  }
}

const isCreate = (r: Request) => r.query.uploads !== undefined;
const isPart = (n: number) => (r: Request) => r.query.partNumber === String(n);
const isComplete = (r: Request) => r.method === "POST" && r.query.uploadId !== undefined;

function body(size: number): Uint8Array {
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i++) b[i] = (i * 7) & 255;
  return b;
}

function newUpload(size: number, expected: Uint8Array | null = null) {
  const store = new FakeStore();
  const { o, events } = recordingOwner();
  const up = new S3Upload(store as unknown as S3Store, { name: "k" } as StoreKey, size, o, expected, undefined);
  up.start();
  return { store, events, up };
}

/** A multipart upload, created at the store. */
async function created(size: number, expected: Uint8Array | null = null) {
  const u = newUpload(size, expected);
  expect(u.up.state).toBe("creating");
  await u.store.answer(isCreate, { text: "<UploadId>U1</UploadId>" });
  expect(u.up.state).toBe("receiving");
  expect(u.events).toEqual(["open:0"]);
  return u;
}

describe("S3Upload", () => {
  test("multipart: at most partsInFlightMax parts in flight, the rest held; the completion lists every part in order", async () => {
    const { store, events, up } = await created(3.5 * MiB);
    up.push(body(3.5 * MiB));
    expect(store.pending()).toEqual(["PUT part 1", "PUT part 2"]);
    expect(up.backlogBytes).toBe(MiB); // part 3 waits for a slot: the owner pauses its socket
    await store.answer(isPart(1), { etag: '"e1"' });
    expect(store.pending()).toEqual(["PUT part 2", "PUT part 3"]);
    expect(events.at(-1)).toBe("progress");
    up.end();
    expect(up.state).toBe("completing");
    await store.answer(isPart(2), { etag: '"e2"' });
    await store.answer(isPart(3), { etag: '"e3"' });
    await store.answer(isPart(4), { etag: '"e4"' });
    const complete = await store.answer(isComplete, { text: "<ETag>x</ETag>" });
    const parts = [1, 2, 3, 4].map((n) => `<Part><PartNumber>${n}</PartNumber><ETag>&quot;e${n}&quot;</ETag></Part>`).join("");
    expect(String(complete.body)).toBe(`<CompleteMultipartUpload>${parts}</CompleteMultipartUpload>`);
    expect(up.state).toBe("settled");
    expect(events.at(-1)).toBe(`committed:${3.5 * MiB}`);
    expect(store.uploads.size).toBe(0);
    expect(store.aborts).toEqual([]);
  });

  test("an owner gone after the whole body was sent: its parts still go and the object is completed", async () => {
    const { store, events, up } = await created(2.5 * MiB);
    up.push(body(2.5 * MiB));
    up.end();
    const done = up.abort(); // the client hung up right after its last byte
    await store.answer(isPart(1));
    await store.answer(isPart(2));
    await store.answer(isPart(3));
    await store.answer(isComplete, { text: "<ETag>x</ETag>" });
    await done;
    expect(store.aborts).toEqual([]);
    expect(events.filter((e) => e !== "progress")).toEqual(["open:0"]); // nobody to tell
  });

  test("a part that fails mid-body: the rest is dropped, the owner hears the failure only when the body is over, the upload is aborted once the parts in flight are back", async () => {
    const { store, events, up } = await created(4 * MiB);
    up.push(body(2 * MiB));
    await store.answer(isPart(1), new S3Failure(503, "SlowDown", "slow down"));
    expect(up.state).toBe("failing");
    expect(events.at(-1)).toBe("progress"); // a paused connection goes on reading, to drop the rest
    expect(store.aborts).toEqual([]); // part 2 is still in flight
    up.push(body(2 * MiB)); // dropped
    expect(store.pending()).toEqual(["PUT part 2"]);
    expect(up.backlogBytes).toBe(0);
    await store.answer(isPart(2));
    expect(store.aborts).toEqual(["U1"]);
    expect(events.some((e) => e.startsWith("failed"))).toBe(false);
    up.end();
    expect(events.at(-1)).toBe("failed:S3 HTTP 503 SlowDown");
    expect(up.state).toBe("settled");
  });

  test("an owner gone while the multipart upload is created: once created, it is aborted; nobody hears", async () => {
    const { store, events, up } = newUpload(2 * MiB);
    const done = up.abort();
    await store.answer(isCreate, { text: "<UploadId>U2</UploadId>" });
    await done;
    expect(store.aborts).toEqual(["U2"]);
    expect(up.state).toBe("settled");
    expect(events).toEqual([]);
  });

  test("a create that fails: the owner hears why, nothing to abort", async () => {
    const { store, events, up } = newUpload(2 * MiB);
    await store.answer(isCreate, new S3Failure(403, "AccessDenied", "no"));
    expect(up.state).toBe("settled");
    expect(events).toEqual(["open failed:S3 HTTP 403 AccessDenied"]);
    expect(store.aborts).toEqual([]);
  });

  test("a body whose SHA-256 is not the announced one is answered DIGEST_MISMATCH, never completed, its upload aborted", async () => {
    const { store, events, up } = await created(1.5 * MiB, new Uint8Array(32));
    up.push(body(1.5 * MiB));
    up.end(); // part 1 still in flight
    expect(events.at(-1)).toBe("failed:the body's SHA-256 is not the one announced");
    expect(store.aborts).toEqual([]);
    await store.answer(isPart(1));
    expect(store.aborts).toEqual(["U1"]);
    expect(store.pending()).toEqual([]); // the last part was never sent, nothing completed
  });

  test("a small body is one PUT with its digest; a failed PUT is told at once (the body is over)", async () => {
    const ok = newUpload(1000);
    await Bun.sleep(0);
    expect(ok.events).toEqual(["open:0"]);
    ok.up.push(body(1000));
    ok.up.end();
    expect(ok.up.state).toBe("completing");
    const put = await ok.store.answer((r) => r.method === "PUT", { etag: '"x"' });
    expect(createHash("sha256").update(put.body as Uint8Array).digest("hex")).toBe(createHash("sha256").update(body(1000)).digest("hex"));
    expect(ok.events.at(-1)).toBe("committed:1000");

    const failed = newUpload(1000);
    await Bun.sleep(0);
    failed.up.push(body(1000));
    failed.up.end();
    await failed.store.answer((r) => r.method === "PUT", new S3Failure(500, "InternalError", "oops"));
    expect(failed.events.at(-1)).toBe("failed:S3 HTTP 500 InternalError");
    expect(failed.up.state).toBe("settled");
    expect(failed.store.aborts).toEqual([]);
  });

  test("a failure that is not the store's (a bug) is told at once as one", async () => {
    const { store, events, up } = await created(2 * MiB);
    up.push(body(MiB));
    await store.answer(isPart(1), new TypeError("a bug in the client"));
    expect(events.at(-1)).toBe("bug:a bug in the client");
    expect(store.aborts).toEqual(["U1"]);
  });
});
