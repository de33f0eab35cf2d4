// The S3 API's XML, as the HTTP front door answers it: error bodies (one table from the store's
// failure kinds to S3's codes and statuses), ListBuckets, and ListObjectsV2 made from a LIST page's
// lines (docs/PROTOCOL.md, "Listing": the same pages the TCP protocol sends).
import { Failure, md5Of, sha256Of, type FailureKind } from "../storage/store";

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
export function listBucketsXml(bucket: string, created: Date): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<ListAllMyBucketsResult xmlns="${S3_NS}"><Owner><ID>fsgw</ID><DisplayName>fsgw</DisplayName></Owner><Buckets><Bucket><Name>${escapeXml(bucket)}</Name><CreationDate>${created.toISOString()}</CreationDate></Bucket></Buckets></ListAllMyBucketsResult>`;
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
    const etag = o.sha256 === undefined ? "" : `<ETag>${escapeXml(etagOfHex(o.md5, o.sha256))}</ETag>`;
    contents += `<Contents><Key>${escapeXml(o.key!)}</Key><LastModified>${o.mtime}</LastModified>${etag}<Size>${o.size}</Size><StorageClass>STANDARD</StorageClass></Contents>`;
  }
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
  const sha256 = sha256Of(facts);
  if (sha256 === null) return null;
  const md5 = md5Of(facts);
  return etagOfHex(md5 === null ? undefined : Buffer.from(md5).toString("hex"), Buffer.from(sha256).toString("hex"));
}

/** etagOf, from the hex digests a listing line carries. */
export function etagOfHex(md5Hex: string | undefined, sha256Hex: string): string {
  return md5Hex !== undefined ? `"${md5Hex}"` : `"sha256-${sha256Hex}"`;
}
