// The floor under an upload on Bun: a server that speaks the protocol's bench and upload exchanges
// (docs/PROTOCOL.md) through fsgw's own frame decoder and codec, hashes each body with the C
// library's SHA-256 as fsgw does, and stores nothing. What fsgw spends per upload beyond this server
// is its storing and its own bookkeeping; what this server spends beyond a bench exchange is the
// protocol's second round trip on Bun (bench-exchanges.ts --variants floor,volumes).
//
// Not a server for anything else: other operations close the connection. Started by
// startServer (scripts/lib/server-process.ts) with `--port 0` and the rest of its flags, it prints
// the `event=listening ... port=N` line that startServer waits for.
import { FrameDecoder } from "../../src/protocol/frame-decoder";
import { decodeProto, encodeProtoFrame } from "../../src/protocol/fast-proto";
import { Msg, Op } from "../../src/protocol/message";
import { NativeSha256 } from "../../src/ffi/pool-binding";
import { option } from "./options";

/** fsgw's own default bound on a request frame. */
const FRAME_BYTES_MAX = 64 * 1024;

interface Conn {
  decoder: FrameDecoder;
  /** Body bytes still to come; 0 between frames. */
  body: number;
  key: string;
  hasher: NativeSha256 | null;
}

const listener = Bun.listen<Conn>({
  hostname: option("--host", "127.0.0.1"),
  port: Number(option("--port", "0")),
  socket: {
    open(socket) {
      socket.data = { decoder: new FrameDecoder(FRAME_BYTES_MAX), body: 0, key: "", hasher: null };
    },
    data(socket, chunk) {
      const c = socket.data;
      let offset = 0;
      while (offset < chunk.length) {
        if (c.body > 0) {
          const take = Math.min(c.body, chunk.length - offset);
          c.hasher!.update(chunk.subarray(offset, offset + take));
          c.body -= take;
          offset += take;
          if (c.body === 0) {
            const digest = c.hasher!.digest();
            c.hasher = null;
            socket.write(encodeProtoFrame({ operation: Op.UPLOAD, key: c.key, message: Msg.END, digest: Buffer.from(digest).toString("hex") }));
          }
          continue;
        }
        offset += c.decoder.feed(chunk, offset);
        const frame = c.decoder.takeFrame();
        if (frame === null) continue;
        const msg = decodeProto(frame);
        if (msg.operation === Op.BENCH_MARK) {
          socket.write(encodeProtoFrame({ operation: Op.BENCH_MARK_RSP, key: msg.key }));
        } else if (msg.operation === Op.UPLOAD && msg.message === "" && msg.size > 0) {
          c.key = msg.key;
          c.body = msg.size;
          c.hasher = new NativeSha256();
          socket.write(encodeProtoFrame({ operation: Op.UPLOAD_RSP, key: msg.key, message: Msg.START }));
        } else if (!(msg.operation === Op.UPLOAD && msg.message === Msg.ACK)) {
          socket.end();
          return;
        }
      }
    },
  },
});
console.log(`event=listening host=${listener.hostname} port=${listener.port} server=upload-floor pid=${process.pid}`);
process.on("SIGTERM", () => {
  listener.stop(true);
  process.exit(0);
});
