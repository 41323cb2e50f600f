/**
 * The one place errors become gRPC statuses. Handlers throw store/domain errors; the
 * interceptor here maps them (also when they surface mid-stream), logs each failure with its
 * cause chain, and never sends a stack trace to a client.
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { StoreError, type StoreErrorCode } from "../store/errors.js";
import { errFields, type Logger } from "../telemetry/logger.js";

const STORE_CODES: Record<StoreErrorCode, Code> = {
  NOT_FOUND: Code.NotFound,
  INVALID_ARGUMENT: Code.InvalidArgument,
  DIGEST_MISMATCH: Code.InvalidArgument,
  SIZE_MISMATCH: Code.InvalidArgument,
  OUT_OF_RANGE: Code.OutOfRange,
  CORRUPT: Code.DataLoss,
  NO_SPACE: Code.ResourceExhausted,
  FEED_TRIMMED: Code.FailedPrecondition,
  CLOSED: Code.Unavailable,
  ABORTED: Code.Canceled,
  IO: Code.Internal,
};

/** Maps any error to a ConnectError a client can act on. */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof StoreError) {
    const code = STORE_CODES[err.code];
    // Internal details of I/O failures stay in the log.
    const message = code === Code.Internal ? "internal storage error (see the node's log)" : err.message;
    return new ConnectError(message, code, undefined, undefined, err);
  }
  if (err instanceof Error && err.name === "AbortError") {
    return new ConnectError("request cancelled", Code.Canceled, undefined, undefined, err);
  }
  return new ConnectError("internal error (see the node's log)", Code.Internal, undefined, undefined, err);
}

/** Codes that are the client's doing or normal outcomes: logged at debug, not warn. */
const QUIET = new Set<Code>([Code.NotFound, Code.Canceled, Code.AlreadyExists]);

export function errorInterceptor(log: Logger): Interceptor {
  const report = (procedure: string, err: ConnectError): void => {
    const level = QUIET.has(err.code) ? "debug" : err.code === Code.Internal || err.code === Code.DataLoss ? "error" : "warn";
    log[level]({ event: "rpc.failed", procedure, code: Code[err.code], ...errFields(err.cause ?? err) }, `rpc failed: ${err.rawMessage}`);
  };
  return (next) => async (req) => {
    const procedure = `${req.service.typeName}/${req.method.name}`;
    let res;
    try {
      res = await next(req);
    } catch (e) {
      const ce = toConnectError(e);
      report(procedure, ce);
      throw ce;
    }
    if (!res.stream) return res;
    const inner = res.message;
    async function* mapped(): AsyncGenerator<typeof inner extends AsyncIterable<infer T> ? T : never> {
      try {
        yield* inner as AsyncIterable<never>;
      } catch (e) {
        const ce = toConnectError(e);
        report(procedure, ce);
        throw ce;
      }
    }
    return { ...res, message: mapped() };
  };
}
