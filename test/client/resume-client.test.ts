// The client library and `fsgw put` resume uploads by themselves: a proxy between them and a real
// server cuts the first connections after a number of bytes; the upload still completes, byte for
// byte and by digest, resuming where the server's copy ended. A server that will not keep an upload
// resumable (or did not keep its bytes) costs a resend, never a failure.
import { afterEach, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Socket, TCPSocketListener } from "bun";
import { connect } from "../../src/client/client";
import { runClientCommand, type Io } from "../../src/cli/client-commands";
import { protobufCodec } from "../../src/protocol/codec";
import { FrameDecoder } from "../../src/protocol/frame-decoder";
import { Msg, Op } from "../../src/protocol/message";
import { payload, sha256 } from "../helpers/data";
import { startServer, tempDir, type TestServer } from "../helpers/server";

let server: TestServer | null = null;
let proxy: TCPSocketListener<Pipe> | null = null;
afterEach(async () => {
  proxy?.stop(true);
  proxy = null;
  await server?.stop();
  server = null;
});

interface Pipe {
  upstream: Socket<Pipe> | null;
  /** Bytes from the client waiting for the upstream connection (or its drain). */
  pending: Uint8Array[];
  forwarded: number;
  cutAfter: number;
}

/** A TCP proxy to `port` that resets each of the first `cuts` connections after `cutAfter` client bytes. */
function cuttingProxy(port: number, cuts: number, cutAfter: number): TCPSocketListener<Pipe> {
  let opened = 0;
  const flush = (to: Socket<Pipe> | null, pipe: Pipe) => {
    while (to !== null && pipe.pending.length > 0) {
      const chunk = pipe.pending[0]!;
      const n = to.write(chunk);
      if (n < chunk.length) {
        pipe.pending[0] = chunk.subarray(Math.max(0, n));
        return;
      }
      pipe.pending.shift();
    }
  };
  return Bun.listen<Pipe>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(client) {
        const pipe: Pipe = { upstream: null, pending: [], forwarded: 0, cutAfter: opened++ < cuts ? cutAfter : Infinity };
        client.data = pipe;
        void Bun.connect<Pipe>({
          hostname: "127.0.0.1",
          port,
          data: pipe,
          socket: {
            open(up) {
              pipe.upstream = up;
              flush(up, pipe);
            },
            data(_up, chunk) {
              client.write(chunk); // replies are small: frames only
            },
            drain(up) {
              flush(up, pipe);
            },
            close() {
              client.end();
            },
          },
        });
      },
      data(client, chunk) {
        const pipe = client.data;
        pipe.forwarded += chunk.length;
        pipe.pending.push(chunk.slice());
        flush(pipe.upstream, pipe);
        if (pipe.forwarded > pipe.cutAfter) {
          client.terminate();
          pipe.upstream?.terminate();
        }
      },
      close(client) {
        client.data.upstream?.end();
      },
    },
  });
}

test("a client upload cut three times resumes and completes, exact; fsgw put says it resumed", async () => {
  server = await startServer({});
  proxy = cuttingProxy(server.port, 3, 6 * 1024 * 1024);
  const body = payload(40 * 1024 * 1024, 31);
  const resumes: number[] = [];
  const client = connect({ port: proxy.port, poolSize: 1 });
  await client.upload("cut", body, { onResume: (offset) => void resumes.push(offset) });
  client.close();
  expect(resumes.length).toBe(3);
  for (let i = 1; i < resumes.length; i++) expect(resumes[i]!).toBeGreaterThan(resumes[i - 1]!);
  const direct = connect({ port: server.port });
  expect((await direct.exist("cut")).digest).toBe(sha256(body));
  expect(sha256(await direct.download("cut"))).toBe(sha256(body));
  direct.close();

  // The same through the command line, from a file.
  proxy.stop(true);
  proxy = cuttingProxy(server.port, 2, 3 * 1024 * 1024);
  const dir = tempDir("resume-cli");
  const file = join(dir, "big.bin");
  const fileBody = payload(20 * 1024 * 1024, 32);
  writeFileSync(file, fileBody);
  const out: string[] = [];
  const io: Io = { stdout: (t) => void out.push(t), stderr: { isTTY: false, columns: 80, write: (t) => void out.push(t) }, stdoutBytes: () => {} };
  expect(await runClientCommand("put", [file, "--key", "cli-cut", "--port", String(proxy.port)], io)).toBe(0);
  expect(out.join("").match(/connection lost; resumed at/g)?.length).toBe(2);
  expect(await runClientCommand("get", ["cli-cut", "-o", join(dir, "back.bin"), "--port", String(server.port)], io)).toBe(0);
  expect(sha256(readFileSync(join(dir, "back.bin")))).toBe(sha256(fileBody));
}, 60_000);

test("a server that will not keep an upload resumable (START without an id) gets an ordinary upload, not a failure", async () => {
  // resumableUploadsMax 0: every upload that asks to be resumable is taken as an ordinary one.
  server = await startServer({ resumableUploadsMax: 0 });
  const body = payload(3 * 1024 * 1024, 41);
  const client = connect({ port: server.port });
  await client.upload("ordinary", body);
  expect((await client.exist("ordinary")).digest).toBe(sha256(body));
  client.close();
});

test("a RESUME answered 'no such upload' (the server did not keep the bytes) starts the upload again from its first byte", async () => {
  // The server keeps at most 1 MiB of a client's broken uploads: the cut at 3 MiB is not kept.
  server = await startServer({ resumableBytesPerClientMax: 1024 * 1024 });
  proxy = cuttingProxy(server.port, 1, 3 * 1024 * 1024);
  const body = payload(8 * 1024 * 1024, 42);
  const resumes: number[] = [];
  const client = connect({ port: proxy.port, poolSize: 1 });
  await client.upload("again", body, { onResume: (offset) => void resumes.push(offset) });
  client.close();
  expect(resumes).toEqual([0]);
  await server.line("event=resumable_not_kept");
  const direct = connect({ port: server.port });
  expect((await direct.exist("again")).digest).toBe(sha256(body));
  direct.close();
});

test("a server that refuses with 'resumable upload limit reached' (earlier fsgw servers) gets a plain upload", async () => {
  // A stand-in for such a server: it refuses the resumable request, then takes a plain upload.
  const decoderOf = () => new FrameDecoder(1 << 20);
  const stored: { key: string; body: Buffer }[] = [];
  interface Peer {
    decoder: FrameDecoder;
    body: { key: string; left: number; parts: Buffer[] } | null;
  }
  const fake = Bun.listen<Peer>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        s.data = { decoder: decoderOf(), body: null };
      },
      data(s, chunk) {
        for (let at = 0; at < chunk.length; ) {
          const peer = s.data;
          if (peer.body !== null) {
            const take = Math.min(peer.body.left, chunk.length - at);
            peer.body.parts.push(Buffer.from(chunk.subarray(at, at + take)));
            peer.body.left -= take;
            at += take;
            if (peer.body.left === 0) {
              stored.push({ key: peer.body.key, body: Buffer.concat(peer.body.parts) });
              s.write(protobufCodec.encodeFrame({ operation: Op.UPLOAD, key: peer.body.key, message: Msg.END }));
              peer.body = null;
            }
            continue;
          }
          at += peer.decoder.feed(chunk, at);
          const frame = peer.decoder.takeFrame();
          if (frame === null) continue;
          const msg = protobufCodec.decode(frame);
          if (msg.operation !== Op.UPLOAD || msg.message === Msg.ACK) continue;
          if (msg.resumable) {
            s.write(protobufCodec.encodeFrame({ operation: Op.UPLOAD_RSP, key: msg.key, message: "resumable upload limit reached: try later" }));
            continue;
          }
          peer.body = { key: msg.key, left: msg.size, parts: [] };
          s.write(protobufCodec.encodeFrame({ operation: Op.UPLOAD_RSP, key: msg.key, message: Msg.START }));
        }
      },
    },
  });
  try {
    const body = payload(2 * 1024 * 1024, 43);
    const client = connect({ port: fake.port });
    await client.upload("fallback", body);
    client.close();
    expect(stored.map((s) => [s.key, sha256(s.body)])).toEqual([["fallback", sha256(body)]]);
  } finally {
    fake.stop(true);
  }
});
