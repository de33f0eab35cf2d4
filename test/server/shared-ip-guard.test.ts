// The per-address limits shared by several event loops (src/server/shared-ip-guard.ts) follow the
// single loop's rules exactly: the same random sequence of opens, closes and failed AUTH exchanges
// over more addresses than the table keeps gets the same answers from both; and two threads
// counting one address at once never let it past connectionsPerIpMax.
import { expect, test } from "bun:test";
import { IpGuard, type IpGuardLimits } from "../../src/server/ip-guard";
import { SharedIpGuard, sharedAddressTable } from "../../src/server/shared-ip-guard";

const limits: IpGuardLimits = { connectionsPerIpMax: 3, authFailuresMax: 2, authFailureWindowMs: 50, authBlockMs: 80, clientAddressesMax: 8 };

test("the same answers as IpGuard on 20,000 random events over 24 addresses (8 remembered)", () => {
  const one = new IpGuard(limits);
  const shared = new SharedIpGuard(limits, sharedAddressTable(limits.clientAddressesMax));
  const open = new Map<string, number>();
  let seed = 7;
  const random = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
  let now = 1000;
  const answers: string[] = [];
  for (let i = 0; i < 20_000; i++) {
    now += 1 + random(3); // strictly increasing: "quiet the longest" is the same address in both
    const ip = random(4) === 0 ? `2001:db8::${random(24)}` : `10.0.0.${random(24)}`;
    const what = random(3);
    if (what === 0) {
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
  for (const a of ["ok", "blocked", "too many connections"]) expect(answers.some((x) => x.startsWith(a))).toBe(true);
});

test("two threads admitting one address at once: never more than connectionsPerIpMax", async () => {
  const many: IpGuardLimits = { ...limits, connectionsPerIpMax: 1000, clientAddressesMax: 64 };
  const memory = sharedAddressTable(many.clientAddressesMax);
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
