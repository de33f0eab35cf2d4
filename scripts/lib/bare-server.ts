// A bare protocol server for benchmarks: Bun.listen (plain or TLS) answering bench, upload and
// download exchanges from memory, with no storage, no limits and no checks. It measures what Bun's
// sockets (and Bun's TLS) cost per exchange by themselves, so that fsgw's own cost of TLS can be
// compared with Bun's in the same run (scripts/bench-security.ts).
//
//   bun scripts/lib/bare-server.ts <port> [certFile keyFile]     prints "listening <port>"
import { readFileSync } from "node:fs";
import { protobufCodec } from "../../src/protocol/codec";
import { FrameDecoder } from "../../src/protocol/frame-decoder";
import { Msg, Op } from "../../src/protocol/message";

const [portText, certFile, keyFile] = process.argv.slice(2);
const DOWNLOAD_BYTES = 50 * 1024;
const body = new Uint8Array(DOWNLOAD_BYTES).fill(120);

interface State {
  decoder: FrameDecoder;
  /** Upload body bytes still to swallow. */
  skip: number;
  key: string;
  /** Reply bytes the socket did not take yet (sent on drain). */
  pending: Uint8Array | null;
}

type Sock = { write(b: Uint8Array): number; data: State };

function send(socket: Sock, bytes: Uint8Array): void {
  const s = socket.data;
  if (s.pending !== null) {
    s.pending = Buffer.concat([s.pending, bytes]);
    return;
  }
  const n = socket.write(bytes);
  if (n >= 0 && n < bytes.length) s.pending = bytes.subarray(n);
}

function onDrain(socket: Sock): void {
  const p = socket.data.pending;
  if (p === null) return;
  socket.data.pending = null;
  send(socket, p);
}

function onData(socket: Sock, chunk: Uint8Array): void {
  const s = socket.data;
  let at = 0;
  while (at < chunk.length) {
    if (s.skip > 0) {
      const n = Math.min(s.skip, chunk.length - at);
      s.skip -= n;
      at += n;
      if (s.skip === 0) send(socket, protobufCodec.encodeFrame({ operation: Op.UPLOAD, key: s.key, message: Msg.END }));
      continue;
    }
    at += s.decoder.feed(chunk, at);
    const frame = s.decoder.takeFrame();
    if (frame === null) continue;
    const msg = protobufCodec.decode(frame);
    if (msg.message === Msg.ACK) continue;
    switch (msg.operation) {
      case Op.BENCH_MARK:
        send(socket, protobufCodec.encodeFrame({ operation: Op.BENCH_MARK_RSP, key: msg.key }));
        break;
      case Op.DOWNLOAD: {
        const start = protobufCodec.encodeFrame({ operation: Op.DOWNLOAD_RSP, key: msg.key, message: Msg.START, size: DOWNLOAD_BYTES, type: 1 });
        const end = protobufCodec.encodeFrame({ operation: Op.DOWNLOAD, key: msg.key, message: Msg.END });
        send(socket, Buffer.concat([start, body, end]));
        break;
      }
      case Op.UPLOAD:
        s.skip = msg.size;
        s.key = msg.key;
        send(socket, protobufCodec.encodeFrame({ operation: Op.UPLOAD_RSP, key: msg.key, message: Msg.START }));
        break;
      case Op.AUTH:
        send(socket, protobufCodec.encodeFrame({ operation: Op.AUTH_RSP, key: "", message: Msg.SUCCESS }));
        break;
    }
  }
}

const listener = Bun.listen<State>({
  hostname: "127.0.0.1",
  port: Number(portText ?? 0),
  ...(certFile !== undefined ? { tls: { cert: readFileSync(certFile, "utf8"), key: readFileSync(keyFile!, "utf8") } } : {}),
  socket: {
    open(socket) {
      socket.data = { decoder: new FrameDecoder(64 * 1024), skip: 0, key: "", pending: null };
      socket.setNoDelay(true);
    },
    data: onData,
    drain: onDrain,
  },
});
console.log(`listening ${listener.port}`);
