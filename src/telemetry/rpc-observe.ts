/**
 * Server-side RPC observation as connect interceptors: a SERVER span per call (trace context
 * taken from the caller's `traceparent` header, so a peer's client span is its parent) and a
 * callback when the call ends with its gRPC code — for latency histograms.
 *
 * A server-streaming handler is an async generator pulled by connect-node after the
 * interceptor returned; each pull runs inside the span's context, otherwise work done by the
 * handler body (store reads, child spans) would land outside the trace.
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { context, SpanKind, SpanStatusCode, type Context } from "@opentelemetry/api";
import { ATTR } from "./names.js";
import { contextFromHeaders, recordError, startSpan, traceHeaders } from "./spans.js";

/** gRPC status code of an error as a connect handler ends with it (OK = 0). */
export function grpcCode(err: unknown): number {
  if (err === undefined) return 0;
  return err instanceof ConnectError ? err.code : Code.Unknown;
}

/** Text name of a gRPC code ("OK", "NOT_FOUND", ...). */
export function grpcCodeName(code: number): string {
  if (code === 0) return "OK";
  const name = Code[code];
  return name === undefined ? String(code) : name.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

export interface CallInfo {
  readonly service: string;
  readonly method: string;
  readonly header: Headers;
  readonly contextValues: unknown;
}

export interface CallObserver {
  /** Called when a call starts; the returned function is called once when it ends. */
  start(call: CallInfo): (code: number, err: unknown, messagesSent: number) => void;
}

async function* pullIn<T>(ctx: Context | undefined, src: AsyncIterable<T>, done: (err: unknown, n: number) => void): AsyncGenerator<T> {
  const it = src[Symbol.asyncIterator]();
  let n = 0;
  let err: unknown;
  let complete = false;
  try {
    for (;;) {
      const r = ctx ? await context.with(ctx, () => it.next()) : await it.next();
      if (r.done) {
        complete = true;
        return;
      }
      n++;
      yield r.value;
    }
  } catch (e) {
    err = e;
    throw e;
  } finally {
    // An early return (client gone) closes the inner generator too.
    if (err === undefined && !complete) await it.return?.();
    done(err ?? (complete ? undefined : new ConnectError("the caller went away", Code.Canceled)), n);
  }
}

/**
 * An interceptor that tells `observer` when each call starts and ends. With `traced`, the
 * call also gets a SERVER span and runs in its context.
 */
export function observeInterceptor(options: { readonly observer?: CallObserver; readonly traced?: { readonly listener: string; readonly callerName?: (values: unknown) => string | undefined } }): Interceptor {
  return (next) => async (req) => {
    const service = req.service.typeName;
    const method = req.method.name;
    const ended = options.observer?.start({ service, method, header: req.header, contextValues: req.contextValues });
    let span: ReturnType<typeof startSpan> | undefined;
    if (options.traced) {
      const parent = contextFromHeaders(
        (k) => req.header.get(k) ?? undefined,
        () => [...req.header.keys()],
      );
      const caller = options.traced.callerName?.(req.contextValues);
      span = startSpan(`${service}/${method}`, {
        kind: SpanKind.SERVER,
        parent,
        attributes: {
          [ATTR.rpcSystem]: "grpc",
          [ATTR.rpcService]: service,
          [ATTR.rpcMethod]: method,
          [ATTR.listener]: options.traced.listener,
          ...(caller !== undefined ? { [ATTR.callerNode]: caller } : {}),
        },
      });
    }
    let finished = false;
    const finish = (err: unknown, messages: number): void => {
      if (finished) return;
      finished = true;
      const code = grpcCode(err);
      if (span) {
        span.span.setAttribute(ATTR.rpcGrpcStatusCode, code);
        if (req.method.methodKind === "server_streaming" || req.method.methodKind === "bidi_streaming") span.span.setAttribute(ATTR.messages, messages);
        if (err !== undefined) recordError(span.span, err);
        else span.span.setStatus({ code: SpanStatusCode.UNSET });
        span.span.end();
      }
      ended?.(code, err, messages);
    };
    let res;
    try {
      res = span ? await context.with(span.ctx, () => next(req)) : await next(req);
    } catch (e) {
      finish(e, 0);
      throw e;
    }
    if (!res.stream) {
      finish(undefined, 1);
      return res;
    }
    return { ...res, message: pullIn(span?.ctx, res.message, finish) };
  };
}

/**
 * Client side for connect clients: a CLIENT span per call, its trace context injected into the
 * request headers (traceparent), ended when the response (stream) ends.
 */
export function clientTraceInterceptor(): Interceptor {
  return (next) => async (req) => {
    const service = req.service.typeName;
    const method = req.method.name;
    const { span, ctx } = startSpan(`${service}/${method}`, {
      kind: SpanKind.CLIENT,
      attributes: { [ATTR.rpcSystem]: "grpc", [ATTR.rpcService]: service, [ATTR.rpcMethod]: method, [ATTR.serverAddress]: new URL(req.url).host },
    });
    for (const [k, v] of Object.entries(traceHeaders(ctx))) req.header.set(k, v);
    let ended = false;
    const finish = (err: unknown, messages: number): void => {
      if (ended) return;
      ended = true;
      span.setAttribute(ATTR.rpcGrpcStatusCode, grpcCode(err));
      if (req.method.methodKind === "server_streaming" || req.method.methodKind === "bidi_streaming") span.setAttribute(ATTR.messages, messages);
      if (err !== undefined) recordError(span, err);
      span.end();
    };
    let res;
    try {
      res = await context.with(ctx, () => next(req));
    } catch (e) {
      finish(e, 0);
      throw e;
    }
    if (!res.stream) {
      finish(undefined, 1);
      return res;
    }
    return { ...res, message: pullIn(ctx, res.message, finish) };
  };
}
