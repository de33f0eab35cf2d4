// The S3 API's XML, as the HTTP front door answers it: error bodies (one table from the store's
// failure kinds to S3's codes and statuses), ListBuckets, and ListObjectsV2 made from a LIST page's
// lines (docs/PROTOCOL.md, "Listing": the same pages the TCP protocol sends).
import { Failure, FACT_SHA256, md5HexOf, sha256HexOf, type FailureKind } from "../storage/store";

const S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/";

export function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c]!);
}

export interface S3Error {
  status: number;
  code: string;
  message: string;
}

/** An S3 error answer's body. */
export function errorXml(error: S3Error, resource: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${error.code}</Code><Message>${escapeXml(error.message)}</Message><Resource>${escapeXml(resource)}</Resource></Error>`;
}

/** A store failure in S3's words: the one table of the HTTP front door. */
export function s3ErrorOf(failure: FailureKind, text: string): S3Error {
  switch (failure) {
    case Failure.NOT_FOUND:
    case Failure.NOT_A_FILE:
      return { status: 404, code: "NoSuchKey", message: "The specified key does not exist." };
    case Failure.UNAVAILABLE:
    case Failure.TIMEOUT:
      return { status: 503, code: "ServiceUnavailable", message: text };
    case Failure.TOO_LARGE:
      return { status: 400, code: "EntityTooLarge", message: text };
    case Failure.DIGEST_MISMATCH:
      return { status: 400, code: "BadDigest", message: "The body does not match the checksum it was sent with." };
    case Failure.BUSY:
      return { status: 503, code: "SlowDown", message: `Please reduce your request rate (${text}).` };
    case Failure.NO_SPACE:
      return { status: 507, code: "InsufficientStorage", message: text };
    case Failure.PERMISSION:
    case Failure.LINK_REFUSED:
      return { status: 403, code: "AccessDenied", message: text };
    default:
      return { status: 500, code: "InternalError", message: text };
  }
}

/** ListBuckets: the store's one bucket. */
export function listBucketsXml(buckets: { name: string; created: Date }[]): string {
  const items = buckets.map((b) => `<Bucket><Name>${escapeXml(b.name)}</Name><CreationDate>${b.created.toISOString()}</CreationDate></Bucket>`).join("");
  return `<?xml version="1.0" encoding="UTF-8"?>\n<ListAllMyBucketsResult xmlns="${S3_NS}"><Owner><ID>fsgw</ID><DisplayName>fsgw</DisplayName></Owner><Buckets>${items}</Buckets></ListAllMyBucketsResult>`;
}

export interface ListV2Request {
  bucket: string;
  prefix: string;
  delimiter: string;
  maxKeys: number;
  startAfter: string;
  continuationToken: string;
}

/**
 * ListObjectsV2's answer from a LIST page: its lines (entries, then common prefixes) and where the
 * next page starts (the NextContinuationToken, opaque to clients: the TCP protocol's NextAfter).
 */
export function listObjectsV2Xml(request: ListV2Request, lines: Uint8Array, next: string): string {
  const { contents, prefixes, count } = listElements(lines);
  const optional = (name: string, value: string) => (value === "" ? "" : `<${name}>${escapeXml(value)}</${name}>`);
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="${S3_NS}"><Name>${escapeXml(request.bucket)}</Name><Prefix>${escapeXml(request.prefix)}</Prefix>` +
    `${optional("Delimiter", request.delimiter)}<MaxKeys>${request.maxKeys}</MaxKeys><KeyCount>${count}</KeyCount><IsTruncated>${next !== ""}</IsTruncated>` +
    `${optional("ContinuationToken", request.continuationToken)}${optional("StartAfter", request.startAfter)}${optional("NextContinuationToken", next)}${contents}${prefixes}</ListBucketResult>`
  );
}

/**
 * An object's ETag (quoted) from its facts (src/storage/store.ts), or null when it records no
 * digest: the body's MD5, as S3 gives a single-part object and as clients check it (rclone,
 * s3cmd); an object stored without one (through the TCP protocol, which does not pay for an MD5)
 * has "sha256-" and its SHA-256 instead, never 32 hex digits alone, so that no client takes it for
 * an MD5 and fails a check that cannot hold (they treat a dashed ETag as a multipart one's).
 */
export function etagOf(facts: Uint8Array): string | null {
  if ((facts[0]! & FACT_SHA256) === 0) return null;
  // The SHA-256's hex only when there is no MD5 to give (every GET's answer asks for this).
  const md5 = md5HexOf(facts);
  return md5 !== null ? etagOfHex(md5, "") : etagOfHex(undefined, sha256HexOf(facts)!);
}

/** etagOf, from the hex digests a listing line carries. */
export function etagOfHex(md5Hex: string | undefined, sha256Hex: string): string {
  return md5Hex !== undefined ? `"${md5Hex}"` : `"sha256-${sha256Hex}"`;
}

/** GetBucketLocation: S3 answers an empty constraint for us-east-1, the region clients sign for here. */
export function locationXml(): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<LocationConstraint xmlns="${S3_NS}"></LocationConstraint>`;
}

/** The entries and common prefixes of a LIST page as S3's XML elements, and how many there were. */
function listElements(lines: Uint8Array): { contents: string; prefixes: string; count: number } {
  let contents = "";
  let prefixes = "";
  let count = 0;
  for (const line of new TextDecoder().decode(lines).split("\n")) {
    if (line === "") continue;
    const o = JSON.parse(line) as { key?: string; size?: number; mtime?: string; sha256?: string; md5?: string; prefix?: string };
    count++;
    if (o.prefix !== undefined) {
      prefixes += `<CommonPrefixes><Prefix>${escapeXml(o.prefix)}</Prefix></CommonPrefixes>`;
      continue;
    }
    const etag = o.sha256 === undefined && o.md5 === undefined ? "" : `<ETag>${escapeXml(etagOfHex(o.md5, o.sha256 ?? ""))}</ETag>`;
    contents += `<Contents><Key>${escapeXml(o.key!)}</Key><LastModified>${o.mtime}</LastModified>${etag}<Size>${o.size}</Size><StorageClass>STANDARD</StorageClass></Contents>`;
  }
  return { contents, prefixes, count };
}

export interface ListV1Request {
  bucket: string;
  prefix: string;
  delimiter: string;
  maxKeys: number;
  marker: string;
}

/**
 * ListObjects (version 1) from a LIST page. NextMarker (given when the answer is truncated) is
 * where the next page starts, the last key or common prefix of this one, as S3 gives it with a
 * delimiter; clients without one use the last key, which is the same.
 */
export function listObjectsV1Xml(request: ListV1Request, lines: Uint8Array, next: string): string {
  const { contents, prefixes } = listElements(lines);
  const optional = (name: string, value: string) => (value === "" ? "" : `<${name}>${escapeXml(value)}</${name}>`);
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="${S3_NS}"><Name>${escapeXml(request.bucket)}</Name><Prefix>${escapeXml(request.prefix)}</Prefix>` +
    `<Marker>${escapeXml(request.marker)}</Marker>${optional("NextMarker", next === "" ? "" : next.slice(1))}${optional("Delimiter", request.delimiter)}<MaxKeys>${request.maxKeys}</MaxKeys>` +
    `<IsTruncated>${next !== ""}</IsTruncated>${contents}${prefixes}</ListBucketResult>`
  );
}

export function initiateMultipartXml(bucket: string, key: string, uploadId: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<InitiateMultipartUploadResult xmlns="${S3_NS}"><Bucket>${escapeXml(bucket)}</Bucket><Key>${escapeXml(key)}</Key><UploadId>${uploadId}</UploadId></InitiateMultipartUploadResult>`;
}

export function completeMultipartXml(location: string, bucket: string, key: string, etag: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUploadResult xmlns="${S3_NS}"><Location>${escapeXml(location)}</Location><Bucket>${escapeXml(bucket)}</Bucket><Key>${escapeXml(key)}</Key><ETag>${escapeXml(etag)}</ETag></CompleteMultipartUploadResult>`;
}

export function listPartsXml(bucket: string, key: string, uploadId: string, parts: { number: number; etag: string; size: number; modified: Date }[], marker: number, maxParts: number, truncated: boolean): string {
  const items = parts
    .map((p) => `<Part><PartNumber>${p.number}</PartNumber><LastModified>${p.modified.toISOString()}</LastModified><ETag>&quot;${escapeXml(p.etag)}&quot;</ETag><Size>${p.size}</Size></Part>`)
    .join("");
  const next = truncated && parts.length > 0 ? `<NextPartNumberMarker>${parts[parts.length - 1]!.number}</NextPartNumberMarker>` : "";
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<ListPartsResult xmlns="${S3_NS}"><Bucket>${escapeXml(bucket)}</Bucket><Key>${escapeXml(key)}</Key><UploadId>${uploadId}</UploadId>` +
    `<Initiator><ID>fsgw</ID><DisplayName>fsgw</DisplayName></Initiator><Owner><ID>fsgw</ID><DisplayName>fsgw</DisplayName></Owner><StorageClass>STANDARD</StorageClass>` +
    `<PartNumberMarker>${marker}</PartNumberMarker>${next}<MaxParts>${maxParts}</MaxParts><IsTruncated>${truncated}</IsTruncated>${items}</ListPartsResult>`
  );
}

export function listMultipartUploadsXml(bucket: string, prefix: string, uploads: { id: string; key: string; initiated: Date }[]): string {
  const items = uploads
    .map((u) => `<Upload><Key>${escapeXml(u.key)}</Key><UploadId>${u.id}</UploadId><Initiator><ID>fsgw</ID><DisplayName>fsgw</DisplayName></Initiator><Owner><ID>fsgw</ID><DisplayName>fsgw</DisplayName></Owner><StorageClass>STANDARD</StorageClass><Initiated>${u.initiated.toISOString()}</Initiated></Upload>`)
    .join("");
  return `<?xml version="1.0" encoding="UTF-8"?>\n<ListMultipartUploadsResult xmlns="${S3_NS}"><Bucket>${escapeXml(bucket)}</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker><Prefix>${escapeXml(prefix)}</Prefix><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>${items}</ListMultipartUploadsResult>`;
}

export function copyObjectXml(etag: string, modified: Date): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<CopyObjectResult xmlns="${S3_NS}"><LastModified>${modified.toISOString()}</LastModified><ETag>${escapeXml(etag)}</ETag></CopyObjectResult>`;
}

export function deleteResultXml(deleted: string[], errors: { key: string; code: string; message: string }[]): string {
  const d = deleted.map((k) => `<Deleted><Key>${escapeXml(k)}</Key></Deleted>`).join("");
  const e = errors.map((x) => `<Error><Key>${escapeXml(x.key)}</Key><Code>${x.code}</Code><Message>${escapeXml(x.message)}</Message></Error>`).join("");
  return `<?xml version="1.0" encoding="UTF-8"?>\n<DeleteResult xmlns="${S3_NS}">${d}${e}</DeleteResult>`;
}

/** The texts of every <name>…</name> in a small request body (DeleteObjects, CompleteMultipartUpload), unescaped. */
export function xmlValues(xml: string, name: string): string[] {
  const out: string[] = [];
  const re = new RegExp(`<${name}>([\\s\\S]*?)</${name}>`, "g");
  for (let m = re.exec(xml); m !== null; m = re.exec(xml)) out.push(unescapeXml(m[1]!));
  return out;
}

export function unescapeXml(text: string): string {
  return text.replace(/&(lt|gt|amp|quot|apos|#\d+|#x[0-9a-fA-F]+);/g, (all, e: string) => {
    if (e === "lt") return "<";
    if (e === "gt") return ">";
    if (e === "amp") return "&";
    if (e === "quot") return '"';
    if (e === "apos") return "'";
    const code = e[1] === "x" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
    return Number.isFinite(code) && code <= 0x10ffff ? String.fromCodePoint(code) : all;
  });
}
