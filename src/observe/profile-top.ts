// Turns a .cpuprofile (Chrome DevTools format, as node:inspector's Profiler and `bun --cpu-prof`
// write it) into a table like `pprof -top`: self ("flat") and total ("cum") time per function,
// hottest first.

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber?: number };
  children?: number[];
}
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface TopRow {
  name: string;
  selfMs: number;
  selfPercent: number;
  totalMs: number;
  totalPercent: number;
}

function label(node: ProfileNode): string {
  const f = node.callFrame;
  const name = f.functionName || "(anonymous)";
  if (!f.url) return name;
  const file = f.url.replace(/^file:\/\//, "").replace(/^.*\/(src|node_modules)\//, "$1/");
  return `${name} ${file}:${f.lineNumber + 1}`;
}

export function topOf(profile: CpuProfile): { totalMs: number; rows: TopRow[] } {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  const selfUs = new Map<string, number>();
  const totalUs = new Map<string, number>();
  // A sample stands for the gap to the next one, but the profiler stops sampling while the thread
  // sleeps in the event loop, so a gap can span idle time: cap it at twice the usual interval.
  const sorted = deltas.filter((d) => d > 0).sort((a, b) => a - b);
  const capUs = 2 * (sorted[sorted.length >> 1] ?? 1000);
  let sumUs = 0;
  for (let i = 0; i < samples.length; i++) {
    const us = Math.min(capUs, Math.max(0, deltas[i + 1] ?? 0));
    sumUs += us;
    let id: number | undefined = samples[i];
    const node = byId.get(id!);
    if (node === undefined) continue;
    const self = label(node);
    selfUs.set(self, (selfUs.get(self) ?? 0) + us);
    const seen = new Set<string>();
    while (id !== undefined) {
      const n = byId.get(id)!;
      const l = label(n);
      if (!seen.has(l)) {
        seen.add(l);
        totalUs.set(l, (totalUs.get(l) ?? 0) + us);
      }
      id = parent.get(id);
    }
  }
  const totalMs = sumUs / 1000;
  const rows: TopRow[] = [...totalUs.keys()].map((name) => {
    const s = (selfUs.get(name) ?? 0) / 1000;
    const t = (totalUs.get(name) ?? 0) / 1000;
    return { name, selfMs: s, selfPercent: totalMs ? (100 * s) / totalMs : 0, totalMs: t, totalPercent: totalMs ? (100 * t) / totalMs : 0 };
  });
  rows.sort((a, b) => b.selfMs - a.selfMs || b.totalMs - a.totalMs);
  return { totalMs, rows };
}

/**
 * The table as text, `pprof -top` style. The first line says what the total is: the time the
 * JavaScript thread was sampled busy (running JavaScript, or a native call made from it) within
 * the profile's window. The profiler takes no samples while the thread sleeps in the event loop,
 * so under partial load the total is less than the window, and an idle window has no samples.
 */
export function formatTop(profile: CpuProfile, limit = 30, windowMsAsked?: number): string {
  const { totalMs, rows } = topOf(profile);
  // The window asked for when known: an idle profile's own start and end can be moments apart.
  const windowMs = windowMsAsked ?? Math.max(0, (profile.endTime - profile.startTime) / 1000);
  const window = `${(windowMs / 1000).toFixed(1)} s window`;
  const shown = rows.filter((r) => r.name !== "(root)").slice(0, limit);
  if (shown.length === 0 || totalMs === 0) {
    return `No samples in the ${window}: the JavaScript thread was idle throughout (the profiler samples only while it runs).`;
  }
  const selfShown = shown.reduce((n, r) => n + r.selfMs, 0);
  const out = [
    `Showing top ${shown.length} functions, ${selfShown.toFixed(1)}ms of ${totalMs.toFixed(1)}ms sampled (${((100 * selfShown) / totalMs).toFixed(2)}%); ` +
      `the JavaScript thread was busy ${totalMs.toFixed(1)}ms of the ${window} (${windowMs > 0 ? ((100 * totalMs) / windowMs).toFixed(0) : "0"}%), idle in the event loop the rest`,
    "      flat  flat%        cum   cum%  function",
  ];
  for (const r of shown) {
    out.push(`${r.selfMs.toFixed(1).padStart(8)}ms ${r.selfPercent.toFixed(2).padStart(5)}% ${r.totalMs.toFixed(1).padStart(8)}ms ${r.totalPercent.toFixed(2).padStart(5)}%  ${r.name}`);
  }
  return out.join("\n");
}
