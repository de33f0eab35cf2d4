// Proves that exist and small downloads are answered on the event loop from the kernel's caches
// (ioInline cached), that the pool answers them when the inline attempt is refused (the test
// entry's fault: as if nothing were cached) or off, and that all three give the same replies, byte
// for byte.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { deleteExchange, downloadExchange, existExchange, ServerError, uploadExchange } from "../../src/client/exchanges";
import { WireConn } from "../../src/client/wire-conn";
import { Op } from "../../src/protocol/message";
import { payload, sha256 } from "../helpers/data";
import { freePort, startServer, WITH_FAULTS, type TestServer } from "../helpers/server";

const modes = ["cached", "refused", "off"] as const;
const servers = new Map<string, { server: TestServer; admin: string }>();

beforeAll(async () => {
  for (const mode of modes) {
    const adminPort = freePort();
    // Files (volumes off): the inline calls are the file path's (a volume's record is found in the
    // index and read from its volume's descriptor, with no inline attempt to count).
    const server = mode === "refused" ? await startServer({ ioInline: "cached", adminPort, volumes: false }, { TEST_INLINE_REFUSED: "1" }, [], undefined, WITH_FAULTS) : await startServer({ ioInline: mode, adminPort, volumes: false });
    servers.set(mode, { server, admin: `http://127.0.0.1:${adminPort}` });
  }
});
afterAll(async () => {
  for (const { server } of servers.values()) expect(await server.stop()).toBe(0);
});

async function engineStats(mode: string): Promise<{ inlineAnswered: number; inlineRefused: number; submitted: number }> {
  return ((await (await fetch(`${servers.get(mode)!.admin}/debug/stats`)).json()) as { engine: any }).engine;
}

/** Every answer the exchanges give, errors as their text, bodies as their hash. */
async function script(conn: WireConn): Promise<string[]> {
  const out: string[] = [];
  const attempt = async (what: string, p: Promise<unknown>) => {
    try {
      out.push(`${what}: ${JSON.stringify(await p)}`);
    } catch (e) {
      if (!(e instanceof ServerError)) throw e;
      out.push(`${what}: error ${e.text}`);
    }
  };
  const download = async (key: string) => {
    const parts: Uint8Array[] = [];
    await downloadExchange(conn, key, (p) => void parts.push(p.slice()));
    return sha256(Buffer.concat(parts));
  };
  for (const [key, size] of [["small", 5000], ["inline-max", 65536], ["streamed", 65537]] as const) {
    const body = payload(size, size);
    await uploadExchange(conn, key, size, (c) => c.write(body));
    out.push(`stored ${key} ${sha256(body)}`);
    for (let i = 0; i < 3; i++) {
      await attempt(`exist ${key}`, existExchange(conn, key));
      await attempt(`download ${key}`, download(key));
    }
  }
  const missing = `missing-${Date.now()}`;
  for (let i = 0; i < 2; i++) {
    await attempt("exist missing", existExchange(conn, missing));
    await attempt("download missing", download(missing));
  }
  return out;
}

describe("ioInline", () => {
  /** One mode's transcript of the script, its inline counters checked. */
  async function transcriptOf(mode: string): Promise<string[]> {
    const before = await engineStats(mode);
    const conn = await WireConn.connect({ host: "127.0.0.1", port: servers.get(mode)!.server.port });
    const transcript = await script(conn);
    conn.close();
    const after = await engineStats(mode);
    const answered = after.inlineAnswered - before.inlineAnswered;
    const refused = after.inlineRefused - before.inlineRefused;
    if (mode === "cached") {
      // 3 exists and 3 downloads of each stored key (the 65537-byte one is too large for a whole
      // read: its answer is its size, and then it streams), and the second round of misses.
      expect(answered).toBeGreaterThanOrEqual(18 + 2);
      expect(refused).toBeLessThanOrEqual(2); // only a name never looked up before
    } else if (mode === "refused") {
      expect(answered).toBe(0);
      expect(refused).toBeGreaterThanOrEqual(18 + 4);
    } else {
      expect(answered + refused).toBe(0);
    }
    // Refused or off, the pool did the work.
    if (mode !== "cached") expect(after.submitted - before.submitted).toBeGreaterThanOrEqual(18 + 4);
    return transcript;
  }

  test("cached, refused and off: every exchange answered, and the three give identical replies", async () => {
    const cached = await transcriptOf("cached");
    expect(await transcriptOf("refused")).toEqual(cached);
    expect(await transcriptOf("off")).toEqual(cached);
    expect(cached.filter((l) => l.includes("error no such key"))).toHaveLength(4);
  });
});

describe("pooled upload buffers", () => {
  test("a client that hangs up right after its body still gets its file, byte for byte, while others reuse buffers", async () => {
    // Bodies arrive in two pieces, so each is gathered into a pooled buffer; the client closes as
    // soon as the last byte is out, while the engine still reads that buffer. The buffer must stay
    // out of the pool until the commit completes, or the next upload overwrites it mid-write.
    const server = await startServer({ inlineBuffersBytesMax: 4 * (64 * 1024 + 2048) });
    try {
      const rounds = 30;
      const clients = 40;
      const size = 60_000;
      for (let r = 0; r < rounds; r++) {
        await Promise.all(
          Array.from({ length: clients }, async (_, c) => {
            const body = payload(size, r * clients + c + 1);
            const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
            await conn.sendFrame({ operation: Op.UPLOAD, key: `hangup-${c}`, size });
            expect((await conn.readFrame()).message).toBe("START");
            await conn.write(body.subarray(0, size / 2));
            await Bun.sleep(1);
            await conn.write(body.subarray(size / 2));
            conn.destroy();
          }),
        );
        const check = await WireConn.connect({ host: "127.0.0.1", port: server.port });
        for (let c = 0; c < clients; c++) {
          const want = sha256(payload(size, r * clients + c + 1));
          let got = "";
          for (let attempt = 0; attempt < 100 && got !== want; attempt++) {
            const parts: Uint8Array[] = [];
            try {
              await downloadExchange(check, `hangup-${c}`, (p) => void parts.push(p.slice()));
              got = sha256(Buffer.concat(parts));
            } catch (e) {
              if (!(e instanceof ServerError)) throw e;
            }
            if (got !== want) await Bun.sleep(5); // the commit may still be on its way
          }
          expect([r, c, got]).toEqual([r, c, want]);
        }
        check.close();
      }
    } finally {
      await server.stop();
    }
  }, 60_000);
});

describe("exist misses", () => {
  test("a key the store does not hold is answered from the listing index, without a worker's lookup; a key stored, and deleted again, is seen each time", async () => {
    // The "refused" server: no name is ever answered from the kernel's caches, so every miss the
    // index did not answer would be a pool operation.
    const mode = "refused";
    const conn = await WireConn.connect({ host: "127.0.0.1", port: servers.get(mode)!.server.port });
    const misses = 50;
    const before = await engineStats(mode);
    for (let i = 0; i < misses; i++) await expect(existExchange(conn, `never-stored-${Date.now()}-${i}`)).rejects.toThrow("no such key");
    const after = await engineStats(mode);
    expect(after.submitted - before.submitted).toBe(0);
    const key = `stored-then-deleted-${Date.now()}`;
    await expect(existExchange(conn, key)).rejects.toThrow("no such key");
    const body = payload(3000, 9);
    await uploadExchange(conn, key, body.length, (c) => c.write(body));
    expect((await existExchange(conn, key)).size).toBe(3000);
    await deleteExchange(conn, key);
    await expect(existExchange(conn, key)).rejects.toThrow("no such key");
    conn.close();
  });
});
