/**
 * One link per peer: Hello, then either follow the peer's change feed from the persisted
 * cursor, or (fresh node, refused cursor, new peer incarnation) a bootstrap pass over the
 * peer's index newest-first, then follow from the pass's snapshot head. Failures back off
 * with jitter and resume; nothing here has a wall-clock cap — only idle timeouts (in the
 * transport) and a no-progress watchdog on a pass.
 *
 * Every retry (a pass that was not clean, a cursor the peer refused) goes back through Hello:
 * the peer may have been replaced meanwhile (wiped: a new incarnation), and a pass or a Follow
 * tied to the Hello of the old one would be refused forever. Chaos scenario 7 caught a link
 * doing exactly that: bootstrap, Follow refused, bootstrap again with the stale Hello, for
 * as long as the node ran, at ~70 % of a core on both sides.
 *
 * State is a tagged union changed only through setPhase(), so status and logs see every
 * transition.
 */
import { setMaxListeners } from "node:events";
import pLimit, { type LimitFunction } from "p-limit";
import type { HelloResponse } from "../gen/granary/replication/v1/replication_pb.js";
import type { ApplyOutcome, Manifest, Store } from "../store/types.js";
import { errFields, type Logger } from "../telemetry/logger.js";
import { PeerRpcError, type PeerClient } from "../transport/peer-client.js";
import { causeChain, hasCause } from "../util/cause-chain.js";
import { ATTR, SPAN } from "../telemetry/names.js";
import { activeContext, endSpan, linkTo, startSpan, withContext } from "../telemetry/spans.js";
import type { BandwidthLimiter } from "./bandwidth-limiter.js";
import type { BodySlots } from "./body-slots.js";
import { fetchBodies, type FetchContext, type FetchProgress, type FetchResult, NotStartedError, StoreApplyError } from "./fetcher.js";
import { backoffDelayMs, type RetryPolicy } from "./retry-policy.js";
import type { SingleFlight } from "./single-flight.js";
import type { StagingBudget } from "./staging-budget.js";
import { readAhead } from "../util/read-ahead.js";
import { manifestFromPeer } from "./wire.js";
import { sleep } from "../util/sleep.js";

export type PeerPhase = "connecting" | "bootstrapping" | "following" | "backoff" | "unreachable" | "stopped";

export interface PeerLinkOptions {
  /** Concurrent body streams on the peer's connection. */
  readonly streams: number;
  readonly listPageItems: number;
  readonly followPageItems: number;
  /** Pages of a bootstrap walk whose fetches may be outstanding at once. */
  readonly pagesInFlight: number;
  /** A pass that moves nothing for this long is abandoned (and retried). */
  readonly passNoProgressMs: number;
  readonly retry: RetryPolicy;
  /** While following, the peer's feed head is asked for (Hello) this often: see followIn. */
  readonly headRefreshMs: number;
}

export const DEFAULT_PEER_LINK_OPTIONS: PeerLinkOptions = {
  streams: 16,
  listPageItems: 4096,
  followPageItems: 1024,
  pagesInFlight: 8,
  passNoProgressMs: 120_000,
  retry: { initialMs: 1000, maxMs: 60_000, multiplier: 2, jitter: 0.5 },
  headRefreshMs: 5000,
};

export interface PeerLinkDeps {
  readonly store: Store;
  readonly client: PeerClient;
  readonly self: { readonly nodeId: string; readonly incarnation: string; readonly advertiseAddress: string };
  readonly staging: StagingBudget;
  /** Node-wide large-body stream slots (one per store writer lane). */
  readonly bodySlots: BodySlots;
  readonly bandwidth: BandwidthLimiter;
  readonly flights: SingleFlight<ApplyOutcome | "missing">;
  readonly log: Logger;
  readonly options: PeerLinkOptions;
  /** Membership hears every Hello answer (known peers, identity). */
  readonly onHello: (link: PeerLink, hello: HelloResponse) => "continue" | "drop";
  /** Called once, when this link first caught up with its peer or first found it unreachable. */
  readonly onInitialSync: (link: PeerLink, how: "caught-up" | "unreachable") => void;
}

interface Cursor {
  readonly incarnation: string;
  readonly seq: number;
}

interface BootstrapState {
  readonly incarnation: string;
  readonly snapshotHead: number;
  /** base64 of the ListManifests cursor up to which every page was applied cleanly. */
  readonly walkCursor: string;
}

export interface PeerLinkStats {
  phase: PeerPhase;
  nodeId: string;
  incarnation: string;
  cursorSeq: number;
  headSeq: number;
  lagSince: number | undefined;
  bytesFetched: number;
  artifactsFetched: number;
  failedCount: number;
  /** Large bodies whose stream failed mid-body and were resumed at the offset reached. */
  resumedCount: number;
  /** Bytes not fetched again thanks to those resumes (the offsets resumed at). */
  resumedBytes: number;
  lastError: string;
  lastContactMs: number;
  /** Last time a stream from this peer delivered anything (bytes, a page, a heartbeat). */
  lastProgressMs: number;
  bootstrap: { totalArtifacts: number; totalBytes: number; doneArtifacts: number; doneBytes: number; startedMs: number } | undefined;
  passes: number;
  rate: RateMeter;
  /** Artifacts the peer offered and their manifest bytes, by outcome, since the link started (metrics). */
  outcomes: Record<"applied" | "skipped" | "missing" | "failed", { artifacts: number; bytes: number }>;
}

/** Bytes per second over a sliding window of a few seconds. */
export class RateMeter {
  private readonly samples: Array<{ t: number; bytes: number }> = [];
  add(bytes: number, now = Date.now()): void {
    const last = this.samples[this.samples.length - 1];
    if (last && now - last.t < 250) last.bytes += bytes;
    else this.samples.push({ t: now, bytes });
    while (this.samples.length > 0 && now - this.samples[0]!.t > 5000) this.samples.shift();
  }
  rate(now = Date.now()): number {
    while (this.samples.length > 0 && now - this.samples[0]!.t > 5000) this.samples.shift();
    if (this.samples.length === 0) return 0;
    const span = Math.max(1000, now - this.samples[0]!.t);
    return (this.samples.reduce((n, s) => n + s.bytes, 0) * 1000) / span;
  }
}

/** Follow frames buffered ahead of the applier (each a page of up to followPageItems entries). */
export const FOLLOW_READ_AHEAD_FRAMES = 64;

const cursorKey = (nodeId: string): string => `replication.cursor.${nodeId}`;

/** True when `err` (or a cause of it) says the peer could not be reached or its connection dropped. */
export function peerUnavailable(err: unknown): boolean {
  return hasCause(err, (c) => c instanceof PeerRpcError && c.code === "UNAVAILABLE");
}
/**
 * What a failed body is to the link: "quiet" when it is not a body failure of its own (a body
 * a lost peer kept from starting; what a stop cancelled, the stop's reason in its cause chain;
 * once the peer is lost, another stream of the dead connection: the one peer_lost event says
 * it), "peer-lost" for the first unreachable-peer failure (logged, and it stops the rest), and
 * "failed" otherwise. A body that failed for a reason of its own (ended short, a bad digest)
 * is logged even after a stop or a loss: chaos scenario 5 at full size found a short body not
 * logged when a loss stopped the pass.
 */
export function bodyFailureKind(err: unknown, stop: AbortSignal, peerAlreadyLost: boolean): "quiet" | "peer-lost" | "failed" {
  if (err instanceof NotStartedError) return "quiet";
  if (stop.aborted && hasCause(err, (c) => c === stop.reason)) return "quiet";
  if (!peerUnavailable(err)) return "failed";
  return peerAlreadyLost ? "quiet" : "peer-lost";
}

const bootstrapKey = (nodeId: string): string => `replication.bootstrap.${nodeId}`;

class NoProgressError extends Error {
  readonly code = "NO_PROGRESS";
  constructor(ms: number) {
    super(`bootstrap pass made no progress for ${ms} ms; abandoning it`);
    this.name = "NoProgressError";
  }
}

export class PeerLink {
  readonly stats: PeerLinkStats = {
    phase: "connecting",
    nodeId: "",
    incarnation: "",
    cursorSeq: 0,
    headSeq: 0,
    lagSince: undefined,
    bytesFetched: 0,
    artifactsFetched: 0,
    failedCount: 0,
    resumedCount: 0,
    resumedBytes: 0,
    lastError: "",
    lastContactMs: 0,
    lastProgressMs: 0,
    bootstrap: undefined,
    passes: 0,
    rate: new RateMeter(),
    outcomes: { applied: { artifacts: 0, bytes: 0 }, skipped: { artifacts: 0, bytes: 0 }, missing: { artifacts: 0, bytes: 0 }, failed: { artifacts: 0, bytes: 0 } },
  };
  private readonly streams: LimitFunction;
  private initialSyncReported = false;
  private readonly stopper = new AbortController();
  private running: Promise<void> | undefined;
  private progressTicks = 0;
  /** Bootstrap passes in a row that were not clean (or whose cursor was refused at once): their backoff. */
  private passFailures = 0;

  constructor(private readonly deps: PeerLinkDeps) {
    this.streams = pLimit(deps.options.streams);
    // Every in-flight stream, staging wait and limiter wait listens on the link's signal.
    setMaxListeners(0, this.stopper.signal);
  }

  get address(): string {
    return this.deps.client.address;
  }

  /** The peer client's stream counters (opened, in flight, peak). */
  clientCounters(): ReturnType<PeerClient["counters"]> {
    return this.deps.client.counters();
  }

  /** Streams active and queued on this peer's connection. */
  streamCounts(): { active: number; pending: number } {
    return { active: this.streams.activeCount, pending: this.streams.pendingCount };
  }

  start(): void {
    this.running ??= this.loop().catch((e: unknown) => {
      this.deps.log.error({ event: "replication.link_crashed", peer: this.address, ...errFields(e) }, "peer link stopped on an unexpected error");
    });
  }

  async stop(): Promise<void> {
    this.stopper.abort(new Error("link stopped"));
    this.deps.client.close();
    await this.running;
    this.setPhase("stopped");
  }

  /**
   * True while the link talks to its peer (bootstrapping or following): a repair asked of it
   * now has a connection to go over.
   */
  get connected(): boolean {
    return this.stats.phase === "following" || this.stats.phase === "bootstrapping";
  }

  /**
   * Fetches `manifests` from this peer outside any pass: bodies this node had and lost (a
   * record that failed a check, see repairer.ts). Uses the link's streams, staging and
   * single-flight like any fetch; resolves with the outcomes, rejects on a store failure.
   */
  repair(manifests: readonly Manifest[]): Promise<FetchResult> {
    return fetchBodies(this.fetchContext(this.stopper.signal, () => this.progressTicks++), manifests);
  }

  private setPhase(phase: PeerPhase, detail?: Record<string, unknown>): void {
    if (this.stats.phase === phase) return;
    const from = this.stats.phase;
    this.stats.phase = phase;
    this.deps.log.info({ event: "replication.phase", peer: this.address, peerNodeId: this.stats.nodeId, from, to: phase, ...detail }, `peer ${this.address}: ${from} -> ${phase}`);
  }

  private reportInitialSync(how: "caught-up" | "unreachable"): void {
    if (this.initialSyncReported) return;
    this.initialSyncReported = true;
    this.deps.onInitialSync(this, how);
  }

  private fail(e: unknown): void {
    this.stats.lastError = causeChain(e);
  }

  private async loop(): Promise<void> {
    const signal = this.stopper.signal;
    let failures = 0;
    while (!signal.aborted) {
      try {
        this.setPhase("connecting");
        const hello = await this.deps.client.hello(
          { nodeId: this.deps.self.nodeId, incarnation: this.deps.self.incarnation, advertiseAddress: this.deps.self.advertiseAddress, capabilities: ["follow.v1"] },
          signal,
        );
        this.stats.lastContactMs = this.stats.lastProgressMs = Date.now();
        this.stats.nodeId = hello.nodeId;
        this.stats.incarnation = hello.incarnation;
        this.stats.headSeq = Number(hello.feedHead);
        if (this.deps.onHello(this, hello) === "drop") {
          this.setPhase("stopped", { reason: "dropped by membership" });
          return;
        }
        failures = 0;
        await this.syncWith(hello, signal);
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof StoreApplyError) {
          this.deps.log.error({ event: "replication.pass_aborted", peer: this.address, ...errFields(e) }, "store error: pass aborted");
        }
        failures++;
        this.fail(e);
        const unreachable = e instanceof PeerRpcError && (e.code === "UNAVAILABLE" || e.code === "DEADLINE_EXCEEDED") && this.stats.lastContactMs === 0;
        if (unreachable) this.reportInitialSync("unreachable");
        const delay = backoffDelayMs(this.deps.options.retry, failures);
        this.setPhase(unreachable ? "unreachable" : "backoff", { error: this.stats.lastError, retryInMs: delay });
        this.deps.log.warn({ event: "replication.retry", peer: this.address, attempt: failures, retryInMs: delay, ...errFields(e) }, `peer ${this.address}: ${this.stats.lastError}; retrying in ${delay} ms`);
        try {
          await sleep(delay, signal);
        } catch {
          return;
        }
      }
    }
  }

  /**
   * After a Hello: follow from the cursor, or bootstrap first. Returns to be greeted again (a
   * pass that was not clean, a cursor refused), by throwing, or on stop.
   */
  private async syncWith(hello: HelloResponse, signal: AbortSignal): Promise<void> {
    const store = this.deps.store;
    const cursor = store.getMeta<Cursor>(cursorKey(hello.nodeId));
    let from: number;
    let bootstrapped = false;
    if (cursor && cursor.incarnation === hello.incarnation && BigInt(cursor.seq) >= hello.feedFloor) {
      from = cursor.seq;
    } else {
      if (cursor) {
        this.deps.log.info(
          { event: "replication.cursor_refused", peer: this.address, cursor, peerIncarnation: hello.incarnation, peerFloor: String(hello.feedFloor) },
          cursor.incarnation !== hello.incarnation ? "peer has a new incarnation: re-sync" : "cursor is below the peer's feed floor: re-sync",
        );
      }
      const seq = await this.bootstrap(hello, signal);
      if (seq === undefined) return;
      from = seq;
      bootstrapped = true;
    }
    this.stats.cursorSeq = from;
    try {
      await this.follow(hello, from, signal);
    } catch (e) {
      if (!(e instanceof PeerRpcError && e.code === "FAILED_PRECONDITION" && e.refusal)) throw e;
      this.deps.log.info({ event: "replication.cursor_refused", peer: this.address, reason: e.refusal }, `peer refused our cursor (${e.refusal}): greet it again and re-sync`);
      await store.putMeta(cursorKey(hello.nodeId), null);
      // A cursor refused the moment a pass made it is a pass that did not take: back off as for one.
      if (bootstrapped) await this.passBackoff(signal);
    }
  }

  /**
   * `onPeerLost`: called once, with the first body failure that says the peer cannot be reached
   * (UNAVAILABLE). The context then stops starting bodies (its queueSignal): what is queued
   * fails quietly instead of one logged failure per body against a connection that is gone,
   * and the caller ends its pass or session once the streams under way are done — a large body
   * among them resumes at its offset if the peer is back (a reset connection), as it did before
   * peer loss ended passes (chaos scenario 5: 0 resumes and 100x the bytes fetched again when
   * the loss aborted the streams under way too).
   */
  private fetchContext(signal: AbortSignal, onProgress: () => void, onPeerLost?: (err: unknown) => void): FetchContext {
    const lost = new AbortController();
    let queueSignal = signal;
    if (onPeerLost) {
      queueSignal = AbortSignal.any([signal, lost.signal]);
      setMaxListeners(0, queueSignal);
    }
    const stats = this.stats;
    const log = this.deps.log;
    const address = this.address;
    const count = (o: keyof PeerLinkStats["outcomes"], m: Manifest): void => {
      stats.outcomes[o].artifacts++;
      stats.outcomes[o].bytes += m.size;
    };
    const progress: FetchProgress = {
      onBytes: (n) => {
        stats.lastProgressMs = Date.now();
        stats.bytesFetched += n;
        stats.rate.add(n);
        if (stats.bootstrap) stats.bootstrap.doneBytes += n;
        onProgress();
      },
      onApplied: (m) => {
        count("applied", m);
        stats.artifactsFetched++;
        if (stats.bootstrap) stats.bootstrap.doneArtifacts++;
        onProgress();
      },
      onFailed: (m, err) => {
        const what = bodyFailureKind(err, signal, lost.signal.aborted);
        if (what === "quiet") return;
        if (what === "peer-lost" && onPeerLost) {
          lost.abort(err);
          onPeerLost(err);
        }
        count("failed", m);
        stats.failedCount++;
        stats.lastError = causeChain(err);
        log.warn({ event: "replication.body_failed", peer: address, key: m.key, namespace: m.namespace, size: m.size, ...errFields(err) }, `body ${m.key} from ${address} failed`);
      },
      onMissing: (m, reason) => {
        count("missing", m);
        if (stats.bootstrap) stats.bootstrap.doneArtifacts++;
        log.debug({ event: "replication.body_missing", peer: address, key: m.key, reason }, "peer no longer has a body (stale manifest): skipped");
      },
      onSkipped: (m) => count("skipped", m),
      onResumed: (m, offset, cause) => {
        stats.resumedCount++;
        stats.resumedBytes += offset;
        // An error the link recovered from is still the last error it saw (status, chaos oracles).
        stats.lastError = causeChain(cause);
        log.info(
          { event: "replication.body_resumed", peer: address, key: m.key, namespace: m.namespace, size: m.size, offset, ...errFields(cause) },
          `body ${m.key} from ${address} cut at byte ${offset} of ${m.size}: resumed there`,
        );
      },
    };
    return {
      store: this.deps.store,
      client: this.deps.client,
      streams: this.streams,
      staging: this.deps.staging,
      bodySlots: this.deps.bodySlots,
      bandwidth: this.deps.bandwidth,
      flights: this.deps.flights,
      signal,
      queueSignal,
      progress,
    };
  }

  /**
   * One bootstrap pass. Clean: returns the seq to follow from. Not clean: backs off and returns
   * undefined, and the link greets the peer again before the next pass (a walk resumes from
   * the saved cursor if the peer kept its incarnation).
   */
  private async bootstrap(hello: HelloResponse, signal: AbortSignal): Promise<number | undefined> {
    const key = bootstrapKey(hello.nodeId);
    this.setPhase("bootstrapping");
    const saved = this.deps.store.getMeta<BootstrapState>(key);
    const state: BootstrapState = saved && saved.incarnation === hello.incarnation ? saved : { incarnation: hello.incarnation, snapshotHead: -1, walkCursor: "" };
    this.stats.passes++;
    // Behind the peer from the start of the pass: lag seconds count from here.
    this.stats.headSeq = Math.max(this.stats.headSeq, Number(hello.feedHead));
    if (this.stats.cursorSeq < this.stats.headSeq) this.stats.lagSince ??= Date.now();
    const startedMs = Date.now();
    this.stats.bootstrap = {
      totalArtifacts: Number(hello.artifactCount),
      totalBytes: Number(hello.liveBytes),
      doneArtifacts: 0,
      doneBytes: 0,
      startedMs,
    };
    this.deps.log.info({ event: "replication.pass_started", peer: this.address, pass: this.stats.passes, resumeFrom: state.walkCursor !== "" }, "bootstrap pass started");
    // Each pass is a trace of its own: its pages, body fetches and the peer's serving spans.
    const passSpan = startSpan(SPAN.bootstrapPass, {
      parent: null,
      attributes: { [ATTR.peerAddress]: this.address, [ATTR.peerNodeId]: hello.nodeId, [ATTR.pass]: this.stats.passes, [ATTR.resume]: state.walkCursor !== "" },
    });
    let outcome: Awaited<ReturnType<PeerLink["bootstrapPass"]>>;
    try {
      outcome = await withContext(passSpan.ctx, () => this.bootstrapPass(state, key, signal));
    } catch (e) {
      endSpan(passSpan.span, e);
      throw e;
    }
    passSpan.span.setAttributes({
      [ATTR.applied]: outcome.applied,
      [ATTR.skipped]: outcome.skipped,
      [ATTR.missing]: outcome.missing,
      [ATTR.failed]: outcome.failed,
      [ATTR.abandoned]: outcome.abandoned,
      [ATTR.outcome]: outcome.failed === 0 && !outcome.abandoned ? "clean" : "retry",
    });
    endSpan(
      passSpan.span,
      outcome.failed === 0 && !outcome.abandoned ? undefined : new Error(outcome.abandoned ? "pass abandoned: no progress" : `${outcome.failed} artifact(s) failed; the pass will be retried`),
    );
    if (outcome.failed === 0 && !outcome.abandoned) {
      const seq = outcome.snapshotHead;
      await this.deps.store.putMeta(cursorKey(hello.nodeId), { incarnation: hello.incarnation, seq } satisfies Cursor);
      await this.deps.store.putMeta(key, null);
      this.deps.log.info(
        { event: "replication.pass_done", peer: this.address, pass: this.stats.passes, applied: outcome.applied, skipped: outcome.skipped, missing: outcome.missing, ms: Date.now() - startedMs },
        "bootstrap pass clean",
      );
      this.stats.bootstrap = undefined;
      this.passFailures = 0;
      return seq;
    }
    await this.passBackoff(signal, (delay) =>
      this.deps.log.warn(
        { event: "replication.pass_retry", peer: this.address, pass: this.stats.passes, failed: outcome.failed, applied: outcome.applied, abandoned: outcome.abandoned, retryInMs: delay },
        `${outcome.failed} artifact(s) failed this pass, ${outcome.applied} applied; retrying in ${delay} ms`,
      ),
    );
    return undefined;
  }

  private peerLost(during: "pass" | "follow", err: unknown): void {
    this.deps.log.warn({ event: "replication.peer_lost", peer: this.address, during, ...errFields(err) }, `lost ${this.address} during a ${during}; it ends and the peer is greeted again`);
  }

  /** Backs off before the next pass: one more pass that did not take, a longer wait. */
  private async passBackoff(signal: AbortSignal, announce?: (delayMs: number) => void): Promise<void> {
    this.passFailures++;
    const delay = backoffDelayMs(this.deps.options.retry, this.passFailures);
    announce?.(delay);
    this.setPhase("backoff");
    await sleep(delay, signal);
  }

  private async bootstrapPass(
    state: BootstrapState,
    key: string,
    signal: AbortSignal,
  ): Promise<{ snapshotHead: number; applied: number; skipped: number; missing: number; failed: number; abandoned: boolean }> {
    const passAc = new AbortController();
    setMaxListeners(0, passAc.signal);
    const onStop = (): void => passAc.abort(signal.reason);
    signal.addEventListener("abort", onStop, { once: true });
    const total = { applied: 0, skipped: 0, missing: 0, failed: 0 };
    let snapshotHead = state.snapshotHead;
    let abandoned = false;
    const noProgressMs = this.deps.options.passNoProgressMs;
    let lastTick = -1;
    let idleSince = Date.now();
    const watchdog = setInterval(() => {
      if (this.progressTicks !== lastTick) {
        lastTick = this.progressTicks;
        idleSince = Date.now();
      } else if (Date.now() - idleSince >= noProgressMs) {
        abandoned = true;
        this.deps.log.warn({ event: "replication.pass_abandoned", peer: this.address, noProgressMs }, "bootstrap pass made no progress: abandoned");
        passAc.abort(new NoProgressError(noProgressMs));
      }
    }, Math.max(50, Math.floor(noProgressMs / 4)));
    watchdog.unref();
    // Chaos scenario 7: a pass whose peer was killed or cut failed its queued bodies one by one
    // against the dead connection, ~22,000 warnings in a minute for one link. A lost peer now
    // stops the walk and what is queued (ctx.queueSignal); streams under way finish or resume.
    const ctx = this.fetchContext(
      passAc.signal,
      () => this.progressTicks++,
      (err) => this.peerLost("pass", err),
    );
    const passCtx = activeContext();
    // Pages complete out of order; the persisted walk cursor only moves past a page once it and
    // every page before it were applied without failures.
    const pending: Array<{ done: Promise<number>; nextCursor: string }> = [];
    let cleanPrefix = true;
    const settleOldest = async (): Promise<void> => {
      const p = pending.shift()!;
      const failed = await p.done;
      if (failed > 0) cleanPrefix = false;
      if (cleanPrefix) {
        await this.deps.store.putMeta(key, { ...state, snapshotHead, walkCursor: p.nextCursor } satisfies BootstrapState);
      }
    };
    let storeFailure: unknown;
    try {
      const pages = this.deps.client.listManifests(
        { cursor: state.walkCursor === "" ? new Uint8Array() : Buffer.from(state.walkCursor, "base64"), pageItems: this.deps.options.listPageItems, pageBytes: 4n << 20n },
        ctx.queueSignal,
      );
      for await (const page of pages) {
        this.progressTicks++;
        this.stats.lastContactMs = this.stats.lastProgressMs = Date.now();
        if (snapshotHead < 0) {
          snapshotHead = Number(page.snapshotHead);
          await this.deps.store.putMeta(key, { ...state, snapshotHead } satisfies BootstrapState);
        }
        const manifests: Manifest[] = [];
        for (const wm of page.manifests) {
          const m = manifestFromPeer(wm);
          if (m instanceof Error) {
            total.failed++;
            this.stats.failedCount++;
            this.fail(m);
          } else manifests.push(m);
        }
        const pageSpan = startSpan(SPAN.manifestPage, { parent: passCtx, attributes: { [ATTR.peerAddress]: this.address, [ATTR.items]: page.manifests.length } });
        const done = withContext(pageSpan.ctx, () => fetchBodies(ctx, manifests)).then((r) => {
          total.applied += r.applied;
          total.skipped += r.skipped;
          total.missing += r.missing;
          total.failed += r.failed;
          if (this.stats.bootstrap) this.stats.bootstrap.doneArtifacts += r.skipped;
          pageSpan.span.setAttributes({ [ATTR.applied]: r.applied, [ATTR.skipped]: r.skipped, [ATTR.missing]: r.missing, [ATTR.failed]: r.failed });
          endSpan(pageSpan.span, r.failed > 0 ? new Error(`${r.failed} of ${manifests.length} artifacts of the page failed`) : undefined);
          return r.failed;
        });
        done.catch((e: unknown) => {
          endSpan(pageSpan.span, e);
          storeFailure ??= e;
          passAc.abort(e);
        });
        pending.push({ done: done.catch(() => 1), nextCursor: Buffer.from(page.nextCursor).toString("base64") });
        while (pending.length >= this.deps.options.pagesInFlight) await settleOldest();
        if (page.done) break;
      }
      while (pending.length > 0) await settleOldest();
    } catch (e) {
      if (storeFailure) throw storeFailure;
      if (signal.aborted) throw e;
      if (!abandoned) {
        // The walk itself failed (stream cut, idle timeout): count it as a non-clean pass.
        total.failed++;
        this.fail(e);
        this.deps.log.warn({ event: "replication.walk_failed", peer: this.address, ...errFields(e) }, "manifest walk failed; the pass will be retried");
      }
      await Promise.allSettled(pending.map((p) => p.done));
    } finally {
      clearInterval(watchdog);
      signal.removeEventListener("abort", onStop);
    }
    if (storeFailure) throw storeFailure;
    return { snapshotHead: Math.max(0, snapshotHead), ...total, abandoned };
  }

  /** Tails the peer's feed from `from` until the stream fails or the link stops. */
  private async follow(hello: HelloResponse, from: number, signal: AbortSignal): Promise<void> {
    const session = startSpan(SPAN.followSession, { parent: null, attributes: { [ATTR.peerAddress]: this.address, [ATTR.peerNodeId]: hello.nodeId, [ATTR.fromSeq]: from } });
    try {
      await withContext(session.ctx, () => this.followIn(session.span, hello, from, signal));
    } catch (e) {
      endSpan(session.span, signal.aborted ? undefined : e);
      throw e;
    }
    endSpan(session.span);
  }

  private async followIn(session: Parameters<typeof linkTo>[0], hello: HelloResponse, from: number, signal: AbortSignal): Promise<void> {
    this.setPhase("following", { fromSeq: from });
    const headAtHello = Number(hello.feedHead);
    let cursor = from;
    const caughtUp = (): void => {
      if (cursor >= this.stats.headSeq) this.stats.lagSince = undefined;
      else this.stats.lagSince ??= Date.now();
      if (cursor >= headAtHello) this.reportInitialSync("caught-up");
    };
    caughtUp();
    // As in a pass, a body failure that says the peer is gone ends the session (once the
    // streams under way are done) instead of failing each body of the batch against the dead
    // connection.
    const ctx = this.fetchContext(signal, () => undefined, (err) => this.peerLost("follow", err));
    // Pages queue in the connection's buffers (up to its flow-control window) while their
    // bodies are fetched, so the head a page carries is as old as that backlog: a follower
    // thousands of changes behind reported a lag of a few (found by the soak scenario). Ask
    // the peer for its head now and then; an empty advertise address keeps membership out of it.
    const refresh = setInterval(() => {
      this.deps.client
        .hello({ nodeId: this.deps.self.nodeId, incarnation: this.deps.self.incarnation, advertiseAddress: "", capabilities: ["follow.v1"] }, signal)
        .then((h) => {
          if (h.incarnation !== hello.incarnation) return;
          this.stats.headSeq = Math.max(this.stats.headSeq, Number(h.feedHead));
          caughtUp();
        })
        .catch(() => undefined);
    }, this.deps.options.headRefreshMs);
    refresh.unref();
    try {
      await this.followPages(session, hello, cursor, signal, ctx, caughtUp, (c) => (cursor = c));
    } finally {
      clearInterval(refresh);
    }
  }

  private async followPages(
    session: Parameters<typeof linkTo>[0],
    hello: HelloResponse,
    from: number,
    signal: AbortSignal,
    ctx: ReturnType<PeerLink["fetchContext"]>,
    caughtUp: () => void,
    setCursor: (cursor: number) => void,
  ): Promise<void> {
    const store = this.deps.store;
    let cursor = from;
    const frames = this.deps.client.follow({ incarnation: hello.incarnation, afterSeq: BigInt(cursor), maxPageItems: this.deps.options.followPageItems }, signal);
    // Pages that arrive while the previous ones are being applied are applied together: one
    // fetch round and one cursor commit for all of them. Under a steady write rate a follower
    // that took pages one by one (each ~1-2 entries: a ReadBodies round trip, fsyncs, a cursor
    // commit) fell behind for good (bench C: lag p99 21 s at 200 puts/s).
    for await (const batch of readAhead(frames, FOLLOW_READ_AHEAD_FRAMES)) {
      this.stats.lastContactMs = this.stats.lastProgressMs = Date.now();
      const manifests: Manifest[] = [];
      let last: number | undefined;
      for (const frame of batch) {
        const f = frame.frame;
        if (f.case === "heartbeat") {
          this.stats.headSeq = Math.max(this.stats.headSeq, Number(f.value.headSeq));
          continue;
        }
        if (f.case !== "page") continue;
        this.stats.headSeq = Math.max(this.stats.headSeq, Number(f.value.headSeq));
        for (const e of f.value.entries) {
          const m = manifestFromPeer(e.manifest);
          if (m instanceof Error) throw new PeerRpcError("INTERNAL", `peer sent a bad feed entry at seq ${e.seq}: ${m.message}`);
          manifests.push(m);
          last = Number(e.seq);
        }
      }
      if (last === undefined) {
        caughtUp();
        continue;
      }
      // A trace per applied batch (linked to the session): a session lasts as long as the link,
      // and one trace holding every change ever followed would be unreadable.
      const page = startSpan(SPAN.followPage, {
        parent: null,
        links: linkTo(session),
        attributes: { [ATTR.peerAddress]: this.address, [ATTR.peerNodeId]: hello.nodeId, [ATTR.items]: manifests.length, [ATTR.fromSeq]: cursor, [ATTR.toSeq]: last },
      });
      try {
        const r = await withContext(page.ctx, () => fetchBodies(ctx, manifests));
        page.span.setAttributes({ [ATTR.applied]: r.applied, [ATTR.skipped]: r.skipped, [ATTR.missing]: r.missing, [ATTR.failed]: r.failed });
        if (ctx.queueSignal.aborted && !signal.aborted) throw ctx.queueSignal.reason;
        if (r.failed > 0) throw new Error(`${r.failed} of ${manifests.length} bodies of feed pages failed; resuming from seq ${cursor}`);
        cursor = last;
        setCursor(cursor);
        this.stats.cursorSeq = cursor;
        await store.putMeta(cursorKey(hello.nodeId), { incarnation: hello.incarnation, seq: cursor } satisfies Cursor);
      } catch (e) {
        endSpan(page.span, e);
        throw e;
      }
      endSpan(page.span);
      caughtUp();
    }
    throw new PeerRpcError("UNAVAILABLE", "peer ended the follow stream");
  }
}
