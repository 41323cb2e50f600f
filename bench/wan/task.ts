/**
 * Entry point of ONE WAN-lab measurement process, started by bench/wan/main.ts inside the
 * receiving host's namespace (`ip netns exec NS node dist-bench/bench/wan/task.js NAME`).
 * Same contract as bench/task.ts: input and output JSON files named by BENCH_TASK_INPUT and
 * BENCH_TASK_OUTPUT, budget input.deadlineMs.
 */
import { runTaskProcess, type Task } from "../lib/task-runner.js";
import { wanBare, wanBootstrap, wanWalk, type WanBareInput, type WanBootstrapInput, type WanWalkInput } from "./tasks.js";


const TASKS: Record<string, Task> = {
  "wan-bootstrap": (i: WanBootstrapInput, ctx) => wanBootstrap(i, ctx),
  "wan-walk": (i: WanWalkInput, ctx) => wanWalk(i, ctx),
  "wan-bare": (i: WanBareInput, ctx) => wanBare(i, ctx),
};

process.exit(await runTaskProcess(TASKS, "wan/task.js", (o) => ({ ...o, samples: undefined })));
