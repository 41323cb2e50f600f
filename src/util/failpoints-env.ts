/**
 * Failpoints from the environment, for child-process tests only: a node started with
 * GRANARY_ENABLE_FAILPOINTS=1 and GRANARY_FAILPOINTS="name=action[@N|@N+][,name=action...]"
 * registers those handlers. Without GRANARY_ENABLE_FAILPOINTS=1 the spec is ignored, so a stray
 * variable in production does nothing.
 *
 * Actions: sleep(MS) delays the hit; error throws FailpointError; abort kills the process with
 * SIGKILL (kill -9 semantics: no handlers, no flush); count only counts. `@N` fires on the Nth hit
 * only (1-based), `@N+` on the Nth and every later one; without it, every hit fires.
 */
import { Failpoints, type FailpointHandler } from "./failpoints.js";

export const FAILPOINTS_ENV = "GRANARY_FAILPOINTS";
export const FAILPOINTS_ENABLE_ENV = "GRANARY_ENABLE_FAILPOINTS";

export class FailpointError extends Error {
  readonly code = "FAILPOINT";
  constructor(name: string) {
    super(`failpoint ${name} injected an error`);
    this.name = "FailpointError";
  }
}

export class FailpointSpecError extends Error {
  constructor(message: string) {
    super(`${FAILPOINTS_ENV}: ${message}`);
    this.name = "FailpointSpecError";
  }
}

const ITEM_RE = /^([a-z0-9][a-z0-9._-]*)=(sleep\((\d{1,9})\)|error|abort|count)(?:@(\d{1,9})(\+)?)?$/;

function actionOf(name: string, action: string, sleepMs: number): FailpointHandler {
  switch (action) {
    case "error":
      return () => {
        throw new FailpointError(name);
      };
    case "abort":
      return () => {
        process.kill(process.pid, "SIGKILL");
      };
    case "count":
      return () => {};
    default:
      return () => new Promise<void>((resolve) => setTimeout(resolve, sleepMs));
  }
}

/** Parses a spec into `into` (a fresh registry by default). Throws FailpointSpecError naming the bad item. */
export function parseFailpoints(spec: string, into: Failpoints = new Failpoints()): Failpoints {
  for (const raw of spec.split(",")) {
    const item = raw.trim();
    if (item === "") continue;
    const m = ITEM_RE.exec(item);
    if (!m) throw new FailpointSpecError(`"${item}" is not name=sleep(MS)|error|abort|count[@N|@N+]`);
    const name = m[1]!;
    const act = actionOf(name, m[2]!.startsWith("sleep") ? "sleep" : m[2]!, Number(m[3] ?? 0));
    const nth = m[4] === undefined ? undefined : Number(m[4]);
    const onward = m[5] === "+";
    let hits = 0;
    into.set(name, (ctx) => {
      hits++;
      if (nth === undefined || hits === nth || (onward && hits > nth)) return act(ctx);
    });
  }
  return into;
}

/** The registry described by the environment, or undefined when failpoints are not enabled. */
export function failpointsFromEnv(env: NodeJS.ProcessEnv): Failpoints | undefined {
  if (env[FAILPOINTS_ENABLE_ENV] !== "1") return undefined;
  return parseFailpoints(env[FAILPOINTS_ENV] ?? "");
}
