// Raw TCP connections for tests that play a misbehaving client: from a chosen loopback address
// (127.0.0.2, 127.0.0.3: Bun.connect cannot pick one), sending exactly the bytes the test writes,
// and telling when the server closed them.
import net from "node:net";

export interface RawSocket {
  socket: net.Socket;
  /** Everything received so far, as latin1 text. */
  received(): string;
  /** Resolves when the connection is closed (by either side). */
  closed: Promise<void>;
}

const open: net.Socket[] = [];

/** A connection to 127.0.0.1:`port` from `localAddress`; null when the server cut it before it was open. */
export function rawConnect(port: number, localAddress = "127.0.0.1"): Promise<RawSocket | null> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port, localAddress });
    open.push(socket);
    let text = "";
    socket.on("data", (d: Buffer) => (text += d.toString("latin1")));
    socket.on("error", () => {});
    const closed = new Promise<void>((r) => socket.on("close", () => r()));
    socket.on("connect", () => resolve({ socket, received: () => text, closed }));
    socket.on("close", () => resolve(null));
  });
}

/** Whether `closed` settles within `ms` (false: still open then). */
export async function closedWithin(closed: Promise<void>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const r = await Promise.race([closed.then(() => true), new Promise<boolean>((res) => (timer = setTimeout(() => res(false), ms)))]);
  clearTimeout(timer);
  return r;
}

/** Destroys every connection rawConnect made (for afterEach). */
export function destroyRawSockets(): void {
  for (const s of open.splice(0)) s.destroy();
}
