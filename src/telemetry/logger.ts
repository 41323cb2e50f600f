/**
 * Structured JSON logs (pino) on stdout. Library code takes a Logger; only the CLI creates
 * one. Errors are logged with `err` (pino's serializer) and `cause` (the whole chain in one
 * line), so the reason an operation failed is never three causes down and invisible.
 */
import { pino, type Logger as PinoLogger } from "pino";
import { causeChain } from "../util/cause-chain.js";

export type Logger = PinoLogger;

export interface LoggerOptions {
  /** pino level; default from GRANARY_LOG_LEVEL, else "info". */
  readonly level?: string;
  /** Fields on every line (node id, ...). */
  readonly base?: Record<string, unknown>;
  /** Where lines go; default stdout (fd 1). */
  readonly destination?: NodeJS.WritableStream | number;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? process.env["GRANARY_LOG_LEVEL"] ?? "info";
  const dest = options.destination ?? 1;
  const stream = typeof dest === "number" ? pino.destination({ dest, sync: true }) : dest;
  return pino(
    {
      level,
      base: { ...options.base },
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
