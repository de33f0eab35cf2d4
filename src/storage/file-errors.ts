// What a failed system call means to a client: the file store's one errno switch, and the way an
// engine's failure reaches a store target.
import { constants } from "node:os";
import { IoError } from "../engine/io-error";
import { Failure, type FailureKind, type StoreTarget } from "./store";

const E = constants.errno;
/** Linux errno 108, which node does not list: the C pool answers it to a submission after stop. */
const ESHUTDOWN = 108;
/**
 * A body whose SHA-256 is not the one the client announced: no system call fails this way, so the
 * file store carries it through its errno-shaped paths as EBADMSG, and nothing else maps to it.
 */
export const EDIGEST = E.EBADMSG;

/** The one errno switch of the file store: what a failed system call means to a client. */
export function failureOfErrno(errno: number): FailureKind {
  switch (errno) {
    case E.ENOENT:
      return Failure.NOT_FOUND;
    case E.EISDIR:
    case E.ENOTDIR:
      return Failure.NOT_A_FILE;
    case E.ENOSPC:
    case E.EDQUOT:
      return Failure.NO_SPACE;
    case E.EACCES:
    case E.EPERM:
    case E.EROFS:
      return Failure.PERMISSION;
    case E.EMFILE:
    case E.ENFILE:
    case E.EAGAIN:
    case E.ENOMEM:
      return Failure.BUSY;
    case E.ECANCELED:
    case ESHUTDOWN:
      return Failure.UNAVAILABLE;
    case E.ETIMEDOUT:
      return Failure.TIMEOUT;
    case E.EFBIG:
      return Failure.TOO_LARGE;
    case EDIGEST:
      return Failure.DIGEST_MISMATCH;
    case E.ELOOP:
      return Failure.LINK_REFUSED;
    default:
      return Failure.IO;
  }
}

/** A failed engine call's result for a target: -kind with the errno as detail; a non-IoError is a bug. */
export function reportError(target: StoreTarget, e: unknown): void {
  if (e instanceof IoError) target.onStoreDone(-failureOfErrno(e.errno), e.errno);
  else target.onStoreBug(e);
}
