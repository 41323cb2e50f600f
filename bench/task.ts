/**
 * Entry point of ONE measurement process (`node dist-bench/bench/task.js NAME`), started by
 * bench/main.ts so that every measurement gets a fresh process: clean heap, its own peak RSS,
 * CPU accounting that holds nothing else. Input and output are JSON files named by the
 * environment (BENCH_TASK_INPUT, BENCH_TASK_OUTPUT); the budget is input.deadlineMs.
 */
import { bigBootstrap, type BigBootstrapInput } from "./tasks/big-bootstrap.js";
import { bootstrap, fillSource, type BootstrapInput, type FillSourceInput } from "./tasks/bootstrap.js";
import { liveLag, type LiveLagInput } from "./tasks/live-lag.js";
import { rejoin, rejoinSeed, type RejoinInput, type RejoinSeedInput } from "./tasks/rejoin.js";
import { bareGrpc, diskSeq, diskSmall, h2Bulk, h2Small, type BareGrpcInput, type DiskSeqInput, type DiskSmallInput, type H2BulkInput, type H2SmallInput } from "./tasks/references.js";
import { singleNode, type SingleNodeInput } from "./tasks/single-node.js";
import { storeDirect, type StoreDirectInput } from "./tasks/store-direct.js";
import { runTaskProcess, type Task } from "./lib/task-runner.js";


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
  "big-bootstrap": (i: BigBootstrapInput, ctx) => bigBootstrap(i, ctx),
  "live-lag": (i: LiveLagInput, ctx) => liveLag(i, ctx),
  "rejoin-seed": (i: RejoinSeedInput, ctx) => rejoinSeed(i, ctx),
  rejoin: (i: RejoinInput, ctx) => rejoin(i, ctx),
};

process.exit(await runTaskProcess(TASKS, "task.js"));
