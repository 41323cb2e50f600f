/**
 * Span helpers for library code, on @opentelemetry/api only. Without a registered SDK (the
 * CLI starts one only when tracing is on) every call here is the API's no-op: no allocation
 * beyond a shared non-recording span, no export.
 *
 * Parents are passed explicitly where work crosses a queue (p-limit does not carry async
 * context), so a span's place in the trace never depends on which task happened to run it.
 */
import { context, propagation, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Link, type Span, type Tracer } from "@opentelemetry/api";
import { causeChain } from "../util/cause-chain.js";
import { TRACER_NAME } from "./names.js";

export { SpanKind };
export type { Attributes, Context, Span };

/** Granary's tracer (the API's no-op until an SDK registers a provider). */
export function tracer(): Tracer {
  return trace.getTracer(TRACER_NAME);
}

/** The context active now (ROOT when no context manager is registered). */
export function activeContext(): Context {
  return context.active();
}

export interface StartSpanOptions {
  readonly kind?: SpanKind;
  readonly attributes?: Attributes;
  /** Parent context; default the active one. Pass `null` for a new root (a new trace). */
  readonly parent?: Context | null;
  readonly links?: Link[];
}

/** Starts a span; returns it with the context that has it as the active span. */
export function startSpan(name: string, o: StartSpanOptions = {}): { span: Span; ctx: Context } {
  const parent = o.parent === null ? trace.deleteSpan(context.active()) : (o.parent ?? context.active());
  const span = tracer().startSpan(
    name,
    { ...(o.kind !== undefined ? { kind: o.kind } : {}), ...(o.attributes ? { attributes: o.attributes } : {}), ...(o.links ? { links: o.links, root: o.parent === null } : { root: o.parent === null }) },
    parent,
  );
  return { span, ctx: trace.setSpan(parent, span) };
}

/** Marks a span failed with the error and its whole cause chain. */
export function recordError(span: Span, err: unknown): void {
  if (!span.isRecording()) return;
  span.recordException(err instanceof Error ? err : new Error(String(err)));
  span.setStatus({ code: SpanStatusCode.ERROR, message: causeChain(err) });
}

/** Ends a span, failed when `err` is given. */
export function endSpan(span: Span, err?: unknown): void {
  if (err !== undefined) recordError(span, err);
  span.end();
}

/**
 * Runs `fn` in a new span (child of `o.parent` or the active context) and ends the span when
 * the promise settles; a rejection is recorded with its cause chain and rethrown.
 */
export async function withSpan<T>(name: string, o: StartSpanOptions, fn: (span: Span) => Promise<T>): Promise<T> {
  const { span, ctx } = startSpan(name, o);
  try {
    const v = await context.with(ctx, () => fn(span));
    span.end();
    return v;
  } catch (e) {
    endSpan(span, e);
    throw e;
  }
}

/** A link to `span` for a span in another trace (e.g. a follow page to its session). */
export function linkTo(span: Span): Link[] {
  const sc = span.spanContext();
  return trace.isSpanContextValid(sc) ? [{ context: sc }] : [];
}

/** W3C trace context headers (traceparent, tracestate) of `ctx`, for a carrier of any kind. */
export function traceHeaders(ctx: Context): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  return carrier;
}

/** The context a caller sent in headers (traceparent); ROOT context + remote parent. */
export function contextFromHeaders(get: (key: string) => string | undefined, keys: () => string[]): Context {
  return propagation.extract(trace.deleteSpan(context.active()), undefined, {
    get: (_c, k) => get(k),
    keys: () => keys(),
  });
}

/** The active span's ids, for log correlation (undefined when nothing is traced). */
export function activeTraceIds(): { trace_id: string; span_id: string } | undefined {
  const span = trace.getSpan(context.active());
  if (!span) return undefined;
  const sc = span.spanContext();
  return trace.isSpanContextValid(sc) ? { trace_id: sc.traceId, span_id: sc.spanId } : undefined;
}

/** Runs `fn` with `ctx` active (spans started inside become its children). */
export function withContext<T>(ctx: Context, fn: () => T): T {
  return context.with(ctx, fn);
}

/** Adds an event to the active span (a no-op when nothing is traced). */
export function spanEvent(name: string, attributes?: Attributes): void {
  trace.getSpan(context.active())?.addEvent(name, attributes);
}
