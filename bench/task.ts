/**
 * Entry point of ONE measurement process (`node dist-bench/bench/task.js NAME`), started by
 * bench/main.ts so that every measurement gets a fresh process: clean heap, its own peak RSS,
 * CPU accounting that holds nothing else. Input and output are JSON files named by the
 * environment (BENCH_TASK_INPUT, BENCH_TASK_OUTPUT); the budget is input.deadlineMs.
 */
import { setMaxListeners } from "node:events";
import { readFileSync, writeFileSync } from "node:fs";
import { causeChain } from "../src/util/cause-chain.js";
import { bootstrap, fillSource, type BootstrapInput, type FillSourceInput } from "./tasks/bootstrap.js";
import { liveLag, type LiveLagInput } from "./tasks/live-lag.js";
import { bareGrpc, diskSeq, diskSmall, h2Bulk, h2Small, type BareGrpcInput, type DiskSeqInput, type DiskSmallInput, type H2BulkInput, type H2SmallInput } from "./tasks/references.js";
import { singleNode, type SingleNodeInput } from "./tasks/single-node.js";
import { storeDirect, type StoreDirectInput } from "./tasks/store-direct.js";
import type { TaskContext } from "./tasks/task-context.js";

type Task = (input: never, ctx: TaskContext) => Promise<Record<string, number>> | Record<string, number>;

const TASKS: Record<string, Task> = {
  "disk-seq": (i: DiskSeqInput, ctx) => diskSeq(i, ctx),
  "disk-small": (i: DiskSmallInput, ctx) => diskSmall(i, ctx),
  "h2-bulk": (i: H2BulkInput, ctx) => h2Bulk(i, ctx),
  "h2-small": (i: H2SmallInput, ctx) => h2Small(i, ctx),
  "bare-grpc": (i: BareGrpcInput, ctx) => bareGrpc(i, ctx),
  "single-node": (i: SingleNodeInput, ctx) => singleNode(i, ctx),
  "store-direct": (i: StoreDirectInput, ctx) => storeDirect(i, ctx),
  "fill-source": (i: FillSourceInput, ctx) => fillSource(i, ctx),
  bootstrap: (i: BootstrapInput, ctx) => bootstrap(i, ctx),
  "live-lag": (i: LiveLagInput, ctx) => liveLag(i, ctx),
};

async function main(): Promise<number> {
  const name = process.argv[2] ?? "";
  const inputFile = process.env["BENCH_TASK_INPUT"];
  const outputFile = process.env["BENCH_TASK_OUTPUT"];
  if (!inputFile || !outputFile) {
    process.stderr.write("task.js: BENCH_TASK_INPUT and BENCH_TASK_OUTPUT must name JSON files (run through bench/main.js)\n");
    return 2;
  }
  const task = TASKS[name];
  if (!task) {
    writeFileSync(outputFile, JSON.stringify({ error: `unknown task "${name}" (known: ${Object.keys(TASKS).join(", ")})` }));
    return 2;
  }
  const input = JSON.parse(readFileSync(inputFile, "utf8")) as { deadlineMs: number; logDir: string };
  const signal = AbortSignal.timeout(input.deadlineMs);
  // Every call in flight listens on the task's signal (32+ at once).
  setMaxListeners(10_000, signal);
  const ctx: TaskContext = {
    signal,
    logDir: input.logDir,
    log: (m) => process.stderr.write(`[${new Date().toISOString()}] ${name}: ${m}\n`),
  };
  try {
    ctx.log("start");
    const out = await task(input as never, ctx);
    writeFileSync(outputFile, JSON.stringify(out));
    ctx.log(`done ${JSON.stringify(out)}`);
    return 0;
  } catch (e) {
    const error = causeChain(e);
    ctx.log(`FAILED: ${error}\n${e instanceof Error ? (e.stack ?? "") : ""}`);
    writeFileSync(outputFile, JSON.stringify({ error }));
    return 1;
  }
}

// Exit explicitly: a task must not linger on a handle it forgot (the orchestrator would wait).
process.exit(await main());
