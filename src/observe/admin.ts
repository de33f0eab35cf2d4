// The admin HTTP endpoint, on adminHost:adminPort, loopback by default:
//   GET /debug/profile?seconds=N[&format=top][&loop=i]   CPU profile (.cpuprofile JSON, or a pprof-like
//                                                table) of event loop i (default: the busiest)
//   GET /debug/stats                            live numbers as JSON
//   GET /metrics                                the same numbers for Prometheus
//   GET /healthz                                200 while serving, 503 while shutting down
// Anything else is 404. It never listens on a public interface unless configured to, and then only
// with adminToken: every request but /healthz must carry "Authorization: Bearer <adminToken>" (401
// otherwise). Its transport (admin-http.ts) bounds the connections (adminConnectionsMax), gives
// each adminTimeoutMs to send its request, and closes every connection once it is answered.
import { sameBytesConstantTime } from "../util/crypto";
import type { Logger } from "../log";
import { formatTop, type CpuProfile } from "./profile-top";
import { AdminHttp, type AdminHttpLimits } from "./admin-http";

/** The event loops (src/server/loop-group.ts): their figures and profiles come by message. */
export interface LoopsSource {
  readonly loops: number;
  readonly draining: boolean;
  statsJson(): Promise<unknown>;
  metricsText(): Promise<string>;
  /**
   * A CPU profile (.cpuprofile) of loop `loop`, or of the busiest loop (null), and which loop it is.
   * When `signal` aborts (the requester went away), the loops stop profiling at once.
   */
  profile(loop: number | null, seconds: number, signal: AbortSignal): Promise<{ value: unknown; error?: string; loop: number }>;
}

const PROFILE_SECONDS_DEFAULT = 30;
const PROFILE_SECONDS_MAX = 300;

function text(body: string, status = 200): Response {
  return new Response(body, { status, headers: { "content-type": "text/plain; charset=utf-8" } });
}

export class AdminServer {
  private http: AdminHttp | null = null;

  /** "Bearer <adminToken>" as bytes, or null when no token is required. */
  private readonly expectedAuth: Buffer | null;

  constructor(
    private readonly source: LoopsSource,
    private readonly log: Logger,
    adminToken: string,
    private readonly limits: AdminHttpLimits,
    /**
     * Why /debug/profile must not touch the profiler (`bun --cpu-prof` holds it for the whole run,
     * and a refused attempt would disturb that profile), or null.
     */
    private readonly profilerHeld: string | null = null,
  ) {
    this.expectedAuth = adminToken === "" ? null : Buffer.from(`Bearer ${adminToken}`);
  }

  get port(): number {
    return this.http?.port ?? 0;
  }

  start(host: string, port: number): void {
    const http = new AdminHttp(this.limits, (req, extendMs) => this.handle(req, extendMs), this.log);
    http.listen(host, port);
    this.http = http;
    this.log.info("admin_listening", { host, port: http.port, endpoints: "/debug/profile /debug/stats /metrics /healthz", connectionsMax: this.limits.connectionsMax });
  }

  stop(): void {
    this.http?.stop();
    this.http = null;
  }

  private authorized(req: Request): boolean {
    const expected = this.expectedAuth;
    if (expected === null) return true;
    const given = Buffer.from(req.headers.get("authorization") ?? "");
    return sameBytesConstantTime(given, expected);
  }

  private async handle(req: Request, extendMs: (ms: number) => void): Promise<Response> {
    const url = new URL(req.url);
    // /healthz says only "ok" or "shutting down": load balancers may probe it without the token.
    if (url.pathname !== "/healthz" && !this.authorized(req)) {
      return new Response("unauthorized: send Authorization: Bearer <adminToken>\n", { status: 401, headers: { "www-authenticate": "Bearer", "content-type": "text/plain; charset=utf-8" } });
    }
    if (req.method !== "GET") return text("method not allowed\n", 405);
    switch (url.pathname) {
      case "/healthz":
        return this.source.draining ? text("shutting down\n", 503) : text("ok\n");
      case "/debug/stats":
        return Response.json(await this.source.statsJson());
      case "/metrics":
        return new Response(await this.source.metricsText(), { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } });
      case "/debug/profile":
        return this.profile(url, req.signal, extendMs);
      default:
        return text("not found\n", 404);
    }
  }

  private async profile(url: URL, signal: AbortSignal, extendMs: (ms: number) => void): Promise<Response> {
    const raw = url.searchParams.get("seconds");
    const seconds = raw === null ? PROFILE_SECONDS_DEFAULT : Number(raw);
    if (!Number.isInteger(seconds) || seconds < 1 || seconds > PROFILE_SECONDS_MAX) {
      return text(`seconds must be an integer in 1..${PROFILE_SECONDS_MAX}\n`, 400);
    }
    // This connection, and only it, may stay open while the profile runs.
    extendMs(seconds * 1000);
    const format = url.searchParams.get("format") ?? "cpuprofile";
    if (format !== "cpuprofile" && format !== "top") return text('format must be "cpuprofile" or "top"\n', 400);
    if (this.profilerHeld !== null) return text(`${this.profilerHeld}\n`, 409);
    const source = this.source;
    // Each loop is a thread of its own: profile one (?loop=i), or every one and answer the busiest.
    const asked = url.searchParams.get("loop");
    const loop = asked === null ? null : Number(asked);
    if (loop !== null && (!Number.isInteger(loop) || loop < 0 || loop >= source.loops)) return text(`loop must be an integer in 0..${source.loops - 1}\n`, 400);
    this.log.info("profile_started", { seconds, format, loop: loop ?? "busiest" });
    const answer = await source.profile(loop, seconds, signal);
    if (signal.aborted) {
      this.log.info("profile_cancelled", { reason: "the client went away", loop: loop ?? "busiest" });
      return text("cancelled\n", 499);
    }
    if (answer.error !== undefined) {
      const busy = answer.error.includes("already");
      if (!busy) this.log.error("profile_failed", { error: answer.error });
      return text(busy ? `${answer.error}; try again when it is done\n` : `${answer.error}\n`, busy ? 409 : 500);
    }
    const headers = { "x-fsgw-loop": String(answer.loop) };
    if (format === "top") {
      const which = `(event loop ${answer.loop} of ${source.loops}${loop === null && source.loops > 1 ? ", the busiest; ?loop=i for another" : ""})`;
      return new Response(`${formatTop(answer.value as CpuProfile, 40, seconds * 1000)}\n${which}\n`, { headers: { ...headers, "content-type": "text/plain; charset=utf-8" } });
    }
    return new Response(JSON.stringify(answer.value), {
      headers: { ...headers, "content-type": "application/json", "content-disposition": `attachment; filename="fsgw-loop${answer.loop}-${Date.now()}.cpuprofile"` },
    });
  }
}
