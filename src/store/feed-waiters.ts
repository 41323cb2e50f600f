/**
 * Wakes waitForFeed callers when the feed head advances. Owns the waiter set: no polling, each
 * waiter is removed when it resolves, is aborted, or the store closes.
 */

interface Waiter {
  readonly afterSeq: number;
  readonly resolve: () => void;
  readonly reject: (reason: unknown) => void;
}

export class FeedWaiters {
  readonly #waiters = new Set<Waiter>();

  get size(): number {
    return this.#waiters.size;
  }

  /** Resolves once `head()` exceeds afterSeq; `head` is checked now and on every advance. */
  wait(afterSeq: number, head: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (head > afterSeq) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.#waiters.delete(waiter);
        reject(signal.reason);
      };
      const waiter: Waiter = {
        afterSeq,
        resolve: () => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        },
        reject: (reason) => {
          signal.removeEventListener("abort", onAbort);
          reject(reason);
        },
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.#waiters.add(waiter);
    });
  }

  advanced(head: number): void {
    for (const waiter of this.#waiters) {
      if (head > waiter.afterSeq) {
        this.#waiters.delete(waiter);
        waiter.resolve();
      }
    }
  }

  rejectAll(reason: unknown): void {
    for (const waiter of this.#waiters) waiter.reject(reason);
    this.#waiters.clear();
  }
}
