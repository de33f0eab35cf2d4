// A zero-copy download sends START, the body and END in one C call (fsgw_sendfile_now) when the
// socket takes them all. When it takes less, the connection must go on from exactly where the call
// stopped: the rest of START by write(), the body by sendfile, the rest of END by write(). A real
// socket stops at a place the test cannot choose, so the engine here is the real C pool with its
// inline send wrapped: the framed call really sends only the first `cut` bytes (through the same C
// function, with shorter lengths) and reports them, as a full socket would. Every boundary is cut:
// inside START, at its end, inside the body, at its end, inside END; and "not cached" (nothing
// sent, the pool sends). Each download must reach the client byte for byte, frames intact.
import { afterEach, expect, test } from "bun:test";
import { join } from "node:path";
import { downloadExchange, uploadExchange } from "../../src/client/exchanges";
import { WireConn } from "../../src/client/wire-conn";
import { loadConfig } from "../../src/config";
import { createEngine } from "../../src/engine/create-engine";
import type { ZeroCopyOps } from "../../src/engine/io-engine";
import { Logger } from "../../src/log";
import type { Server } from "../../src/server/server";
import { inProcessServer } from "../helpers/in-process-server";
import { Msg, Op } from "../../src/protocol/message";
import { protobufCodec } from "../../src/protocol/codec";
import { payload, sha256 } from "../helpers/data";
import { tempDir } from "../helpers/server";

let server: Server | null = null;
afterEach(async () => {
  await server?.stop();
  server = null;
});

const EAGAIN = 11;

test("a framed zero-copy send cut anywhere (START, body, END, not cached) goes on exactly where it stopped", async () => {
  const dataDir = join(tempDir("zc-cuts"), "d");
  const config = loadConfig({ argv: ["--host", "127.0.0.1", "--port", "0", "--data-dir", dataDir, "--shards", "4", "--io-engine", "cpool"], env: {} });
  const engine = createEngine(config);
  const zc = engine.zeroCopy as ZeroCopyOps;
  const realSend = zc.sendfileNow.bind(zc);
  /** Bytes of START + body + END the next framed call may send; -1: all; "uncached": none, -EAGAIN. */
  let cut: number | "uncached" = -1;
  let framedCalls = 0;
  zc.sendfileNow = (socket, file, offset, len, head, tail) => {
    if (head === null || cut === -1) return realSend(socket, file, offset, len, head, tail);
    framedCalls++;
    if (cut === "uncached") return -EAGAIN;
    const h = Math.min(cut, head.length);
    const b = Math.min(Math.max(cut - head.length, 0), len);
    const t = Math.min(Math.max(cut - head.length - len, 0), tail?.length ?? 0);
    return realSend(socket, file, offset, b, head.subarray(0, h), b === len ? tail!.subarray(0, t) : null);
  };
  server = await inProcessServer(config, engine, new Logger("warn", () => {}));
  const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });

  for (const size of [50 * 1024, 300_000, 1]) {
    const key = `cut-${size}`;
    const body = payload(size, size + 1);
    cut = -1;
    await uploadExchange(conn, key, size, (c) => c.write(body));
    const H = protobufCodec.encodeFrame({ operation: Op.DOWNLOAD_RSP, key, message: Msg.START, size, type: 1 }).length;
    const T = protobufCodec.encodeFrame({ operation: Op.DOWNLOAD, key, message: Msg.END }).length;
    const cuts: (number | "uncached")[] = ["uncached", 0, 1, H - 1, H, H + 1, H + size - 1, H + size, H + size + 1, H + size + T - 1, H + size + T];
    for (const c of cuts) {
      if (typeof c === "number" && (c < 0 || c > H + size + T)) continue;
      cut = c;
      const before = framedCalls;
      const parts: Uint8Array[] = [];
      const got = await downloadExchange(conn, key, (p) => void parts.push(p.slice()));
      expect(framedCalls, `cut ${c} of ${size}`).toBe(before + 1);
      expect([got, sha256(Buffer.concat(parts))], `cut ${c} of ${size}`).toEqual([size, sha256(body)]);
    }
  }
  // The connection is still in step: one more exchange of another kind is answered.
  cut = -1;
  await conn.sendFrame({ operation: Op.EXIST, key: "cut-300000" });
  const exist = await conn.readFrame();
  expect([exist.operation, exist.size]).toEqual([Op.EXIST_RSP, 300_000]);
  conn.close();
  expect(server.stats.zeroCopyFallbacks).toBe(0);
});
