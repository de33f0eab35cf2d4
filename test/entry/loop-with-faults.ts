// An event loop's thread with a deliberate bug on demand (see serve-with-faults.ts): the loop runs
// as loop-worker.ts runs it; then, when the file TEST_FAULT_TRIGGER appears, loop
// TEST_FAULT_LOOP throws an exception no connection catches, on its own thread. With
// TEST_FAULT_ONCE (a path), only the first loop to throw does (it creates that file), so its
// replacement serves; without it, every loop of that index throws as soon as it listens.
import { existsSync, writeFileSync } from "node:fs";
import { workerData } from "node:worker_threads";
import "../../src/server/loop-worker";

const { TEST_FAULT_LOOP: loop, TEST_FAULT_TRIGGER: trigger, TEST_FAULT_ONCE: once } = process.env;
const mine = loop !== undefined && Number(loop) === (workerData as { index: number }).index;
if (mine && (once === undefined || !existsSync(once))) {
  const fire = () => {
    if (once !== undefined) writeFileSync(once, "thrown\n");
    throw new Error("a deliberate bug (test/entry/loop-with-faults.ts)");
  };
  if (trigger === undefined) setTimeout(fire, 0);
  else {
    // Test code: polls for the trigger file, which the test creates when it wants the bug.
    const poll = setInterval(() => {
      if (!existsSync(trigger)) return;
      clearInterval(poll);
      fire();
    }, 10);
  }
}

// TEST_STALL_TRIGGER (a path) and TEST_STALL_MS: when the file appears, this loop's thread blocks
// for that long (as a long pause of the collector or a slow synchronous step would), once.
const { TEST_STALL_TRIGGER: stallTrigger, TEST_STALL_MS: stallMs } = process.env;
if (stallTrigger !== undefined) {
  const poll = setInterval(() => {
    if (!existsSync(stallTrigger)) return;
    clearInterval(poll);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(stallMs ?? 1000));
  }, 10);
}
