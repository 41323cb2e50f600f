/**
 * Fetches again, from a peer, bodies this node lost. When a record fails a check (body CRC,
 * a truncated or missing segment file), the store drops its index entry and reports its
 * manifest; without a repair the artifact would read NOT_FOUND here until some bootstrap pass
 * happened to bring it back, while every peer still holds it.
 *
 * A repair is keyed by artifact id and done as soon as the store holds the manifest again
 * (Store.has), whoever brought it back: this repairer, a pass, the feed, a client's put. Each
 * round asks the connected peers in turn for what is still missing; what no peer could give
 * is retried with backoff and given up after `maxAttempts` rounds (logged, counted). Rounds
 * wait while no peer is connected: that costs no attempt. Pending repairs are bounded
 * (`maxPending`); a report beyond it is refused and counted, never queued without limit.
 */
import type { Manifest, Store } from "../store/types.js";
import { errFields, type Logger } from "../telemetry/logger.js";
import type { FetchResult } from "./fetcher.js";
import { backoffDelayMs, type RetryPolicy } from "./retry-policy.js";

/** What the repairer needs of a peer link (PeerLink implements it). */
export interface RepairLink {
  readonly address: string;
  /** True while the link talks to its peer. */
  readonly connected: boolean;
  repair(manifests: readonly Manifest[]): Promise<FetchResult>;
}

export interface RepairerOptions {
  readonly store: Pick<Store, "has">;
  /** The links to ask, read at each round. */
  readonly links: () => readonly RepairLink[];
  readonly log: Logger;
  /** Delay before a round retries what no peer gave. Default DEFAULT_REPAIR_RETRY. */
  readonly retry?: RetryPolicy;
  /** Rounds with a connected peer before a repair is given up. Default 10. */
  readonly maxAttempts?: number;
  /** Repairs pending at once. Default 10,000. */
  readonly maxPending?: number;
  /** Manifests per ReadBodies call. Default 1,024. */
  readonly batch?: number;
}

export const DEFAULT_REPAIR_RETRY: RetryPolicy = { initialMs: 1000, maxMs: 60_000, multiplier: 2, jitter: 0.5 };

export interface RepairStats {
  /** Repairs waiting for a round. */
  readonly pending: number;
  /** Lost bodies held again (by any path). */
  readonly repaired: number;
  /** Given up after maxAttempts rounds with a connected peer and no body. */
  readonly gaveUp: number;
  /** Reports refused because maxPending repairs were already waiting. */
  readonly refused: number;
}

interface Pending {
  manifest: Manifest;
  attempts: number;
  dueMs: number;
}

const idOf = (m: Manifest): string => `${m.namespace}\u0000${m.kind}\u0000${m.key}`;

export class Repairer {
  readonly #opts: RepairerOptions;
  readonly #retry: RetryPolicy;
  readonly #maxAttempts: number;
  readonly #maxPending: number;
  readonly #batch: number;
  readonly #pending = new Map<string, Pending>();
  #repaired = 0;
  #gaveUp = 0;
  #refused = 0;
  #timer: NodeJS.Timeout | undefined;
  #timerDueMs = Infinity;
  #round: Promise<void> | undefined;
  #closed = false;
  readonly #idleWaiters: Array<() => void> = [];

  constructor(opts: RepairerOptions) {
    this.#opts = opts;
    this.#retry = opts.retry ?? DEFAULT_REPAIR_RETRY;
    this.#maxAttempts = opts.maxAttempts ?? 10;
    this.#maxPending = opts.maxPending ?? 10_000;
    this.#batch = opts.batch ?? 1024;
  }

  stats(): RepairStats {
    return { pending: this.#pending.size, repaired: this.#repaired, gaveUp: this.#gaveUp, refused: this.#refused };
  }

  /** Resolves once no repair is pending and no round runs (tests and tools wait on it). */
  idle(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #isIdle(): boolean {
    return this.#pending.size === 0 && this.#round === undefined;
  }

  /** A body this node lost: fetch it again from a peer. */
  enqueue(manifest: Manifest): void {
    if (this.#closed) return;
    const id = idOf(manifest);
    const known = this.#pending.get(id);
    if (known) {
      // A newer version of the same key lost too: the newer one is what to fetch.
      if (manifest.version > known.manifest.version) known.manifest = manifest;
      return;
    }
    if (this.#pending.size >= this.#maxPending) {
      this.#refused++;
      this.#opts.log.error(
        { event: "replication.repair_refused", namespace: manifest.namespace, key: manifest.key, pending: this.#pending.size, refusedTotal: this.#refused },
        `${this.#pending.size} repairs already pending: ${manifest.key} is not queued (a bootstrap pass brings it back)`,
      );
      return;
    }
    this.#pending.set(id, { manifest, attempts: 0, dueMs: Date.now() });
    this.#schedule(0);
  }

  /** Stops scheduling rounds and waits for the one under way (links being stopped end it). */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#round;
  }

  #schedule(delayMs: number): void {
    if (this.#closed) return;
    const due = Date.now() + delayMs;
    if (this.#timer && this.#timerDueMs <= due) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timerDueMs = due;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timerDueMs = Infinity;
      if (this.#round) return; // the round under way schedules the next one when it ends
      this.#round = this.#runRound()
        .catch((e: unknown) => this.#opts.log.error({ event: "replication.repair_round_failed", ...errFields(e) }, "repair round failed"))
        .finally(() => {
          this.#round = undefined;
          this.#scheduleNext();
          if (this.#isIdle()) for (const resolve of this.#idleWaiters.splice(0)) resolve();
        });
    }, delayMs);
    this.#timer.unref();
  }

  #scheduleNext(): void {
    let next = Infinity;
    for (const p of this.#pending.values()) next = Math.min(next, p.dueMs);
    if (next !== Infinity) this.#schedule(Math.max(0, next - Date.now()));
  }

  #settleHeld(due: Pending[], by: string): Pending[] {
    const left: Pending[] = [];
    for (const p of due) {
      if (!this.#opts.store.has(p.manifest)) {
        left.push(p);
        continue;
      }
      this.#pending.delete(idOf(p.manifest));
      this.#repaired++;
      const m = p.manifest;
      this.#opts.log.info({ event: "replication.repaired", by, namespace: m.namespace, key: m.key, digest: m.digest, size: m.size }, `lost body ${m.key} held again (${by})`);
    }
    return left;
  }

  async #runRound(): Promise<void> {
    const now = Date.now();
    let due = this.#settleHeld(
      [...this.#pending.values()].filter((p) => p.dueMs <= now),
      "already back",
    );
    if (due.length === 0) return;
    const links = this.#opts.links().filter((l) => l.connected);
    if (links.length === 0) {
      // No peer to ask: wait without spending an attempt.
      const retryAt = Date.now() + this.#retry.initialMs;
      for (const p of due) p.dueMs = retryAt;
      return;
    }
    for (const link of links) {
      for (let i = 0; i < due.length; i += this.#batch) {
        const batch = due.slice(i, i + this.#batch).map((p) => p.manifest);
        try {
          await link.repair(batch);
        } catch (e) {
          this.#opts.log.warn({ event: "replication.repair_failed", peer: link.address, bodies: batch.length, ...errFields(e) }, `repair of ${batch.length} bodies from ${link.address} failed`);
        }
      }
      due = this.#settleHeld(due, `from ${link.address}`);
      if (due.length === 0 || this.#closed) return;
    }
    for (const p of due) {
      p.attempts++;
      if (p.attempts >= this.#maxAttempts) {
        this.#pending.delete(idOf(p.manifest));
        this.#gaveUp++;
        const m = p.manifest;
        this.#opts.log.error(
          { event: "replication.repair_gave_up", namespace: m.namespace, key: m.key, digest: m.digest, attempts: p.attempts, peers: links.map((l) => l.address) },
          `no peer gave back lost body ${m.key} in ${p.attempts} rounds: given up`,
        );
      } else {
        p.dueMs = Date.now() + backoffDelayMs(this.#retry, p.attempts);
      }
    }
  }
}
