// Settles a question the upload path depends on: does Bun reuse the buffer it hands to a socket's
// `data` callback? If it did, a chunk queued for the C pool would change under the worker's feet
// and every upload chunk would need a copy first.
//
// Answer (Bun 1.4.5, proved below): no. Each `data` call gets a fresh buffer that Bun never touches
// again, so src/storage/upload-stream.ts queues views of received chunks and the pool writes them
// without a copy. If a Bun upgrade changes this, this test fails and uploads must copy.
import { expect, test } from "bun:test";

test("a socket's data buffers are never reused: chunks held across callbacks keep their bytes", async () => {
  const held: { chunk: Uint8Array; copy: Uint8Array }[] = [];
  let closed: () => void;
  const done = new Promise<void>((r) => (closed = r));
  const server = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(_socket, chunk) {
        held.push({ chunk, copy: chunk.slice() });
      },
      close() {
        closed();
      },
    },
  });
  const size = 16 * 1024 * 1024;
  const sent = new Uint8Array(size);
  for (let i = 0; i < size; i++) sent[i] = (i * 7 + (i >>> 11)) & 0xff;
  const client = await Bun.connect({ hostname: "127.0.0.1", port: server.port, socket: { data() {}, drain() {} } });
  let offset = 0;
  while (offset < size) {
    const n = client.write(sent.subarray(offset, Math.min(size, offset + 65536)));
    if (n > 0) offset += n;
    else await Bun.sleep(1);
  }
  client.end();
  await done;
  server.stop(true);

  expect(held.length).toBeGreaterThan(10); // the stream really arrived in many callbacks
  let changed = 0;
  let position = 0;
  for (const { chunk, copy } of held) {
    if (Buffer.compare(chunk, copy) !== 0) changed++;
    expect(Buffer.compare(chunk, sent.subarray(position, position + chunk.length))).toBe(0);
    position += chunk.length;
  }
  expect(position).toBe(size);
  expect(changed).toBe(0);
});
