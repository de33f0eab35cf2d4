// Opening a listening port with a failure a person can act on: which listener, which address, why.
/** A listener could not open its port: the message names the listener and the address. */
export class ListenError extends Error {}

/** Opens a listener, turning Bun's terse failure into one line that says which port and why. */
export function listenOrExplain<T>(what: string, host: string, port: number, open: () => T): T {
  try {
    return open();
  } catch (e) {
    const err = e as { code?: string; message?: string };
    const why = err.code === "EADDRINUSE" ? "the address is already in use (another fsgw, or another program, listens there)" : err.code === "EACCES" ? "permission denied (ports below 1024 need privileges)" : String(err.message ?? e);
    throw new ListenError(`cannot listen on ${host}:${port} for ${what}: ${why}`);
  }
}
