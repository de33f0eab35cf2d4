// Memory whose address C may keep while an operation runs (bun:ffi).
//
// A small typed array made with `new Uint8Array(n)` keeps its bytes inside the JavaScript heap, and
// JavaScriptCore moves them into a new ArrayBuffer the first time anything asks for its `.buffer`
// (`subarray`, `Buffer.from(x.buffer, ...)`, a DataView): a pointer taken before that then points
// at freed memory, and C writing through it corrupts whatever is allocated there next (this
// happened: a digest written into a file path). An array made over its own ArrayBuffer never moves.
export function stableBytes(n: number): Uint8Array {
  return new Uint8Array(new ArrayBuffer(n));
}
