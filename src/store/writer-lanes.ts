/**
 * Writer lanes: up to N active segments written concurrently, each owned by exactly one put at
 * a time. A put waits (FIFO, abortable) for a free lane; ownership ends when the put's record is
 * written, before it waits for fsync, so a slow fsync never holds a lane. Owns the lane pool and
 * its p-limit; what a lane writes is body-writer.ts's business.
 */
import pLimit, { type LimitFunction } from "p-limit";
import { AbortedError } from "./errors.js";
import type { ActiveSegment } from "./segment-file.js";

export interface Lane {
  readonly index: number;
  /** The lane's active segment; undefined until the lane's next put creates one. */
  segment: ActiveSegment | undefined;
}

export function abortedError(signal: AbortSignal, what: "put" | "apply" | "read"): AbortedError {
  const tail = what === "read" ? "" : "; nothing was stored";
  return new AbortedError(`${what} was aborted${tail}`, { cause: signal.reason });
}

export class WriterLanes {
  readonly lanes: readonly Lane[];
  readonly #free: Lane[];
  readonly #limit: LimitFunction;

  constructor(count: number) {
    this.lanes = Array.from({ length: count }, (_, index): Lane => ({ index, segment: undefined }));
    this.#free = [...this.lanes].reverse();
    this.#limit = pLimit(count);
  }

  /** Puts holding a lane now. */
  get activeCount(): number {
    return this.#limit.activeCount;
  }

  /** Puts waiting for a lane. */
  get pendingCount(): number {
    return this.#limit.pendingCount;
  }

  /**
   * Runs `fn` with exclusive ownership of a lane. Rejects with AbortedError as soon as `signal`
   * fires while still queued; once `fn` runs, it owns abort handling (it must leave the lane's
   * segment clean before returning).
   */
  run<T>(signal: AbortSignal | undefined, fn: (lane: Lane) => Promise<T>): Promise<T> {
    if (signal?.aborted) return Promise.reject(abortedError(signal, "put"));
    return new Promise<T>((resolve, reject) => {
      let started = false;
      const onAbort = (): void => {
        if (!started && signal) reject(abortedError(signal, "put"));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      void this.#limit(async () => {
        if (signal?.aborted) return; // already rejected while queued
        started = true;
        const lane = this.#free.pop();
        if (!lane) throw new Error("writer lane pool is inconsistent: no free lane under the limit");
        try {
          resolve(await fn(lane));
        } finally {
          this.#free.push(lane);
        }
      })
        .catch(reject)
        .finally(() => signal?.removeEventListener("abort", onAbort));
    });
  }
}
