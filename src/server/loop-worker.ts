// The thread of one event loop (the supervisor, loop-group.ts, starts one per loop): it runs a Loop
// (loop.ts) over the worker's port. A bug outside any connection fails the loop: it cleans up,
// reports, and this thread ends; the supervisor starts a fresh one in its place.
import { parentPort, workerData } from "node:worker_threads";
import { Loop, type LoopInit, type LoopPort } from "./loop";

const loop = new Loop(parentPort as unknown as LoopPort, workerData as LoopInit, (code) => process.exit(code));
process.on("uncaughtException", (error) => loop.fail(error));
process.on("unhandledRejection", (reason) => loop.fail(reason));
await loop.start();
