// What a failed system call means to a client: the file store's one errno switch, and the way an
// engine's failure reaches a store target.
import { constants } from "node:os";
import { errnoName, IoError } from "../engine/io-error";
import { Failure, type FailureCause, type FailureKind, type StoreTarget } from "./store";

const E = constants.errno;
/** Linux errno 108, which node does not list: the C pool answers it to a submission after stop. */
const ESHUTDOWN = 108;

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
    case E.ELOOP:
      return Failure.LINK_REFUSED;
    default:
      return Failure.IO;
  }
}

/** The cause of a failed system call, as the log tells it. */
export class ErrnoCause implements FailureCause {
  readonly text: string;
  constructor(readonly errno: number) {
    this.text = errnoName(errno);
  }
}

/** One cause per errno, made on first use: a failure allocates nothing. */
const causes = new Map<number, ErrnoCause>();
export function causeOfErrno(errno: number): ErrnoCause {
  let cause = causes.get(errno);
  if (cause === undefined) {
    cause = new ErrnoCause(errno);
    causes.set(errno, cause);
  }
  return cause;
}

/** A failed system call's result for a target (`errno` positive). */
export function failErrno(target: StoreTarget, errno: number): void {
  target.onStoreFailed(failureOfErrno(errno), causeOfErrno(errno));
}

/** A failed engine call's result for a target; a non-IoError is a bug. */
export function reportError(target: StoreTarget, e: unknown): void {
  if (e instanceof IoError) failErrno(target, e.errno);
  else target.onStoreBug(e);
}
