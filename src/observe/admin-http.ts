// The admin endpoint's HTTP transport: a small HTTP/1.1 server on Bun.listen, one request per
// connection. Bun.serve cannot bound its connections, and keeps a connection after a request for as
// long as the client likes (with idleTimeout 0, forever): 10,000 connections each with one /healthz
// took every descriptor of the process. Here every bound is explicit:
//
//   - at most `connectionsMax` connections; one more is closed at once (counted, logged once a second);
//   - a connection must deliver its whole request head (at most HEAD_BYTES_MAX bytes, no body) within
//     `requestTimeoutMs` of opening, however slowly it trickles;
//   - every answer carries "Connection: close" and the connection ends once it is written, so no
//     connection idles between requests;
//   - a handler may extend its own connection's deadline (a profile of N seconds), and learns
//     through the request's signal when its client goes away (a profile is then stopped).
//
//   open ──▶ reading ──head──▶ handling ──▶ writing ──written──▶ closed
//              │                  │            │
//              └── deadline, too large, bad ───┴──▶ closed (the socket's close aborts the handler)
import type { Socket, TCPSocketListener } from "bun";
import type { Logger } from "../log";
import { listenOrExplain } from "../server/listen";

/** The longest request head accepted (request line and headers): 431 past it. */
export const HEAD_BYTES_MAX = 8 * 1024;

export interface AdminHttpLimits {
  connectionsMax: number;
  requestTimeoutMs: number;
}

/** Answers one request. `extendMs(ms)`: the connection may stay open that much longer than its deadline. */
export type AdminHandler = (req: Request, extendMs: (ms: number) => void) => Promise<Response>;

type State = "reading" | "handling" | "writing" | "closed";

const LEGAL: Record<State, readonly State[]> = {
  reading: ["handling", "writing", "closed"],
  handling: ["writing", "closed"],
  writing: ["closed"],
  closed: [],
};

const CRLFCRLF = Buffer.from("\r\n\r\n");
/** What an HTTP/1.1 request head can hold: no control bytes but tabs and line ends (obs-text is allowed). */
const TEXT_HEAD = /^[\t\r\n\x20-\x7e\x80-\xff]*$/;
/** Reason phrases of the statuses the admin endpoint answers. */
const STATUS_TEXT: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  401: "Unauthorized",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  431: "Request Header Fields Too Large",
  499: "Client Closed Request",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

class AdminConnection {
  state: State = "reading";
  private head: Buffer = Buffer.alloc(0);
  private timer: ReturnType<typeof setTimeout>;
  private deadlineMs: number;
  private out: Uint8Array | null = null;
  /** Aborted when the client goes away before its answer is written. */
  readonly abort = new AbortController();

  constructor(
    private readonly socket: Socket<AdminConnection>,
    private readonly http: AdminHttp,
  ) {
    this.deadlineMs = Date.now() + http.limits.requestTimeoutMs;
    this.timer = setTimeout(this.onDeadline, http.limits.requestTimeoutMs);
  }

  private move(to: State): void {
    if (!LEGAL[this.state].includes(to)) throw new Error(`admin connection: illegal move ${this.state} -> ${to}`);
    this.state = to;
  }

  private readonly onDeadline = (): void => {
    const left = this.deadlineMs - Date.now();
    if (left > 0) {
      this.timer = setTimeout(this.onDeadline, left);
      return;
    }
    this.http.timedOut++;
    this.close();
  };

  /** The handler's connection may stay `ms` longer than the deadline it has now (a long profile). */
  readonly extendMs = (ms: number): void => {
    this.deadlineMs = Math.max(this.deadlineMs, Date.now() + this.http.limits.requestTimeoutMs) + ms;
  };

  onData(chunk: Buffer): void {
    if (this.state !== "reading") return; // one request per connection; what follows is ignored
    this.head = this.head.length === 0 ? chunk : Buffer.concat([this.head, chunk]);
    const end = this.head.indexOf(CRLFCRLF);
    if (end < 0) {
      if (this.head.length > HEAD_BYTES_MAX) this.answerError(431, "request head too large");
      // Binary bytes (an fsgw client pointed at this port, a TLS handshake): answered at once, so
      // the client learns it reached an HTTP port instead of waiting out the deadline.
      else if (!TEXT_HEAD.test(this.head.toString("latin1"))) this.answerError(400, "not an HTTP request (this is fsgw's admin endpoint; the protocol port is another)");
      return;
    }
    if (end > HEAD_BYTES_MAX) return this.answerError(431, "request head too large");
    const request = this.parse(this.head.subarray(0, end).toString("latin1"));
    this.head = Buffer.alloc(0);
    if (typeof request === "string") return this.answerError(400, request);
    this.move("handling");
    // One owner catches whatever the handler or the answer throws: a bug answers 500, if it still can.
    this.http
      .handler(request, this.extendMs)
      .then((response) => this.answer(response))
      .catch((e) => {
        this.http.log.error("admin_bug", { error: String((e as Error)?.stack ?? e) });
        if (this.state === "handling") this.answerError(500, "internal error");
        else this.close();
      });
  }

  /** A Request of the head's request line and headers, or why it cannot be one. */
  private parse(head: string): Request | string {
    const lines = head.split("\r\n");
    const m = /^([A-Z]+) (\/[^ ]*) HTTP\/1\.[01]$/.exec(lines[0]!);
    if (m === null) return "malformed request line";
    const headers = new Headers();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      if (colon <= 0) return "malformed header line";
      try {
        headers.append(line.slice(0, colon), line.slice(colon + 1).trim());
      } catch {
        return "malformed header";
      }
    }
    // No request here carries a body: one announced is refused rather than read.
    if ((headers.get("content-length") ?? "0") !== "0" || headers.has("transfer-encoding")) return "request bodies are not accepted";
    try {
      return new Request(`http://admin${m[2]}`, { method: m[1], headers, signal: this.abort.signal });
    } catch {
      return "malformed request target";
    }
  }

  private answerError(status: number, why: string): void {
    const body = `${why}\n`;
    this.write(`HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? ""}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  }

  private async answer(response: Response): Promise<void> {
    if (this.state !== "handling") return; // the client went away meanwhile
    const body = new Uint8Array(await response.arrayBuffer());
    if (this.state !== "handling") return;
    let head = `HTTP/1.1 ${response.status} ${STATUS_TEXT[response.status] ?? response.statusText}\r\n`;
    response.headers.forEach((value, name) => {
      if (name !== "content-length" && name !== "connection") head += `${name}: ${value}\r\n`;
    });
    head += `content-length: ${body.length}\r\nconnection: close\r\n\r\n`;
    const headBytes = Buffer.from(head, "latin1");
    const all = new Uint8Array(headBytes.length + body.length);
    all.set(headBytes, 0);
    all.set(body, headBytes.length);
    this.write(all);
  }

  /** Sends the whole answer (the rest on drain), then ends the connection. */
  private write(bytes: string | Uint8Array): void {
    this.move("writing");
    this.out = typeof bytes === "string" ? Buffer.from(bytes) : bytes;
    this.onDrain();
  }

  onDrain(): void {
    if (this.state !== "writing" || this.out === null) return;
    const n = this.socket.write(this.out);
    if (n < 0) return this.close();
    this.out = this.out.subarray(n);
    if (this.out.length > 0) return;
    this.out = null;
    this.close();
  }

  close(): void {
    if (this.state === "closed") return;
    this.move("closed");
    this.socket.end();
    this.onClose();
  }

  onClose(): void {
    clearTimeout(this.timer);
    if (this.state !== "closed") this.move("closed");
    this.abort.abort();
    this.http.closed(this);
  }
}

export class AdminHttp {
  private listener: TCPSocketListener<AdminConnection> | null = null;
  private readonly connections = new Set<AdminConnection>();
  /** Connections closed at once (connectionsMax), and for not sending a request in time. */
  refused = 0;
  timedOut = 0;
  private refusedSince = 0;
  private refusedLogMs = 0;

  constructor(
    readonly limits: AdminHttpLimits,
    readonly handler: AdminHandler,
    readonly log: Logger,
  ) {}

  get port(): number {
    return this.listener?.port ?? 0;
  }

  get open(): number {
    return this.connections.size;
  }

  listen(host: string, port: number): void {
    this.listener = listenOrExplain("the admin endpoint (adminHost, adminPort)", host, port, () =>
      Bun.listen<AdminConnection>({
        hostname: host,
        port,
        socket: {
          open: (socket) => this.onOpen(socket),
          data: (socket, chunk) => socket.data?.onData(chunk),
          drain: (socket) => socket.data?.onDrain(),
          close: (socket) => socket.data?.onClose(),
          error: (socket) => socket.data?.onClose(),
        },
      }),
    );
  }

  private onOpen(socket: Socket<AdminConnection>): void {
    if (this.connections.size >= this.limits.connectionsMax) {
      this.refused++;
      this.refusedSince++;
      const now = Date.now();
      if (now - this.refusedLogMs >= 1000) {
        this.log.warn("admin_connection_refused", { reason: `adminConnectionsMax (${this.limits.connectionsMax}) reached`, count: this.refusedSince });
        this.refusedSince = 0;
        this.refusedLogMs = now;
      }
      socket.terminate();
      return;
    }
    const conn = new AdminConnection(socket, this);
    socket.data = conn;
    this.connections.add(conn);
  }

  closed(conn: AdminConnection): void {
    this.connections.delete(conn);
  }

  stop(): void {
    this.listener?.stop(true);
    this.listener = null;
    for (const conn of [...this.connections]) conn.close();
  }
}
