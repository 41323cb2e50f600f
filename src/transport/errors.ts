/**
 * Transport errors: a small base class with a stable `code`, and `causeChain` to render an
 * error with everything that caused it on one log line. Mapping to gRPC status codes is the
 * api layer's job (one place at the RPC boundary), not this file's.
 */

export type TransportErrorCode =
  | "IDLE_TIMEOUT"
  | "SEND_STALLED"
  | "CONNECT_TIMEOUT"
  | "INVALID_OPTION"
  | "LISTEN_FAILED"
  | "CLOSED"
  | "TLS_FILES";

export class TransportError extends Error {
  readonly code: TransportErrorCode;
  constructor(code: TransportErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** An option failed validation; the message names the field. */
export class InvalidOptionError extends TransportError {
  constructor(readonly field: string, problem: string) {
    super("INVALID_OPTION", `${field}: ${problem}`);
  }
}
