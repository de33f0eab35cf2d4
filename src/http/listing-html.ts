// The listing page a person sees in a browser: a bucket prefix as HTML (folders first, then files
// with size, modification time and ETag; links down and up; a link to the next page), answered to
// a GET of /<bucket>/ or /<bucket>/<prefix>/ whose Accept asks for text/html. S3 clients never ask
// for HTML, and no key ends with '/', so the path cannot be mistaken for an object's. Every name is
// escaped; nothing of the page runs script.
import { etagOfHex } from "./s3-xml";

const STYLE = "body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}td,th{padding:.2em 1em;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}tr:nth-child(even){background:#f4f4f4}code{font-size:12px;color:#666}";

/** One page of a listing (LIST lines, src/storage/list-page.ts) under `prefix` of `bucket`, as HTML; `next` continues it. */
export function listingHtml(bucket: string, prefix: string, lines: Uint8Array, next: string): string {
  const folders: string[] = [];
  const files: string[] = [];
  for (const line of new TextDecoder().decode(lines).split("\n")) {
    if (line === "") continue;
    const o = JSON.parse(line) as { key?: string; size?: number; mtime?: string; sha256?: string; md5?: string; prefix?: string };
    if (o.prefix !== undefined) {
      const name = o.prefix.slice(prefix.length);
      folders.push(`<tr><td><a href="${escapeHtml(hrefOf(bucket, o.prefix))}">${escapeHtml(name)}</a></td><td></td><td></td><td></td></tr>`);
    } else if (o.key !== undefined) {
      const name = o.key.slice(prefix.length);
      const etag = o.sha256 !== undefined || o.md5 !== undefined ? etagOfHex(o.md5, o.sha256 ?? "") : "";
      files.push(`<tr><td><a href="${escapeHtml(hrefOf(bucket, o.key))}">${escapeHtml(name)}</a></td><td class="n">${o.size ?? ""}</td><td>${escapeHtml(o.mtime ?? "")}</td><td><code>${escapeHtml(etag)}</code></td></tr>`);
    }
  }
  const title = `/${bucket}/${prefix}`;
  const up = prefix === "" ? "" : `<p><a href="${escapeHtml(hrefOf(bucket, parentOf(prefix)))}">../</a></p>`;
  const more = next === "" ? "" : `<p><a href="${escapeHtml(`${hrefOf(bucket, prefix)}?continuation-token=${encodeURIComponent(next)}`)}">next page</a></p>`;
  const empty = folders.length + files.length === 0 ? "<p>(nothing here)</p>" : "";
  return (
    `<!doctype html>\n<html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title><style>${STYLE}</style></head><body>` +
    `<h1>${escapeHtml(title)}</h1>${up}<table><tr><th>name</th><th>bytes</th><th>modified</th><th>ETag</th></tr>${folders.join("")}${files.join("")}</table>${empty}${more}</body></html>\n`
  );
}

/** Whether a request's Accept asks for a page rather than S3's XML (a browser's does). */
export function wantsHtml(accept: string | undefined): boolean {
  return accept !== undefined && /(^|,)\s*text\/html\s*(;|,|$)/i.test(accept);
}

/** The path of a key or prefix of `bucket`, each segment percent-encoded. */
function hrefOf(bucket: string, name: string): string {
  return `/${encodeURIComponent(bucket)}/${name.split("/").map(encodeURIComponent).join("/")}`;
}

/** The prefix one level up: "a/b/" → "a/", "a/" → "". */
function parentOf(prefix: string): string {
  const cut = prefix.lastIndexOf("/", prefix.length - 2);
  return cut < 0 ? "" : prefix.slice(0, cut + 1);
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}
