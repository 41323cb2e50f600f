/**
 * A logger whose JSON lines are parsed as they are written, so a test can wait for an event
 * (no sleeps): `waitFor` resolves with the first line, past or future, that matches.
 */
import { Writable } from "node:stream";
import { createLogger, type Logger } from "../../src/telemetry/logger.js";

export type LogLine = Record<string, unknown>;

export interface EventLog {
  readonly log: Logger;
  readonly lines: LogLine[];
  waitFor(match: (line: LogLine) => boolean, signal?: AbortSignal): Promise<LogLine>;
}

/** `max`: lines kept at most (later ones are still matched by waiters); lines that are not JSON are skipped. */
export function eventLog(level = "info", max = 200_000): EventLog {
  const lines: LogLine[] = [];
  const waiters = new Set<{ match: (line: LogLine) => boolean; resolve: (line: LogLine) => void }>();
  let partial = "";
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      partial += chunk.toString("utf8");
      for (let i = partial.indexOf("\n"); i >= 0; i = partial.indexOf("\n")) {
        const text = partial.slice(0, i);
        partial = partial.slice(i + 1);
        let line: LogLine;
        try {
          line = JSON.parse(text) as LogLine;
        } catch {
          continue;
        }
        if (lines.length < max) lines.push(line);
        for (const w of waiters) {
          if (!w.match(line)) continue;
          waiters.delete(w);
          w.resolve(line);
        }
      }
      cb();
    },
  });
  return {
    log: createLogger({ level, destination: sink }),
    lines,
    waitFor(match, signal = AbortSignal.timeout(60_000)) {
      const seen = lines.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise<LogLine>((resolve, reject) => {
        const w = { match, resolve };
        waiters.add(w);
        signal.addEventListener(
          "abort",
          () => {
            waiters.delete(w);
            reject(new Error(`no log line matched before: ${String(signal.reason)}`));
          },
          { once: true },
        );
      });
    },
  };
}
