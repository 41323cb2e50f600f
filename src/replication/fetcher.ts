/**
 * Fetches missing bodies from one peer and applies them: large bodies one stream each, small
 * ones batched back to back, at most `streams` (16) streams at once on the peer's single
 * connection. Every body is reserved against the staging budget before it is requested,
 * passes the shared bandwidth limiter, is claimed node-wide (single-flight) so two peers
 * never both send it, and is verified by the store (digest, size) before it is indexed.
 *
 * Memory: a large body's stream is opened only while it holds a node-wide body slot (one per
 * store writer lane, body-slots.ts), so large bodies received but not yet taken by the store
 * never outnumber the slots; small ones are read whole within their staging reservation.
 *
 * Resume: a large body whose stream fails after some of its bytes were handed to the store is
 * asked for again from that offset (ReadBodies serves offsets), on a new stream, while the
 * store's write of it stays open: the bytes already written stay in the lane's segment, the
 * store keeps hashing what follows, and verifies size and digest over the whole body before
 * the index commit — so a resumed body is applied whole and right, or not at all. A cut at
 * byte 0, a peer that ends a body short with OK (a protocol violation), or
 * MAX_RESUME_FAILURES failed attempts in a row fail the body as before (the pass retries it).
 *
 * Failure classes (the bootstrap's clean-pass rule depends on them):
 *  - a body failure (stream cut, idle timeout, digest/size mismatch, protocol error) is
 *    counted and the caller's pass continues;
 *  - a store failure (no space, I/O, closed) throws StoreApplyError: the caller aborts.
 */
import type { LimitFunction } from "p-limit";
import type { ReadBodiesResponse } from "../gen/granary/replication/v1/replication_pb.js";
import { DigestMismatchError, SizeMismatchError, StoreError } from "../store/errors.js";
import type { ApplyOutcome, Manifest, Store } from "../store/types.js";
import type { PeerClient } from "../transport/peer-client.js";
import { kindToWireNumber } from "./wire.js";
import type { BandwidthLimiter } from "./bandwidth-limiter.js";
import type { BodySlots } from "./body-slots.js";
import { followerWait, type SingleFlight } from "./single-flight.js";
import type { StagingBudget } from "./staging-budget.js";
import { ATTR, SPAN } from "../telemetry/names.js";
import { activeContext, endSpan, spanEvent, startSpan, withContext, withSpan, type Context } from "../telemetry/spans.js";
import { sleep } from "../util/sleep.js";

/** Bodies at least this large get a stream of their own. */
export const LARGE_BODY_BYTES = 1 << 20;
/** Bounds of one batch of small bodies. */
export const BATCH_MAX_ITEMS = 256;
export const BATCH_MAX_BYTES = 4 << 20;
/**
 * Staging reserved by a large body: what its stream can hold in memory (the 32 MiB default
 * peer window plus grpc-js's queue of 16 one-MiB messages), not its size — its bytes go to a
 * store lane as they arrive. Reserving the size made a 1 GiB body wait for an empty budget
 * and then run alone (the budget is FIFO), one stream for the whole 1 GiB.
 */
export const LARGE_BODY_STAGING_BYTES = 48 << 20;
/** Resume attempts of one body that may fail in a row (no byte in between) before it fails. */
export const MAX_RESUME_FAILURES = 4;
/** Resumes of one body in all; bounds a link that cuts every stream after a few bytes. */
export const MAX_RESUMES_PER_BODY = 64;
/** Wait before the n-th consecutive resume attempt (a reset connection needs a moment to redial). */
export const RESUME_DELAYS_MS: readonly number[] = [0, 250, 1000, 3000];
/**
 * Times a body whose flight another link led and failed is claimed again here (and fetched
 * from this link's peer when no other link has it in flight by then).
 */
export const FOLLOWER_RETRIES = 2;

/** The stream delivering a body failed (network, idle timeout, protocol). */
export class BodyStreamError extends Error {
  readonly code = "BODY_STREAM";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "BodyStreamError";
  }
}

/**
 * A body that never reached a stream: the pass or session stopped starting new ones (its peer
 * was lost) while it waited for a stream, a body slot, staging or another link's fetch. It
 * counts as failed (the pass is not clean) but is not a failure of its own to log.
 */
export class NotStartedError extends Error {
  readonly code = "NOT_STARTED";
  constructor(options?: { cause?: unknown }) {
    super("body not started: the pass stopped starting bodies (its peer was lost)", options);
    this.name = "NotStartedError";
  }
}

/** The local store failed while applying: the pass must abort. */
export class StoreApplyError extends Error {
  readonly code = "STORE_APPLY";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StoreApplyError";
  }
}

export interface FetchProgress {
  onBytes(bytes: number): void;
  onApplied(m: Manifest, outcome: ApplyOutcome): void;
  onFailed(m: Manifest, err: unknown): void;
  onMissing(m: Manifest, reason: string): void;
  /** Already here (pre-check or the store's idempotent apply): nothing fetched or written. */
  onSkipped?(m: Manifest): void;
  /** A large body's stream failed at `offset` (> 0) and a new stream resumed it there. */
  onResumed?(m: Manifest, offset: number, cause: unknown): void;
}

export interface FetchContext {
  readonly store: Store;
  readonly client: PeerClient;
  /** Streams to this peer (p-limit 16). */
  readonly streams: LimitFunction;
  readonly staging: StagingBudget;
  /** Node-wide: large-body streams open at once (one per store writer lane). */
  readonly bodySlots: BodySlots;
  readonly bandwidth: BandwidthLimiter;
  readonly flights: SingleFlight<ApplyOutcome | "missing">;
  /** Stops everything: streams under way included (the pass or link is stopping). */
  readonly signal: AbortSignal;
  /**
   * Stops what has not started (aborted with `signal`, and when the peer is lost): bodies still
   * waiting for a stream, a body slot, staging or another link's fetch fail as NotStartedError;
   * streams under way go on, so a large body cut with its connection resumes at its offset
   * once the client has redialled instead of being fetched again from byte 0.
   */
  readonly queueSignal: AbortSignal;
  readonly progress: FetchProgress;
}

export interface FetchResult {
  applied: number;
  skipped: number;
  missing: number;
  failed: number;
}

export function flightKey(m: Manifest): string {
  return `${m.namespace}\u0000${m.kind}\u0000${m.key}\u0000${m.digest}\u0000${m.version}`;
}

function isBodyFailure(e: unknown): boolean {
  if (e instanceof BodyStreamError || e instanceof DigestMismatchError || e instanceof SizeMismatchError) return true;
  if (e instanceof StoreError) return e.code === "ABORTED" || e.code === "INVALID_ARGUMENT";
  return !(e instanceof StoreApplyError);
}

interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(v: T): void;
  reject(e: unknown): void;
  settled: boolean;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  const d: Deferred<T> = {
    promise,
    resolve: (v) => {
      d.settled = true;
      resolve(v);
    },
    reject: (e) => {
      d.settled = true;
      reject(e);
    },
    settled: false,
  };
  // Rejections are observed through the task's result; never unhandled.
  promise.catch(() => undefined);
  return d;
}

interface Item {
  readonly manifest: Manifest;
  readonly done: Deferred<ApplyOutcome | "missing">;
}

/** Groups items into stream tasks: each large body alone, small ones batched. */
export function planTasks<T extends { manifest: Manifest }>(items: readonly T[]): T[][] {
  const tasks: T[][] = [];
  let batch: T[] = [];
  let batchBytes = 0;
  for (const it of items) {
    if (it.manifest.size >= LARGE_BODY_BYTES) {
      tasks.push([it]);
      continue;
    }
    if (batch.length >= BATCH_MAX_ITEMS || batchBytes + it.manifest.size > BATCH_MAX_BYTES) {
      tasks.push(batch);
      batch = [];
      batchBytes = 0;
    }
    batch.push(it);
    batchBytes += it.manifest.size;
  }
  if (batch.length > 0) tasks.push(batch);
  return tasks;
}

/**
 * runTask in a span of its own (replication.body_fetch: peer, bodies, bytes, outcome), child of
 * `parent` — the page that asked for the bodies; passed explicitly because p-limit runs the
 * task from whichever task finished before it.
 */
async function runTracedTask(ctx: FetchContext, items: readonly Item[], parent: Context, slot: (() => void) | undefined): Promise<void> {
  const bytes = items.reduce((n, it) => n + it.manifest.size, 0);
  const { span, ctx: spanCtx } = startSpan(SPAN.bodyFetch, {
    parent,
    attributes: { [ATTR.peerAddress]: ctx.client.address, [ATTR.bodies]: items.length, [ATTR.bytes]: bytes },
  });
  try {
    await withContext(spanCtx, () => runTask(ctx, items, bytes, slot));
  } catch (e) {
    span.setAttribute(ATTR.outcome, "aborted");
    endSpan(span, e);
    throw e;
  }
  if (!span.isRecording()) {
    span.end();
    return;
  }
  // Every item is settled by now (runTask settles what the stream did not answer).
  const settled = await Promise.allSettled(items.map((it) => it.done.promise));
  const failed = settled.filter((r): r is PromiseRejectedResult => r.status === "rejected");
  const count = (v: ApplyOutcome | "missing"): number => settled.filter((r) => r.status === "fulfilled" && r.value === v).length;
  span.setAttributes({
    [ATTR.applied]: count("applied"),
    [ATTR.skipped]: count("skipped"),
    [ATTR.missing]: count("missing"),
    [ATTR.failed]: failed.length,
    [ATTR.outcome]: failed.length === 0 ? "ok" : failed.length === items.length ? "failed" : "partial",
  });
  endSpan(span, failed.length > 0 ? failed[0]!.reason : undefined);
}

/** Runs one ReadBodies stream for `items` and applies each body as it arrives. */
async function runTask(ctx: FetchContext, items: readonly Item[], bytes: number, slot: (() => void) | undefined): Promise<void> {
  const waitStart = performance.now();
  const large = items.length === 1 && items[0]!.manifest.size >= LARGE_BODY_BYTES;
  const release = await ctx.staging.reserve(large ? Math.min(bytes, LARGE_BODY_STAGING_BYTES) : bytes, ctx.queueSignal);
  spanEvent("staging reserved", { [ATTR.bytes]: bytes, "granary.wait_ms": Math.round(performance.now() - waitStart) });
  // Small bodies are read whole (their bytes are already reserved) and applied without waiting
  // for each one's fsync and index commit before reading the next: the store group-commits
  // the applies in flight. Applied one after another they cost a commit each.
  const applying: Promise<void>[] = [];
  let storeFailure: StoreApplyError | undefined;
  const track = (it: Item, p: Promise<ApplyOutcome>): void => {
    applying.push(
      p.then(
        (o) => it.done.resolve(o),
        (e: unknown) => {
          if (isBodyFailure(e)) {
            it.done.reject(e);
            return;
          }
          storeFailure ??= new StoreApplyError(`applying ${it.manifest.key} failed`, { cause: e });
          it.done.reject(storeFailure);
        },
      ),
    );
  };
  const ref = (m: Manifest): { namespace: string; kind: number; key: string } => ({ namespace: m.namespace, kind: kindToWireNumber(m.kind), key: m.key });
  const open = (bodies: Array<{ m: Manifest; offset: number }>): AsyncIterator<ReadBodiesResponse> =>
    ctx.client.readBodies({ bodies: bodies.map((b) => ({ ref: ref(b.m), digest: b.m.digest, offset: BigInt(b.offset) })) }, ctx.signal)[Symbol.asyncIterator]();
  // The stream in use: replaced by a resumed one when a large body's stream fails.
  let frames: AsyncIterator<ReadBodiesResponse> | undefined;
  try {
    frames = open(items.map((it) => ({ m: it.manifest, offset: 0 })));
    const next = async (): Promise<IteratorResult<ReadBodiesResponse>> => {
      try {
        return await frames!.next();
      } catch (e) {
        throw new BodyStreamError(`body stream from ${ctx.client.address} failed`, { cause: e });
      }
    };
    /**
     * The stream carrying `m` failed at `offset` (> 0): open a new one from there and check its
     * header. Resolves once the new stream is in place; throws BodyStreamError when the body
     * cannot be resumed (gone from the peer, a bad header, too many failures in a row).
     */
    let resumes = 0;
    let failuresInARow = 0;
    const resume = async (m: Manifest, offset: number, cause: unknown): Promise<void> => {
      let last = cause;
      for (;;) {
        ctx.signal.throwIfAborted();
        if (failuresInARow >= MAX_RESUME_FAILURES || resumes >= MAX_RESUMES_PER_BODY) {
          throw new BodyStreamError(`body of ${m.key} cut at byte ${offset} of ${m.size}; ${resumes} resume(s), the last ${failuresInARow} failed`, { cause: last });
        }
        await sleep(RESUME_DELAYS_MS[Math.min(failuresInARow, RESUME_DELAYS_MS.length - 1)]!, ctx.signal);
        resumes++;
        frames = open([{ m, offset }]);
        let r: IteratorResult<ReadBodiesResponse>;
        try {
          r = await next();
        } catch (e) {
          if (ctx.signal.aborted) throw e;
          failuresInARow++;
          last = e;
          continue;
        }
        const f = r.done ? undefined : r.value.frame;
        if (f?.case === "missing") throw new BodyStreamError(`body of ${m.key} cut at byte ${offset} of ${m.size}; the peer no longer has it (${f.value.reason})`, { cause });
        if (f?.case !== "header" || f.value.index !== 0 || f.value.offset !== BigInt(offset) || f.value.length !== BigInt(m.size - offset) || f.value.manifest?.digest !== m.digest) {
          throw new BodyStreamError(`peer's header resuming ${m.key} at byte ${offset} does not match what was asked for`, { cause });
        }
        ctx.progress.onResumed?.(m, offset, cause);
        spanEvent("body resumed", { [ATTR.key]: m.key, "granary.offset": offset });
        return;
      }
    };
    for (;;) {
      if (storeFailure) throw storeFailure;
      const r = await next();
      if (r.done) break;
      const f = r.value.frame;
      if (f.case === "missing") {
        const it = items[f.value.index];
        if (!it || it.done.settled) throw new BodyStreamError(`peer sent a bad missing index ${f.value.index}`);
        ctx.progress.onMissing(it.manifest, f.value.reason);
        it.done.resolve("missing");
        continue;
      }
      if (f.case !== "header") throw new BodyStreamError(`peer sent ${f.case ?? "an empty frame"} where a body header was expected`);
      const it = items[f.value.index];
      if (!it || it.done.settled) throw new BodyStreamError(`peer sent a bad body index ${f.value.index}`);
      const hm = f.value.manifest;
      if (f.value.offset !== 0n || f.value.length !== BigInt(it.manifest.size) || !hm || hm.digest !== it.manifest.digest) {
        throw new BodyStreamError(`peer's body header for ${it.manifest.key} does not match the manifest asked for`);
      }
      let remaining = it.manifest.size;
      // Only a large body, alone on its stream, is resumed: its bytes go to the store as they
      // come, and nothing else is on the stream to lose track of.
      const resumable = large;
      async function* body(): AsyncGenerator<Uint8Array> {
        while (remaining > 0) {
          let c: IteratorResult<ReadBodiesResponse>;
          const at = it!.manifest.size - remaining;
          try {
            c = await next();
          } catch (e) {
            if (!resumable || at === 0 || ctx.signal.aborted) {
              // Where the body was cut, for the log (the pass retries it from the start).
              throw new BodyStreamError(`body of ${it!.manifest.key} cut at byte ${at} of ${it!.manifest.size}`, { cause: e });
            }
            await resume(it!.manifest, at, e);
            continue;
          }
          if (c.done) throw new BodyStreamError(`stream ended OK at byte ${at} of ${it!.manifest.size} of ${it!.manifest.key}`);
          const cf = c.value.frame;
          if (cf.case !== "chunk") throw new BodyStreamError(`peer sent ${cf.case ?? "an empty frame"} inside a body`);
          if (cf.value.length > remaining) throw new BodyStreamError(`peer sent more bytes than declared for ${it!.manifest.key}`);
          remaining -= cf.value.length;
          if (cf.value.length > 0) failuresInARow = 0;
          await ctx.bandwidth.take(cf.value.length, ctx.signal);
          ctx.progress.onBytes(cf.value.length);
          yield cf.value;
        }
        // The store has taken the last byte: the next large body may open its stream.
        slot?.();
      }
      if (it.manifest.size < LARGE_BODY_BYTES) {
        const parts: Uint8Array[] = [];
        for await (const c of body()) parts.push(c);
        track(
          it,
          ctx.store.apply(
            it.manifest,
            (async function* () {
              yield* parts;
            })(),
            ctx.signal,
          ),
        );
        continue;
      }
      let outcome: ApplyOutcome;
      try {
        // A span per large body; small ones are counted on the body_fetch span (a pass over a
        // million small artifacts must not make a million spans).
        outcome = await withSpan(SPAN.storeApply, { attributes: { [ATTR.namespace]: it.manifest.namespace, [ATTR.key]: it.manifest.key, [ATTR.bytes]: it.manifest.size } }, async (span) => {
          const o = await ctx.store.apply(it.manifest, body(), ctx.signal);
          span.setAttribute(ATTR.outcome, o);
          return o;
        });
      } catch (e) {
        if (e instanceof BodyStreamError) throw e;
        if (!isBodyFailure(e)) throw new StoreApplyError(`applying ${it.manifest.key} failed`, { cause: e });
        it.done.reject(e);
        // Keep the stream in step: skip what is left of this body.
        while (remaining > 0) {
          const c = await next();
          if (c.done || c.value.frame.case !== "chunk") throw new BodyStreamError("stream out of step after a failed body");
          remaining -= c.value.frame.value.length;
        }
        continue;
      }
      it.done.resolve(outcome);
    }
    await Promise.all(applying);
    if (storeFailure) throw storeFailure;
    const unanswered = items.filter((it) => !it.done.settled);
    if (unanswered.length > 0) throw new BodyStreamError(`peer ended the stream without ${unanswered.length} of the bodies asked for`);
  } catch (e) {
    // Applies already under way finish (and count) before the rest is failed.
    await Promise.allSettled(applying);
    for (const it of items) if (!it.done.settled) it.done.reject(e);
    if (e instanceof StoreApplyError) throw e;
  } finally {
    // A stream left mid-body (a body the store skipped, a failure) is cancelled now, not when
    // the iterator is collected; one that ended or failed is already closed.
    void frames?.return?.().catch(() => undefined);
    slot?.();
    release();
  }
}


/** A body of one fetchBodies call: claimed (led here, or followed) when a stream is free for it. */
interface Pending extends Item {
  /** This link fetches it (it won the claim); otherwise it waits for another link's fetch. */
  led: boolean;
}

/**
 * Fetches and applies what of `manifests` the store lacks. Resolves when every body has been
 * applied, skipped, found missing on the peer, or failed; throws StoreApplyError on a store
 * failure (the caller aborts its pass).
 *
 * Bodies are claimed node-wide (single-flight) only when one of this link's streams is free
 * for them, not when their page arrives: two links refilling a node from two peers walk the
 * same artifacts, and a link claiming whole pages at once (up to pagesInFlight × 4,096) took
 * them all while the other link's peer sat idle — chaos scenario 7 at full size saw a wiped
 * node re-fetch 43,641 bodies from one peer in 172 s while its link to the other led none.
 * Claimed at the stream, each link takes the next bodies nobody is fetching yet.
 *
 * A body another link is already fetching is waited for (on this context's signal); if that
 * link's fetch fails — its peer stalled, was stopped or died, its pass was abandoned — the body
 * is claimed again and, unless a third link has it in flight, fetched here. Before, the
 * failure was counted here too: in scenario 7 one SIGSTOPped peer failed both refill passes
 * of a wiped node (thousands of bodies each), and the pass from the healthy peer sat out its
 * no-progress watchdog and then stayed wedged, waiting for the other link's flights.
 */
export async function fetchBodies(ctx: FetchContext, manifests: readonly Manifest[], followerRetry = 0): Promise<FetchResult> {
  const result: FetchResult = { applied: 0, skipped: 0, missing: 0, failed: 0 };
  // What a body that stopped waiting fails with: not started, when the queue was stopped.
  const notStarted = (e: unknown): unknown => (ctx.queueSignal.aborted && !(e instanceof StoreApplyError) ? new NotStartedError({ cause: ctx.queueSignal.reason }) : e);
  const waits: Promise<void>[] = [];
  const pending: Pending[] = [];
  const again: Manifest[] = [];
  let storeFailure: unknown;
  // A body another link fetched counts here as skipped: that link applied it.
  const settle = (it: Pending): Promise<void> =>
    it.done.promise.then(
      (outcome) => {
        if (outcome === "missing") result.missing++;
        else if (outcome === "applied" && it.led) {
          result.applied++;
          ctx.progress.onApplied(it.manifest, outcome);
        } else {
          result.skipped++;
          ctx.progress.onSkipped?.(it.manifest);
        }
      },
      (e: unknown) => {
        if (e instanceof StoreApplyError) {
          storeFailure ??= e;
          return;
        }
        if (!it.led && !ctx.queueSignal.aborted && followerRetry < FOLLOWER_RETRIES) {
          again.push(it.manifest);
          return;
        }
        result.failed++;
        ctx.progress.onFailed(it.manifest, e);
      },
    );
  /** Claims `it`: true when this link leads it; otherwise its outcome is the other fetch's. */
  const claim = (it: Pending): boolean => {
    const c = ctx.flights.claim(flightKey(it.manifest), () => it.done.promise);
    if (c.leader) return (it.led = true);
    followerWait(c.promise, ctx.queueSignal).then(
      (o) => it.done.resolve(o),
      (e: unknown) => it.done.reject(notStarted(e)),
    );
    return false;
  };
  for (const m of manifests) {
    if (ctx.store.has(m)) {
      result.skipped++;
      ctx.progress.onSkipped?.(m);
      continue;
    }
    const it: Pending = { manifest: m, done: deferred<ApplyOutcome | "missing">(), led: false };
    waits.push(settle(it));
    // In flight on another link right now: wait for it rather than queue it here.
    if (ctx.flights.has(flightKey(m))) claim(it);
    else pending.push(it);
  }
  const parent = activeContext();
  /** At the stream: what of `items` is still to fetch and not in flight elsewhere, claimed. */
  const lead = (items: Pending[]): Pending[] =>
    items.filter((it) => {
      if (ctx.queueSignal.aborted) {
        it.done.reject(notStarted(ctx.queueSignal.reason));
        return false;
      }
      if (ctx.store.has(it.manifest)) {
        it.done.resolve("skipped");
        return false;
      }
      return claim(it);
    });
  const run = (items: Pending[], slot?: () => void): Promise<void> =>
    ctx
      .streams(async () => {
        const mine = lead(items);
        if (mine.length > 0) await runTracedTask(ctx, mine, parent, slot);
      })
      .catch((e: unknown) => {
        // Only the store failing aborts the caller; anything else (the pass aborted while the
        // task waited for staging) fails the task's bodies.
        if (e instanceof StoreApplyError) storeFailure ??= e;
        for (const it of items) if (!it.done.settled) it.done.reject(notStarted(e));
      });
  const tasks = planTasks(pending).map((items) => {
    if (items.length !== 1 || items[0]!.manifest.size < LARGE_BODY_BYTES) return run(items);
    // A large body waits for a body slot before it queues for a stream, so it never holds a
    // stream of the link while small batches could use it.
    return ctx.bodySlots.acquire(ctx.queueSignal).then(
      (slot) => run(items, slot).finally(slot),
      (e: unknown) => {
        for (const it of items) if (!it.done.settled) it.done.reject(notStarted(e));
      },
    );
  });
  await Promise.all([...tasks, ...waits]);
  if (storeFailure) throw storeFailure instanceof StoreApplyError ? storeFailure : new StoreApplyError("apply failed", { cause: storeFailure });
  if (again.length > 0) {
    const r = await fetchBodies(ctx, again, followerRetry + 1);
    result.applied += r.applied;
    result.skipped += r.skipped;
    result.missing += r.missing;
    result.failed += r.failed;
  }
  return result;
}
