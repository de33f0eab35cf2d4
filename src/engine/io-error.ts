// The one place an errno becomes a typed error (the file store turns those into store-neutral
// failure kinds, in one switch of its own: src/storage/file-store.ts).
import { constants } from "node:os";

const nameOfErrno = new Map<number, string>();
for (const [name, value] of Object.entries(constants.errno)) nameOfErrno.set(value, name);

/** A failed file operation: `code` is the errno name (`ENOENT`), `errno` its positive number. */
export class IoError extends Error {
  constructor(
    readonly code: string,
    readonly errno: number,
    readonly op: string,
  ) {
    super(`${op}: ${code}`);
  }
}

/**
 * The single errno-to-error conversion. Engines that speak negative errno (the C pool) call it
 * directly; the Bun engine passes node's error objects through `ioErrorFromNode`, which lands here.
 */
export function ioErrorFromErrno(negErrno: number, op: string): IoError {
  const errno = Math.abs(negErrno);
  // An operating error, not a bug: its op and code say all there is, so no stack is captured (a
  // missing key is an everyday answer and should cost no more than one).
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  const error = new IoError(nameOfErrno.get(errno) ?? `ERRNO_${errno}`, errno, op);
  Error.stackTraceLimit = limit;
  return error;
}

export function ioErrorFromNode(e: unknown, op: string): IoError {
  const err = e as { errno?: unknown; code?: unknown };
  if (typeof err.errno === "number") return ioErrorFromErrno(err.errno, op);
  if (typeof err.code === "string" && err.code in constants.errno) {
    return ioErrorFromErrno((constants.errno as Record<string, number>)[err.code]!, op);
  }
  throw e; // not an operating-system error: a bug, let it surface
}

/** The errno's name (`ENOENT`) for a -errno result, for logs. */
export function errnoName(negErrno: number): string {
  const errno = Math.abs(negErrno);
  return nameOfErrno.get(errno) ?? `ERRNO_${errno}`;
}
