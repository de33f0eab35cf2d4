// S3 multipart uploads on the S3 store: passed through to the bucket's own multipart uploads, so
// that a gateway keeps no state of them. A client's parts may arrive at several gateways on the
// same bucket (a load balancer spreads its connections), and any of them completes the upload:
// the upload id is the bucket's, each part is the bucket's part, CompleteMultipartUpload is the
// bucket's (the object's ETag is its multipart ETag, as S3 gives one).
//
// A part's body is spooled to this gateway's disk first (multipartDir/spool, removed when the
// part is sent): the bucket needs its length before its bytes, the body may arrive chunked, and its
// Content-MD5 or signed SHA-256 are checked before the part is sent on. Memory stays bounded by
// the spool's writer, whatever the part's size.
//
// The bounds are the bucket's (its parts per upload, its sizes) and multipartUploadsMax, counted
// by listing the bucket's uploads under s3Prefix when one is created. Stale ones are aborted by the
// S3 store's sweep (s3StaleUploadMs).
import { unlink } from "node:fs/promises";
import { S3Failure, xmlText } from "../storage/s3-client";
import { BUCKET_SPACE, type StoreKey } from "../storage/keys";
import type { S3Store } from "../storage/s3-store";
import { escapeXml } from "./s3-xml";
import { BadPartDigest, MultipartError, PARTS_MAX, type MultipartStore, type MultipartUpload, type MultipartUploads, type Part, type PartOwner, type PartSink, type PartWriter } from "./multipart";

export class S3Multipart implements MultipartStore {
  constructor(
    private readonly store: S3Store,
    /** The gateway's own directory: spooled parts and bodies. */
    private readonly local: MultipartUploads,
    readonly uploadsMax: number,
  ) {}

  async create(_bucket: string, _name: string, key: StoreKey): Promise<string | null> {
    if ((await this.uploads("", this.uploadsMax)).length >= this.uploadsMax) return null;
    const { text } = await this.call("POST", key, { uploads: "" });
    const id = xmlText(text, "UploadId");
    if (id === null || id === "") throw new MultipartError(502, "InternalError", "the bucket answered CreateMultipartUpload without an UploadId");
    return id;
  }

  async get(id: string, bucket: string, name: string, key: StoreKey): Promise<MultipartUpload | null> {
    try {
      await this.call("GET", key, { uploadId: id, "max-parts": "1" });
    } catch (e) {
      if (e instanceof MultipartError && e.status === 404) return null;
      throw e;
    }
    return { id, bucket, key: name, initiated: new Date() };
  }

  part(id: string, n: number, key: StoreKey, owner: PartOwner, expectedSha256: Uint8Array | null): PartSink {
    return new S3PartSink(this, this.local.spool(owner, expectedSha256), id, n, key);
  }

  async parts(id: string, key: StoreKey): Promise<Part[]> {
    const out: Part[] = [];
    let marker = "0";
    for (let page = 0; page * 1000 < PARTS_MAX; page++) {
      const { text } = await this.call("GET", key, { uploadId: id, "part-number-marker": marker });
      for (let at = text.indexOf("<Part>"); at >= 0; at = text.indexOf("<Part>", at + 1)) {
        const number = Number(xmlText(text, "PartNumber", at));
        const etag = unquote(xmlText(text, "ETag", at) ?? "");
        out.push({ number, etag, size: Number(xmlText(text, "Size", at) ?? "0"), modified: new Date(xmlText(text, "LastModified", at) ?? 0) });
      }
      if (xmlText(text, "IsTruncated") !== "true") break;
      marker = xmlText(text, "NextPartNumberMarker") ?? "";
      if (marker === "") break;
    }
    return out.sort((a, b) => a.number - b.number);
  }

  async list(bucket: string, space: string): Promise<MultipartUpload[]> {
    const all = await this.uploads(space, 1000);
    return all.map((u) => ({ id: u.id, bucket, key: u.name.slice(space.length), initiated: u.initiated }));
  }

  async remove(id: string, key: StoreKey): Promise<void> {
    try {
      await this.call("DELETE", key, { uploadId: id });
    } catch (e) {
      if (!(e instanceof MultipartError && e.status === 404)) throw e;
    }
  }

  async complete(id: string, key: StoreKey, chosen: Part[]): Promise<string> {
    const body = `<CompleteMultipartUpload>${chosen.map((p) => `<Part><PartNumber>${p.number}</PartNumber><ETag>"${escapeXml(p.etag)}"</ETag></Part>`).join("")}</CompleteMultipartUpload>`;
    const { text } = await this.call("POST", key, { uploadId: id }, body);
    // S3 may answer 200 and then an error in the body (the completion failed while it ran).
    const code = xmlText(text, "Code");
    if (text.includes("<Error>") && code !== null) throw new MultipartError(code === "InvalidPart" || code === "EntityTooSmall" || code === "InvalidPartOrder" ? 400 : 500, code, xmlText(text, "Message") ?? code);
    const etag = xmlText(text, "ETag");
    this.store.cache?.forget(key.name);
    return etag === null ? '""' : `"${unquote(etag)}"`;
  }

  spool(owner: PartOwner): PartWriter {
    return this.local.spool(owner);
  }

  /** Sends a spooled part to the bucket: its ETag there. */
  async sendPart(id: string, n: number, key: StoreKey, path: string, md5Base64: string): Promise<string> {
    const a = await this.call("PUT", key, { partNumber: String(n), uploadId: id }, Bun.file(path), { "content-md5": md5Base64 });
    return unquote(a.headers.get("etag") ?? "");
  }

  /**
   * The bucket's uploads in progress under s3Prefix + `space` (names as store keys), at most
   * `max`; with space "" (the default bucket) the other buckets' are left out.
   */
  private async uploads(space: string, max: number): Promise<{ id: string; name: string; initiated: Date }[]> {
    const out: { id: string; name: string; initiated: Date }[] = [];
    const prefix = this.store.objectOf({ name: space, hash: 0 });
    let keyMarker = "";
    let idMarker = "";
    for (let page = 0; out.length < max && page < 1000; page++) {
      const query: Record<string, string> = { uploads: "", prefix };
      if (keyMarker !== "") query["key-marker"] = keyMarker;
      if (idMarker !== "") query["upload-id-marker"] = idMarker;
      const { text } = await this.request("GET", "", query);
      for (let at = text.indexOf("<Upload>"); at >= 0; at = text.indexOf("<Upload>", at + 1)) {
        const object = xmlText(text, "Key", at);
        const id = xmlText(text, "UploadId", at);
        if (object === null || id === null) continue;
        const name = this.store.keyNameOf(object);
        if (name === null || (space === "" && name.startsWith(BUCKET_SPACE))) continue;
        out.push({ id, name, initiated: new Date(xmlText(text, "Initiated", at) ?? 0) });
      }
      if (xmlText(text, "IsTruncated") !== "true") break;
      keyMarker = xmlText(text, "NextKeyMarker") ?? "";
      idMarker = xmlText(text, "NextUploadIdMarker") ?? "";
      if (keyMarker === "" && idMarker === "") break;
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.initiated.getTime() - b.initiated.getTime()));
  }

  private call(method: string, key: StoreKey, query: Record<string, string>, body?: string | Blob, headers?: Record<string, string>) {
    return this.request(method, this.store.objectOf(key), query, body, headers);
  }

  /** A request to the bucket; its refusal as a MultipartError with the bucket's status and code. */
  private async request(method: string, object: string, query: Record<string, string>, body?: string | Blob, headers?: Record<string, string>) {
    try {
      return await this.store.client.request(method, object, { query, body, headers });
    } catch (e) {
      if (e instanceof S3Failure) throw new MultipartError(e.status === 0 ? 503 : e.status, e.code === "" ? "InternalError" : e.code, e.message);
      throw e;
    }
  }
}

/** A part spooled to disk, then sent to the bucket at commit. */
class S3PartSink implements PartSink {
  constructor(
    private readonly multipart: S3Multipart,
    private readonly spooled: PartWriter,
    private readonly id: string,
    private readonly n: number,
    private readonly key: StoreKey,
  ) {}

  get backlogBytes(): number {
    return this.spooled.backlogBytes;
  }

  push(chunk: Uint8Array): void {
    this.spooled.push(chunk);
  }

  end(): void {}

  async commit(expectedMd5Base64: string | undefined): Promise<{ etag: string; size: number }> {
    const { path, size, md5 } = await this.spooled.finish();
    try {
      if (expectedMd5Base64 !== undefined && expectedMd5Base64 !== md5) throw new BadPartDigest(false);
      return { etag: await this.multipart.sendPart(this.id, this.n, this.key, path, md5), size };
    } finally {
      await unlink(path).catch(() => {});
    }
  }

  abort(): Promise<void> {
    return this.spooled.abort();
  }
}

function unquote(etag: string): string {
  return etag.replace(/&quot;/g, '"').trim().replace(/^"|"$/g, "").toLowerCase();
}
