/** A pino logger whose JSON lines are kept in memory, so a scenario can read a node's events. */
import { Writable } from "node:stream";
import { createLogger, type Logger } from "../../src/telemetry/logger.js";

export interface CapturedLog {
  readonly log: Logger;
  readonly events: Array<Record<string, unknown>>;
}

export function captureLog(level = "info", max = 200_000): CapturedLog {
  const events: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString("utf8").split("\n")) {
        if (line === "" || events.length >= max) continue;
        try {
          events.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          // not JSON: ignore
        }
      }
      cb();
    },
  });
  return { log: createLogger({ level, destination: sink }), events };
}
