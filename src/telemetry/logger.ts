/**
 * Structured JSON logs (pino) on stdout. Library code takes a Logger; only the CLI creates
 * one. Errors are logged with `err` (pino's serializer) and `cause` (the whole chain in one
 * line), so the reason an operation failed is never three causes down and invisible.
 */
import { pino, type Logger as PinoLogger } from "pino";
import { causeChain } from "../util/cause-chain.js";
import type { RecentEvent, RecentEvents } from "./recent-events.js";
import { activeTraceIds } from "./spans.js";

export type Logger = PinoLogger;

export interface LoggerOptions {
  /** pino level; default from GRANARY_LOG_LEVEL, else "info". */
  readonly level?: string;
  /** Fields on every line (node id, ...). */
  readonly base?: Record<string, unknown>;
  /** Where lines go; default stdout (fd 1). */
  readonly destination?: NodeJS.WritableStream | number;
  /** Keeps the last warnings and errors here too (the status page shows them). */
  readonly recent?: RecentEvents;
}

const RECENT_LEVELS: Record<number, RecentEvent["level"]> = { 40: "warn", 50: "error", 60: "fatal" };

export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? process.env["GRANARY_LOG_LEVEL"] ?? "info";
  const dest = options.destination ?? 1;
  const stream = typeof dest === "number" ? pino.destination({ dest, sync: true }) : dest;
  const recent = options.recent;
  return pino(
    {
      level,
      base: { ...options.base },
      // Lines logged inside a traced operation carry its trace and span id (log <-> trace).
      mixin: () => activeTraceIds() ?? {},
      ...(recent
        ? {
            hooks: {
              logMethod(args: unknown[], method: (...a: unknown[]) => void, lvl: number) {
                const which = RECENT_LEVELS[lvl];
                if (which) recent.addLogCall(which, args[0], args[1]);
                method.apply(this, args);
              },
            },
          }
        : {}),
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: pino.stdSerializers.errWithCause },
    },
    stream,
  );
}

/** A logger that drops everything (tests, library defaults). */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}

/** Fields for logging an error: the serialised error and its cause chain in one line. */
export function errFields(err: unknown): { err: unknown; cause: string } {
  return { err, cause: causeChain(err) };
}
