// The per-client limits shared by several event loops (src/server/shared-ip-guard.ts) follow the
// single loop's rules exactly: the same random sequence of opens, closes, failed AUTH exchanges and
// resumable-upload charges over more clients than the table keeps gets the same answers from both;
// and two threads counting one address at once never let it past connectionsPerIpMax.
import { expect, test } from "bun:test";
import { IpGuard, type IpGuardLimits } from "../../src/server/ip-guard";
import { SharedIpGuard, sharedAddressTable } from "../../src/server/shared-ip-guard";

const limits: IpGuardLimits = {
  connectionsPerIpMax: 3,
  authFailuresMax: 2,
  authFailureWindowMs: 50,
  authBlockMs: 80,
  clientAddressesMax: 8,
  connectionsMax: 100,
  resumableUploadsMax: 50,
  resumableUploadsPerClientMax: 2,
  resumableBytesPerClientMax: 1000,
};

test("the same answers as IpGuard on 20,000 random events over 24 addresses (8 remembered)", () => {
  const one = new IpGuard(limits);
  const shared = new SharedIpGuard(limits, sharedAddressTable(limits));
  const open = new Map<string, number>();
  /** Uploads charged now, each with its clients and kept bytes. */
  const uploads: { clients: string[]; kept: number }[] = [];
  let seed = 7;
  // The high bits: an LCG's low bits repeat with short periods.
  const random = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
  let now = 1000;
  const answers: string[] = [];
  for (let i = 0; i < 20_000; i++) {
    now += 1 + random(3); // strictly increasing: "quiet the longest" is the same address in both
    const ip = random(4) === 0 ? `2001:db8::${random(24)}` : `10.0.0.${random(24)}`;
    const what = random(6);
    if (what === 3) {
      // A resumable upload starts, charged to an address and maybe a token.
      const clients = random(2) === 0 ? [ip] : [ip, `token:t${random(5)}`];
      const a = one.takeUpload(clients, now);
      expect([i, shared.takeUpload(clients, now)]).toEqual([i, a]);
      answers.push(a === null ? "upload taken" : "upload refused");
      if (a === null) uploads.push({ clients, kept: 0 });
    } else if (what === 4 && uploads.length > 0) {
      // One breaks and is parked with more bytes kept, or not kept.
      const u = uploads[random(uploads.length)]!;
      const more = 1 + random(400);
      const a = one.takeBytes(u.clients, more);
      expect([i, shared.takeBytes(u.clients, more)]).toEqual([i, a]);
      answers.push(a === null ? "bytes kept" : "bytes refused");
      if (a === null) u.kept += more;
    } else if (what === 5 && uploads.length > 0 && random(3) === 0) {
      // One is committed, expired or discarded: its charges go.
      const u = uploads.splice(random(uploads.length), 1)[0]!;
      one.releaseBytes(u.clients, u.kept);
      shared.releaseBytes(u.clients, u.kept);
      one.releaseUpload(u.clients, now);
      shared.releaseUpload(u.clients, now);
    }
    if (what >= 3) {
      for (const c of [ip, "token:t0", "token:t1"]) expect([i, c, shared.charged(c)]).toEqual([i, c, one.charged(c)]);
    } else if (what === 0) {
      const a = one.admit(ip, now);
      const b = shared.admit(ip, now);
      answers.push(`${a}|${b}`);
      expect([i, ip, b]).toEqual([i, ip, a]);
      if (a === "ok") open.set(ip, (open.get(ip) ?? 0) + 1);
    } else if (what === 1 && (open.get(ip) ?? 0) > 0) {
      one.closed(ip, now);
      shared.closed(ip, now);
      open.set(ip, open.get(ip)! - 1);
    } else {
      expect([i, ip, shared.authFailed(ip, now)]).toEqual([i, ip, one.authFailed(ip, now)]);
    }
    expect([i, shared.size, shared.blocks]).toEqual([i, one.size, one.blocks]);
  }
  // The sequence exercised every answer.
  for (const a of ["ok", "blocked", "too many connections", "upload taken", "upload refused", "bytes kept", "bytes refused"]) expect([a, answers.some((x) => x.startsWith(a))]).toEqual([a, true]);
  // Every charge released, nothing is charged any more.
  for (const u of uploads.splice(0)) {
    one.releaseBytes(u.clients, u.kept);
    shared.releaseBytes(u.clients, u.kept);
    one.releaseUpload(u.clients, now);
    shared.releaseUpload(u.clients, now);
  }
  for (let t = 0; t < 5; t++) expect(shared.charged(`token:t${t}`)).toEqual({ uploads: 0, keptBytes: 0 });
});

test("two threads admitting one address at once: never more than connectionsPerIpMax", async () => {
  const many: IpGuardLimits = { ...limits, connectionsPerIpMax: 1000, clientAddressesMax: 64 };
  const memory = sharedAddressTable(many);
  const code = `
    import { SharedIpGuard } from ${JSON.stringify(new URL("../../src/server/shared-ip-guard.ts", import.meta.url).pathname)};
    self.onmessage = (e) => {
      const guard = new SharedIpGuard(e.data.limits, e.data.memory);
      let ok = 0;
      for (let i = 0; i < 5000; i++) if (guard.admit("192.0.2.1", 1000) === "ok") ok++;
      postMessage(ok);
    };`;
  const url = URL.createObjectURL(new Blob([code], { type: "application/typescript" }));
  const run = () =>
    new Promise<number>((resolve) => {
      const w = new Worker(url);
      w.onmessage = (e) => {
        resolve(e.data as number);
        w.terminate();
      };
      w.postMessage({ limits: many, memory });
    });
  const [a, b] = await Promise.all([run(), run()]);
  expect(a + b).toBe(1000);
});
