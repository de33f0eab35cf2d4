// An upload's owner that records what it hears, as short lines ("open:0", "progress",
// "committed:<size>", "failed:<cause>", "bug:<message>"), for the unit tests of the stores' uploads.
import type { UploadOwner } from "../../src/storage/store";

export function recordingOwner(): { o: UploadOwner; events: string[] } {
  const events: string[] = [];
  const o: UploadOwner = {
    onStoreDone: (value) => void events.push(`open:${value}`),
    onStoreFailed: (_failure, cause) => void events.push(`open failed:${cause.text}`),
    onStoreBug: (e) => void events.push(`bug:${(e as Error).message}`),
    onUploadProgress: () => void events.push("progress"),
    onUploadDone: (size) => void events.push(`committed:${size}`),
    onUploadFailed: (_failure, cause) => void events.push(`failed:${cause.text}`),
  };
  return { o, events };
}
