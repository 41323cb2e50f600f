/** A pino logger whose JSON lines are kept in memory, so a scenario can read a node's events (test/helpers/log-events.ts). */
import type { Logger } from "../../src/telemetry/logger.js";
import { eventLog } from "../../test/helpers/log-events.js";

export interface CapturedLog {
  readonly log: Logger;
  readonly events: Array<Record<string, unknown>>;
}

export function captureLog(level = "info", max = 200_000): CapturedLog {
  const e = eventLog(level, max);
  return { log: e.log, events: e.lines };
}
