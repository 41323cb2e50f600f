/**
 * The contract of one measurement process, shared by bench/task.ts (loopback) and
 * bench/wan/task.ts (WAN lab): the task named by argv[2] reads its input from the JSON file
 * BENCH_TASK_INPUT, writes its figures (or {error}) to BENCH_TASK_OUTPUT, and has
 * input.deadlineMs to run. Returns the process exit code.
 */
import { setMaxListeners } from "node:events";
import { readFileSync, writeFileSync } from "node:fs";
import { causeChain } from "../../src/util/cause-chain.js";
import type { TaskContext } from "../tasks/task-context.js";

export type Task = (input: never, ctx: TaskContext) => Promise<Record<string, unknown>> | Record<string, unknown>;

export async function runTaskProcess(tasks: Record<string, Task>, label: string, summarise: (out: Record<string, unknown>) => unknown = (o) => o): Promise<number> {
  const name = process.argv[2] ?? "";
  const inputFile = process.env["BENCH_TASK_INPUT"];
  const outputFile = process.env["BENCH_TASK_OUTPUT"];
  if (!inputFile || !outputFile) {
    process.stderr.write(`${label}: BENCH_TASK_INPUT and BENCH_TASK_OUTPUT must name JSON files (run through its orchestrator)\n`);
    return 2;
  }
  const task = tasks[name];
  if (!task) {
    writeFileSync(outputFile, JSON.stringify({ error: `unknown task "${name}" (known: ${Object.keys(tasks).join(", ")})` }));
    return 2;
  }
  const input = JSON.parse(readFileSync(inputFile, "utf8")) as { deadlineMs: number; logDir: string };
  const signal = AbortSignal.timeout(input.deadlineMs);
  // Every call in flight listens on the task's signal (32+ at once).
  setMaxListeners(10_000, signal);
  const ctx: TaskContext = { signal, logDir: input.logDir, log: (m) => process.stderr.write(`[${new Date().toISOString()}] ${name}: ${m}\n`) };
  try {
    ctx.log("start");
    const out = await task(input as never, ctx);
    writeFileSync(outputFile, JSON.stringify(out));
    ctx.log(`done ${JSON.stringify(summarise(out))}`);
    return 0;
  } catch (e) {
    const error = causeChain(e);
    ctx.log(`FAILED: ${error}\n${e instanceof Error ? (e.stack ?? "") : ""}`);
    writeFileSync(outputFile, JSON.stringify({ error }));
    return 1;
  }
}
