// Proves that nothing outside the data directory is ever read, written or deleted through a
// symbolic link planted in it, on every engine (the C pool with and without inline calls, Bun's fs,
// blocking calls): a link planted as a key's file, and a shard directory replaced by a link to
// another directory, are refused with a clear text and a log line; a start over such a data
// directory is refused; and the files and directories fsgw creates are its account's alone.
import { afterEach, describe, expect, test } from "bun:test";
import { lstatSync, mkdirSync, readFileSync, readdirSync, renameSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { deleteExchange, downloadExchange, existExchange, ServerError, uploadExchange } from "../../src/client/exchanges";
import { WireConn } from "../../src/client/wire-conn";
import { fileNameOf } from "../../src/storage/file-store";
import { checkKey, type StoreKey } from "../../src/storage/keys";
import { payload, sha256 } from "../helpers/data";
import { startServer, tempDir, type TestServer } from "../helpers/server";

let server: TestServer | null = null;
afterEach(async () => {
  await server?.stop();
  server = null;
});

const REFUSED = "refused: a symbolic link stands in the data directory";

/** The shard directory of a key in a data directory of 256 shards (the default layout). */
function shardOf(dataDir: string, key: string): string {
  const k = checkKey(key) as StoreKey;
  return join(dataDir, (k.hash % 256).toString(16).padStart(2, "0"));
}

async function textOf(p: Promise<unknown>): Promise<string> {
  const e = await p.then(
    () => null,
    (e) => e,
  );
  if (!(e instanceof ServerError)) throw new Error(`expected a refusal, got ${String(e)}`);
  return e.text;
}

const engines: [string, Record<string, string | number>][] = [
  ["cpool", {}],
  ["cpool, volumes off", { volumes: "false" }],
  ["cpool, ioInline off, volumes off", { ioInline: "off", volumes: "false" }],
  ["cpool, zeroCopy off", { zeroCopy: "false" }],
  ["bun", { ioEngine: "bun" }],
  ["sync", { ioEngine: "sync" }],
];

for (const [name, fields] of engines) {
  describe(`symbolic links in the data directory (${name})`, () => {
    test("a link planted as a key's file is refused by download and exist; the outside file is never served", async () => {
      const outside = join(tempDir("outside"), "shadow");
      writeFileSync(outside, "root:secret-hash:19000:0:99999:7:::\n");
      server = await startServer({ ...fields, loops: 1 });
      const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
      const body = payload(3000, 1);
      await uploadExchange(conn, "ordinary", body.length, (c) => c.write(body));
      // Before the fix: `download shadow` returned the outside file.
      symlinkSync(outside, join(shardOf(server.dataDir, "shadow"), "shadow"));
      const served: Uint8Array[] = [];
      expect(await textOf(downloadExchange(conn, "shadow", (p) => void served.push(p.slice())))).toBe(REFUSED);
      expect(served).toEqual([]);
      expect(await textOf(existExchange(conn, "shadow"))).toBe(REFUSED);
      // A ranged download takes the streamed path: refused too.
      expect(await textOf(downloadExchange(conn, "shadow", () => {}, undefined, { offset: 1, length: 5 }))).toBe(REFUSED);
      expect(await server.line(/event=symlink_refused .*key=shadow/)).toContain("op=download");
      // Everything else is served as before, on the same connection.
      const back: Uint8Array[] = [];
      await downloadExchange(conn, "ordinary", (p) => void back.push(p.slice()));
      expect(sha256(Buffer.concat(back))).toBe(sha256(body));
      // Deleting the key removes the link itself, never its target.
      await deleteExchange(conn, "shadow");
      expect(readFileSync(outside, "utf8")).toContain("secret-hash");
      conn.close();
    });

    test("a shard directory replaced by a link to another directory: uploads, downloads and deletes are refused there, nothing outside is touched", async () => {
      const elsewhere = tempDir("elsewhere");
      writeFileSync(join(elsewhere, "victim"), "precious");
      server = await startServer({ ...fields, loops: 1 });
      const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
      const shard = shardOf(server.dataDir, "victim");
      // The attacker moves the shard aside and puts a link in its place.
      renameSync(shard, shard + ".moved");
      symlinkSync(elsewhere, shard);
      // Before the fix: deletes unlinked files there, uploads created files there.
      expect(await textOf(deleteExchange(conn, "victim"))).toBe(REFUSED);
      expect(await textOf(existExchange(conn, "victim"))).toBe(REFUSED);
      expect(await textOf(downloadExchange(conn, "victim", () => {}))).toBe(REFUSED);
      // Uploads to keys of that shard: as files (one operation, and streamed) they are refused; a
      // small body is a volume's record (volumes on, the default) and touches no shard directory.
      const keys = ["victim", ...otherKeysOfShard(server.dataDir, shard, 2)];
      for (const [i, key] of keys.entries()) {
        const size = i === 0 ? 100 : i === 1 ? 300_000 : 5_000_000;
        const body = payload(size, i);
        const upload = uploadExchange(conn, key, size, (c) => c.write(body));
        if (i === 0 && fields.volumes !== "false") expect(await upload).toBe(sha256(body));
        else expect(await textOf(upload)).toBe(REFUSED);
      }
      expect(readdirSync(elsewhere).sort()).toEqual(["victim"]);
      expect(readFileSync(join(elsewhere, "victim"), "utf8")).toBe("precious");
      conn.close();
    });
  });
}

describe("volumes", () => {
  test("the volumes directory replaced by a link while the server runs: new volumes and reads stay in the directory opened first, nothing outside is touched", async () => {
    const elsewhere = tempDir("elsewhere-volumes");
    writeFileSync(join(elsewhere, "victim"), "precious");
    server = await startServer({ volumes: true, volumeFileBytesMax: 1 << 20, volumeCompactLivePercent: 0 });
    const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
    await uploadExchange(conn, "before", 1000, (c) => c.write(payload(1000, 1)));
    const volumes = join(server.dataDir, "volumes");
    renameSync(volumes, volumes + ".moved");
    symlinkSync(elsewhere, volumes);
    // Past 1 MiB: the writer begins new volumes, by name, after the link is there.
    for (let i = 0; i < 300; i++) await uploadExchange(conn, `k${i}`, 5000, (c) => c.write(payload(5000, i)));
    for (const i of [0, 150, 299]) {
      const got: Uint8Array[] = [];
      await downloadExchange(conn, `k${i}`, (b) => void got.push(b.slice()));
      expect(sha256(Buffer.concat(got))).toBe(sha256(payload(5000, i)));
    }
    expect(readdirSync(elsewhere).sort()).toEqual(["victim"]);
    expect(readFileSync(join(elsewhere, "victim"), "utf8")).toBe("precious");
    expect(readdirSync(volumes + ".moved").filter((n) => n.endsWith(".fsv")).length).toBeGreaterThanOrEqual(2);
    conn.close();
  });
});

/** `n` keys (other than those given) whose shard is `shard`. */
function otherKeysOfShard(dataDir: string, shard: string, n: number): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < n; i++) if (shardOf(dataDir, `k${i}`) === shard) out.push(`k${i}`);
  return out;
}

describe("a start over a data directory with links in it is refused, and touches nothing outside", () => {
  test("a shard directory that is a link", async () => {
    const dataDir = join(tempDir("links-start"), "d");
    server = await startServer({ dataDir, loops: 1 });
    await server.stop();
    server = null;
    const elsewhere = tempDir("elsewhere");
    writeFileSync(join(elsewhere, ".fsgw-tmp\\1.1"), "looks like a temporary file");
    const shard = join(dataDir, "7f");
    renameSync(shard, shard + ".moved");
    symlinkSync(elsewhere, shard);
    const err = await startServer({ dataDir, loops: 1 }).catch((e: Error) => e.message);
    expect(err).toContain("is not a directory (a symbolic link?)");
    // The start-up sweep did not remove the "temporary file" through the link.
    expect(readdirSync(elsewhere)).toEqual([".fsgw-tmp\\1.1"]);
  });

  test("a lock file or a layout file that is a link", async () => {
    const victim = join(tempDir("victim"), "bashrc");
    writeFileSync(victim, "export PATH=/usr/bin\n");
    for (const file of ["fsgw.lock", "fsgw-layout.json"]) {
      const dataDir = join(tempDir("links-files"), "d");
      mkdirSync(dataDir, { mode: 0o700 });
      symlinkSync(victim, join(dataDir, file));
      const err = await startServer({ dataDir, loops: 1 }).catch((e: Error) => e.message);
      expect(err).toContain("symbolic link");
      // Before the fix the pid was written into the link's target.
      expect(readFileSync(victim, "utf8")).toBe("export PATH=/usr/bin\n");
    }
  });
});

describe("modes", () => {
  test("a new data directory is 0700 and its files 0600; fileMode and dirMode change them", async () => {
    const dataDir = join(tempDir("modes"), "d");
    server = await startServer({ dataDir, loops: 1 });
    const conn = await WireConn.connect({ host: "127.0.0.1", port: server.port });
    await uploadExchange(conn, "small", 100, (c) => c.write(payload(100, 1)));
    await uploadExchange(conn, "large", 300_000, (c) => c.write(payload(300_000, 2)));
    conn.close();
    const mode = (p: string) => statSync(p).mode & 0o777;
    expect(mode(dataDir)).toBe(0o700);
    expect(mode(shardOf(dataDir, "large"))).toBe(0o700);
    // The small body is a record: its volume, and the volumes' directory, are as private.
    const volumes = join(dataDir, "volumes");
    expect(mode(volumes)).toBe(0o700);
    const [volume] = readdirSync(volumes).filter((n) => n.endsWith(".fsv"));
    expect(mode(join(volumes, volume!))).toBe(0o600);
    expect(mode(join(shardOf(dataDir, "large"), fileNameOf("large")))).toBe(0o600);
    expect(mode(join(dataDir, "fsgw-layout.json"))).toBe(0o600);
    await server.stop();
    const shared = join(tempDir("modes"), "shared");
    server = await startServer({ dataDir: shared, loops: 1, fileMode: "0640", dirMode: "0750" });
    const c2 = await WireConn.connect({ host: "127.0.0.1", port: server.port });
    await uploadExchange(c2, "small", 100, (c) => c.write(payload(100, 1)));
    await uploadExchange(c2, "large", 300_000, (c) => c.write(payload(300_000, 2)));
    c2.close();
    expect(mode(shared)).toBe(0o750);
    expect(mode(join(shared, "volumes"))).toBe(0o750);
    const [sharedVolume] = readdirSync(join(shared, "volumes")).filter((n) => n.endsWith(".fsv"));
    expect(mode(join(shared, "volumes", sharedVolume!))).toBe(0o640);
    expect(mode(join(shardOf(shared, "large"), fileNameOf("large")))).toBe(0o640);
  });

  test("an existing data directory open to other users is reported at start", async () => {
    const dataDir = join(tempDir("modes-open"), "d");
    mkdirSync(dataDir, { mode: 0o755 });
    server = await startServer({ dataDir, loops: 1 });
    const line = server.lines.find((l) => l.includes("event=data_dir_mode"));
    expect(line).toContain("mode=0755");
    expect(line).toContain(`advice="chmod 700 ${dataDir}"`);
    expect(lstatSync(dataDir).mode & 0o777).toBe(0o755); // reported, not changed behind the operator's back
  });
});
