// Proves every IoEngine operation, and its error path, behaves the same on cpool, bun and sync.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { engineNames, loadConfig } from "../../src/config";
import { createEngine } from "../../src/engine/create-engine";
import { IoError } from "../../src/engine/io-error";
import type { IoEngine } from "../../src/engine/io-engine";
import { payload, sha256 } from "../helpers/data";
import { tempDir } from "../helpers/server";
import { stableBytes } from "../../src/util/stable-bytes";

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(IoError);
    return (e as IoError).code;
  }
  return "no error";
}

describe.each(engineNames.map((e) => [e]))("engine %s", (name) => {
  const engine: IoEngine = createEngine(loadConfig({ argv: ["--io-engine", name, "--io-threads", "2", "--waiting-queue-len", "64"], env: {} }));
  const dir = tempDir(`engine-${name}`);
  afterAll(() => engine.shutdown());

  test("create, write at offsets, fsync, fstat, close, read back, stat, rename, unlink", async () => {
    const tmp = join(dir, "a.tmp");
    const fin = join(dir, "a");
    const fd = await engine.open(tmp, "create");
    const body = payload(200_000, 1);
    await engine.write(fd, body.subarray(100_000), 100_000); // second half first
    await engine.write(fd, body.subarray(0, 100_000), 0);
    await engine.fsync(fd);
    expect(await engine.fstat(fd)).toEqual({ size: 200_000, isFile: true, isDir: false });
    await engine.close(fd);
    await engine.rename(tmp, fin);
    expect(sha256(readFileSync(fin))).toBe(sha256(body));
    expect(await engine.stat(fin)).toEqual({ size: 200_000, isFile: true, isDir: false });
    const rfd = await engine.open(fin, "read");
    const into = new Uint8Array(1000);
    expect(await engine.read(rfd, into, 199_500)).toBe(500);
    expect(sha256(into.subarray(0, 500))).toBe(sha256(body.subarray(199_500)));
    expect(await engine.read(rfd, into, 200_000)).toBe(0);
    await engine.close(rfd);
    await engine.unlink(fin);
    expect(existsSync(fin)).toBe(false);
  });

  test("digestOf writes the SHA-256 of the whole body (block edges, empty, large) into the caller's memory, every byte", () => {
    const out = stableBytes(32);
    for (const size of [0, 1, 55, 56, 63, 64, 65, 5120, 65_536 + 3]) {
      const body = payload(size, size + 7);
      out.fill(0xaa); // what the last one left is not what this one finds
      engine.digestOf(body, out);
      expect(Buffer.from(out).toString("hex")).toBe(sha256(body));
    }
  });

  test("stat of a directory says so", async () => {
    const sub = join(dir, "sub");
    mkdirSync(sub);
    expect(await engine.stat(sub)).toMatchObject({ isFile: false, isDir: true });
  });

  test("commitFile stores the whole body under the final name and leaves no temporary", async () => {
    const body = payload(5000, 2);
    await engine.commitFile(join(dir, "c.tmp"), join(dir, "c"), body, true);
    expect(sha256(readFileSync(join(dir, "c")))).toBe(sha256(body));
    expect(existsSync(join(dir, "c.tmp"))).toBe(false);
    expect(await code(engine.commitFile(join(dir, "d.tmp"), join(dir, "no/such/dir/d"), body, false))).toBe("ENOENT");
    expect(existsSync(join(dir, "d.tmp"))).toBe(false);
  });

  test("errors are typed IoErrors with the errno name", async () => {
    const missing = join(dir, "missing");
    expect(await code(engine.open(missing, "read"))).toBe("ENOENT");
    expect(await code(engine.stat(missing))).toBe("ENOENT");
    expect(await code(engine.unlink(missing))).toBe("ENOENT");
    expect(await code(engine.rename(missing, join(dir, "x")))).toBe("ENOENT");
    const fd = await engine.open(join(dir, "e"), "create");
    expect(await code(engine.open(join(dir, "e"), "create"))).toBe("EEXIST");
    await engine.close(fd);
    expect(await code(engine.close(fd))).toBe("EBADF");
    expect(await code(engine.write(987_654, new Uint8Array(1), 0))).toBe("EBADF");
    expect(await code(engine.read(987_654, new Uint8Array(1), 0))).toBe("EBADF");
    expect(await code(engine.fstat(987_654))).toBe("EBADF");
    expect(await code(engine.fsync(987_654))).toBe("EBADF");
    const e = await engine.stat(missing).catch((x) => x);
    expect(e).toBeInstanceOf(IoError);
    expect((e as IoError).errno).toBe(2);
  });
});
