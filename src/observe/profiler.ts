// On-demand CPU profiles of the running server, through node:inspector's Profiler (the JSC sampling
// profiler underneath): what `go tool pprof .../debug/pprof/profile?seconds=N` was for the Go
// original. One profile at a time; a second request while one runs is refused, not queued.
import inspector from "node:inspector";
import type { CpuProfile } from "./profile-top";

export class ProfileBusyError extends Error {}
/** The profile's requester went away before it was done: the profiler was stopped early. */
export class ProfileCancelledError extends Error {}

/** Resolves after `ms`, or at once when `signal` aborts (true: it aborted). */
function sleepOrAbort(ms: number, signal: AbortSignal | undefined): Promise<boolean> {
  if (signal === undefined) return Bun.sleep(ms).then(() => false);
  if (signal.aborted) return Promise.resolve(true);
  return new Promise<boolean>((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(true);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(false);
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

export class Profiler {
  private busy = false;

  /**
   * Samples every JS stack for `seconds` and returns the profile (Chrome .cpuprofile format). When
   * `signal` aborts first (its requester disconnected), the profiler stops at once and this rejects
   * with ProfileCancelledError: an abandoned ?seconds=300 does not sample on for minutes.
   */
  async profile(seconds: number, signal?: AbortSignal, sampleIntervalUs = 1000): Promise<CpuProfile> {
    if (this.busy) throw new ProfileBusyError("a profile is already being taken");
    // (the message goes to the client as is)
    this.busy = true;
    const session = new inspector.Session();
    try {
      session.connect();
      const post = <T>(method: string, params: object = {}) =>
        new Promise<T>((resolve, reject) => session.post(method, params, (err: Error | null, result?: object) => (err ? reject(err) : resolve(result as T))));
      await post("Profiler.enable");
      try {
        await post("Profiler.setSamplingInterval", { interval: sampleIntervalUs });
      } catch (e) {
        // JSC has one sampling profiler; `bun --cpu-prof` (or an attached debugger) may hold it.
        if (String((e as Error).message).includes("running")) {
          throw new ProfileBusyError("the CPU profiler is already running in this process (started with bun --cpu-prof, or by an attached debugger)");
        }
        throw e;
      }
      await post("Profiler.start");
      const cancelled = await sleepOrAbort(seconds * 1000, signal);
      const { profile } = await post<{ profile: CpuProfile }>("Profiler.stop");
      await post("Profiler.disable");
      if (cancelled) throw new ProfileCancelledError("the profile's requester went away");
      return profile;
    } finally {
      session.disconnect();
      this.busy = false;
    }
  }
}
