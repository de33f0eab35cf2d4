// GET /metrics: the numbers of /debug/stats in the Prometheus text exposition format (0.0.4):
// `# HELP` and `# TYPE` for every family, names prefixed fsgw_, units (bytes, seconds) in names.
import type { EngineStats } from "../engine/io-engine";
import { statOps, type ProcessStats, type ServerStats } from "./stats";

/** Latency histogram bounds: powers of two from 16 µs (2^4) to ~67 s (2^26). */
const OCTAVE_FROM = 4;
const OCTAVE_TO = 26;

class Writer {
  private readonly lines: string[] = [];

  family(name: string, type: "counter" | "gauge" | "histogram", help: string): void {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  }

  sample(name: string, value: number, labels?: Record<string, string>): void {
    const l = labels && Object.keys(labels).length > 0 ? `{${Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`))}"`).join(",")}}` : "";
    this.lines.push(`${name}${l} ${Number.isFinite(value) ? String(value) : value > 0 ? "+Inf" : "NaN"}`);
  }

  one(name: string, type: "counter" | "gauge", help: string, value: number | undefined): void {
    if (value === undefined) return;
    this.family(name, type, help);
    this.sample(name, value);
  }

  text(): string {
    return this.lines.join("\n") + "\n";
  }
}

/** Store stats that go up and down; the others only count up. */
const STORE_GAUGES = new Set(["s3RequestsInFlight", "s3RequestsWaiting", "s3Uploads", "s3AbortsPending", "cacheEntries", "cacheBytes", "volumeFilesOpen", "volumeCopyBytesHigh", "volumeDeadRecords", "volumeDeadRecordsBytes", "volumeDeadRecordsFull"]);

/** What the supervisor adds about its event loops: failures replaced, and each loop's share. */
export interface LoopMetrics {
  restarted: number;
  perLoop: { loop: number; connectionsOpen: number; exchanges: number }[];
}

export function renderMetrics(stats: ServerStats, engine: EngineStats, proc: ProcessStats, loops: LoopMetrics): string {
  const w = new Writer();
  w.one("fsgw_loops_restarted_total", "counter", "Event loops that failed (a bug outside any connection) and were replaced by fresh ones.", loops.restarted);
  w.family("fsgw_loop_connections_open", "gauge", "Client connections open now, by event loop.");
  for (const l of loops.perLoop) w.sample("fsgw_loop_connections_open", l.connectionsOpen, { loop: String(l.loop) });
  w.family("fsgw_loop_exchanges_total", "counter", "Exchanges completed, by event loop (all ops; a replaced loop starts again from 0).");
  for (const l of loops.perLoop) w.sample("fsgw_loop_exchanges_total", l.exchanges, { loop: String(l.loop) });
  w.one("fsgw_uptime_seconds", "gauge", "Seconds since the server started.", (Date.now() - stats.startedMs) / 1000);
  w.one("fsgw_connections_open", "gauge", "Client connections open now.", stats.connectionsOpen);
  w.one("fsgw_connections_accepted_total", "counter", "Client connections accepted.", stats.connectionsAccepted);
  w.one("fsgw_connections_refused_total", "counter", "Connections closed at once because connectionsMax was reached.", stats.connectionsRefused);
  w.one("fsgw_protocol_violations_total", "counter", "Connections closed for breaking the protocol.", stats.protocolViolations);
  w.one("fsgw_idle_timeouts_total", "counter", "Connections closed after idleTimeoutMs of silence.", stats.idleTimeouts);
  w.one("fsgw_connections_refused_per_ip_total", "counter", "Connections closed at once because their address had connectionsPerIpMax open.", stats.connectionsRefusedPerIp);
  w.one("fsgw_connections_refused_blocked_total", "counter", "Connections closed at once because their address was blocked after failed AUTH exchanges.", stats.connectionsRefusedBlocked);
  w.one("fsgw_auth_failures_total", "counter", "AUTH exchanges refused (bad, forged or malformed tokens).", stats.authFailures);
  w.one("fsgw_auth_blocks_total", "counter", "Times an address was blocked after authFailuresMax failed AUTH exchanges.", stats.authBlocks);
  w.one("fsgw_tokens_revoked_total", "counter", "Open connections whose token a reload of the secrets (SIGHUP) revoked.", stats.tokensRevoked);
  w.one("fsgw_auth_timeouts_total", "counter", "Connections closed for not completing AUTH within authTimeoutMs.", stats.authTimeouts);
  w.one("fsgw_frame_timeouts_total", "counter", "Connections closed because a started frame was not complete within frameTimeoutMs.", stats.frameTimeouts);
  w.one("fsgw_unauthenticated_evicted_total", "counter", "Connections not yet authenticated closed to make room under unauthenticatedConnectionsMax.", stats.unauthenticatedEvicted);
  w.one("fsgw_symlinks_refused_total", "counter", "Operations refused because a symbolic link stood in the data directory.", stats.symlinksRefused);
  const resumable = stats.resumable();
  w.one("fsgw_resumable_uploads_held", "gauge", "Resumable uploads the store holds now (in progress or parked).", resumable.held);
  w.one("fsgw_resumable_uploads_parked_total", "counter", "Resumable uploads parked after a broken connection.", resumable.parked);
  w.one("fsgw_resumable_uploads_resumed_total", "counter", "RESUME exchanges that took a parked upload back.", resumable.resumed);
  w.one("fsgw_resumable_uploads_refused_total", "counter", "Uploads that asked to be resumable and were taken as ordinary ones (resumableUploadsMax or resumableUploadsPerClientMax reached).", resumable.refused);
  w.one("fsgw_resumable_uploads_not_kept_total", "counter", "Broken resumable uploads discarded instead of parked (resumableBytesMax or resumableBytesPerClientMax).", resumable.notKept);
  w.one("fsgw_resumable_kept_bytes", "gauge", "Bytes the parked resumable uploads keep on disk (server-wide).", resumable.keptBytes);
  // The store's own counters: s3RequestsInFlight -> fsgw_store_s3_requests_in_flight.
  for (const [name, value] of Object.entries(stats.store())) {
    const gauge = STORE_GAUGES.has(name);
    // Prometheus names a counter's samples ..._total.
    const metric = "fsgw_store_" + name.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase()) + (gauge ? "" : "_total");
    w.one(metric, gauge ? "gauge" : "counter", `The store's ${name} (see /debug/stats).`, value);
  }
  w.one("fsgw_tls_handshake_failures_total", "counter", "TLS handshakes that failed (plaintext clients, unknown CAs, missing client certificates).", stats.tlsHandshakeFailures);
  w.one("fsgw_connection_bugs_total", "counter", "Connections closed because fsgw's own code threw (a bug: see event=connection_bug).", stats.connectionBugs);
  w.one("fsgw_zero_copy_downloads_total", "counter", "Downloads whose body went from the file to the socket by sendfile.", stats.zeroCopyDownloads);
  w.one("fsgw_zero_copy_uploads_total", "counter", "Uploads whose body went from the socket to the file by splice.", stats.zeroCopyUploads);
  w.one("fsgw_zero_copy_fallbacks_total", "counter", "Downloads copied through memory although zeroCopy is on (no usable socket descriptor).", stats.zeroCopyFallbacks);
  w.one("fsgw_uncaught_errors_total", "counter", "Exceptions no connection caught (a bug: see event=unhandled_rejection).", stats.uncaughtErrors);

  w.family("fsgw_exchanges_total", "counter", "Exchanges completed, by op (errors included).");
  for (const op of statOps) w.sample("fsgw_exchanges_total", stats.ops[op].count, { op });
  w.family("fsgw_exchange_errors_total", "counter", "Exchanges answered with an error text, by op.");
  for (const op of statOps) w.sample("fsgw_exchange_errors_total", stats.ops[op].errors, { op });
  w.family("fsgw_exchange_body_bytes_total", "counter", "File body bytes moved by successful exchanges, by op.");
  for (const op of statOps) w.sample("fsgw_exchange_body_bytes_total", stats.ops[op].bytes, { op });
  w.family("fsgw_exchange_duration_seconds", "histogram", "Time from a request frame to the exchange's last reply, by op.");
  for (const op of statOps) {
    const h = stats.ops[op].latency;
    for (const { leSeconds, count } of h.cumulativeAtOctaves(OCTAVE_FROM, OCTAVE_TO)) {
      w.sample("fsgw_exchange_duration_seconds_bucket", count, { op, le: String(leSeconds) });
    }
    w.sample("fsgw_exchange_duration_seconds_bucket", h.count, { op, le: "+Inf" });
    w.sample("fsgw_exchange_duration_seconds_sum", h.sumSeconds, { op });
    w.sample("fsgw_exchange_duration_seconds_count", h.count, { op });
  }

  w.family("fsgw_io_engine_info", "gauge", "The I/O engine in use (value is always 1).");
  w.sample("fsgw_io_engine_info", 1, { engine: engine.name, submit_mode: engine.submitMode ?? "" });
  w.one("fsgw_io_threads", "gauge", "Worker threads of the C pool.", engine.threads);
  w.one("fsgw_io_operations_in_flight", "gauge", "File operations submitted and not yet settled.", engine.operationsInFlight);
  w.one("fsgw_io_queue_depth", "gauge", "Operations queued in the C pool, waiting for a worker.", engine.queueDepth);
  w.one("fsgw_io_queue_depth_high", "gauge", "High-water mark of fsgw_io_queue_depth.", engine.queueDepthHigh);
  w.one("fsgw_io_operations_submitted_total", "counter", "Operations handed to the C pool.", engine.submitted);
  w.one("fsgw_io_operations_completed_total", "counter", "Operations the C pool completed.", engine.completed);
  w.one("fsgw_io_submissions_refused_total", "counter", "Submissions the full C pool answered with EAGAIN.", engine.refusedFull);
  w.one("fsgw_io_blocked_operations", "gauge", "Operations waiting in JS for a free C pool slot.", engine.blockedInJs);
  w.one("fsgw_io_doorbells_total", "counter", "Doorbell rings from workers to the JS thread.", engine.doorbells);
  w.one("fsgw_io_drains_total", "counter", "Completion-ring drains that found records.", engine.drains);
  w.one("fsgw_io_drained_records_total", "counter", "Completion records drained (records per drain = this / fsgw_io_drains_total).", engine.drainedRecords);
  w.one("fsgw_io_submit_batches_total", "counter", "Batches handed to the C pool in one call (batch submission).", engine.batches);
  w.one("fsgw_io_inline_answered_total", "counter", "Operations answered on the event loop from the kernel's caches (ioInline).", engine.inlineAnswered);
  w.one("fsgw_io_inline_refused_total", "counter", "Inline attempts refused because the answer was not cached; the pool answered them.", engine.inlineRefused);

  w.one("fsgw_process_resident_memory_bytes", "gauge", "Resident set size of the server process.", proc.rssBytes);
  w.one("fsgw_process_threads", "gauge", "OS threads of the server process.", proc.threads);
  w.one("fsgw_process_open_fds", "gauge", "Open file descriptors of the server process.", proc.openFiles);
  return w.text();
}
