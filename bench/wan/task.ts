/**
 * Entry point of ONE WAN-lab measurement process, started by bench/wan/main.ts inside the
 * receiving host's namespace (`ip netns exec NS node dist-bench/bench/wan/task.js NAME`).
 * Same contract as bench/task.ts: input and output JSON files named by BENCH_TASK_INPUT and
 * BENCH_TASK_OUTPUT, budget input.deadlineMs.
 */
import { setMaxListeners } from "node:events";
import { readFileSync, writeFileSync } from "node:fs";
import { causeChain } from "../../src/util/cause-chain.js";
import type { TaskContext } from "../tasks/task-context.js";
import { wanBare, wanBootstrap, wanWalk, type WanBareInput, type WanBootstrapInput, type WanWalkInput } from "./tasks.js";

type Task = (input: never, ctx: TaskContext) => Promise<Record<string, unknown>>;

const TASKS: Record<string, Task> = {
  "wan-bootstrap": (i: WanBootstrapInput, ctx) => wanBootstrap(i, ctx),
  "wan-walk": (i: WanWalkInput, ctx) => wanWalk(i, ctx),
  "wan-bare": (i: WanBareInput, ctx) => wanBare(i, ctx),
};

async function main(): Promise<number> {
  const name = process.argv[2] ?? "";
  const inputFile = process.env["BENCH_TASK_INPUT"];
  const outputFile = process.env["BENCH_TASK_OUTPUT"];
  if (!inputFile || !outputFile) {
    process.stderr.write("wan/task.js: BENCH_TASK_INPUT and BENCH_TASK_OUTPUT must name JSON files (run through bench/wan/main.js)\n");
    return 2;
  }
  const task = TASKS[name];
  if (!task) {
    writeFileSync(outputFile, JSON.stringify({ error: `unknown task "${name}" (known: ${Object.keys(TASKS).join(", ")})` }));
    return 2;
  }
  const input = JSON.parse(readFileSync(inputFile, "utf8")) as { deadlineMs: number; logDir: string };
  const signal = AbortSignal.timeout(input.deadlineMs);
  setMaxListeners(10_000, signal);
  const ctx: TaskContext = { signal, logDir: input.logDir, log: (m) => process.stderr.write(`[${new Date().toISOString()}] ${name}: ${m}\n`) };
  try {
    ctx.log("start");
    const out = await task(input as never, ctx);
    writeFileSync(outputFile, JSON.stringify(out));
    ctx.log(`done ${JSON.stringify({ ...out, samples: undefined })}`);
    return 0;
  } catch (e) {
    const error = causeChain(e);
    ctx.log(`FAILED: ${error}\n${e instanceof Error ? (e.stack ?? "") : ""}`);
    writeFileSync(outputFile, JSON.stringify({ error }));
    return 1;
  }
}

process.exit(await main());
