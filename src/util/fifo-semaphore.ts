/**
 * A weighted FIFO semaphore: `acquire(weight)` resolves once the weight fits under the limit and
 * every earlier waiter got in; a weight larger than the whole limit is admitted alone, so nothing
 * waits forever. A waiter whose signal aborts leaves the queue (and may let the next one in).
 * The staging budget (bytes), the large-body slots (count) and the peer client's request window
 * (bytes) are this mechanism with their own names and stats.
 */

export interface SemaphoreHooks {
  /** An acquire had to wait while nobody was waiting before it (the queue starts). */
  onQueueStart?(weight: number, used: number): void;
  /** The last waiter got in or left: the queue is empty again. */
  onQueueEnd?(): void;
}

interface Waiter {
  readonly weight: number;
  readonly grant: () => void;
}

export class FifoSemaphore {
  private usedNow = 0;
  private peakUsed = 0;
  private waitCount = 0;
  private readonly queue: Waiter[] = [];
  /** Between onQueueStart and onQueueEnd. */
  private queued = false;

  constructor(
    readonly limit: number,
    private readonly hooks: SemaphoreHooks = {},
  ) {
    if (!(limit > 0)) throw new RangeError(`semaphore limit must be > 0, got ${limit}`);
  }

  get used(): number {
    return this.usedNow;
  }
  get peak(): number {
    return this.peakUsed;
  }
  get waiting(): number {
    return this.queue.length;
  }
  /** Times an acquire had to wait. */
  get waits(): number {
    return this.waitCount;
  }

  /** Resolves to the release function (idempotent); rejects with the signal's reason on abort. */
  acquire(weight: number, signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted();
    if (this.queue.length === 0 && this.fits(weight)) return Promise.resolve(this.take(weight));
    this.waitCount++;
    if (!this.queued) {
      this.queued = true;
      this.hooks.onQueueStart?.(weight, this.usedNow);
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        weight,
        grant: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve(this.take(weight));
        },
      };
      const onAbort = (): void => {
        const i = this.queue.indexOf(waiter);
        if (i >= 0) this.queue.splice(i, 1);
        reject(signal!.reason);
        this.pump();
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.queue.push(waiter);
    });
  }

  private fits(weight: number): boolean {
    return this.usedNow === 0 || this.usedNow + weight <= this.limit;
  }

  private take(weight: number): () => void {
    this.usedNow += weight;
    this.peakUsed = Math.max(this.peakUsed, this.usedNow);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.usedNow -= weight;
      this.pump();
    };
  }

  private pump(): void {
    while (this.queue.length > 0 && this.fits(this.queue[0]!.weight)) this.queue.shift()!.grant();
    if (this.queued && this.queue.length === 0) {
      this.queued = false;
      this.hooks.onQueueEnd?.();
    }
  }
}
