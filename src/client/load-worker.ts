// A load-generator thread (a Bun Worker) for runLoadThreaded: says hello once loaded, then runs
// the one share of the load it is sent and posts its raw numbers back.
import { runShard, type LoadOptions } from "./load";

declare const self: Worker;

self.addEventListener("message", async (event: MessageEvent) => {
  const { options, keyOffset } = event.data as { options: LoadOptions; keyOffset: number };
  const shard = await runShard(options, keyOffset);
  self.postMessage(shard, { transfer: [shard.latencies.buffer as ArrayBuffer] });
});
self.postMessage("ready");
