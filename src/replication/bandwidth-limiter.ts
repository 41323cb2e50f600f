/**
 * Token bucket shared by every peer transfer of a node (bytes per second; 0 = off). Burst is
 * one second's worth, so a limit is met over any second-long window.
 */

export interface Clock {
  now(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const realClock: Clock = {
  now: () => performance.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      signal?.throwIfAborted();
      const t = setTimeout(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, ms);
      const onAbort = (): void => {
        clearTimeout(t);
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
    }),
};

export class BandwidthLimiter {
  private tokens: number;
  private last: number;
  private throttledMs = 0;
  /** Serialises waiters so a large take cannot starve behind many small ones. */
  private tail: Promise<void> = Promise.resolve();

  constructor(
    readonly bytesPerSecond: number,
    private readonly clock: Clock = realClock,
  ) {
    this.tokens = bytesPerSecond;
    this.last = clock.now();
  }

  get enabled(): boolean {
    return this.bytesPerSecond > 0;
  }

  /** Total time callers spent waiting for tokens. */
  throttledTimeMs(): number {
    return this.throttledMs;
  }

  private refill(): void {
    const now = this.clock.now();
    this.tokens = Math.min(this.bytesPerSecond, this.tokens + ((now - this.last) * this.bytesPerSecond) / 1000);
    this.last = now;
  }

  /** Waits until `bytes` may pass. Takes may exceed the burst; they then wait proportionally. */
  take(bytes: number, signal?: AbortSignal): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    const run = async (): Promise<void> => {
      this.refill();
      this.tokens -= bytes;
      if (this.tokens < 0) {
        const waitMs = (-this.tokens * 1000) / this.bytesPerSecond;
        this.throttledMs += waitMs;
        await this.clock.sleep(waitMs, signal);
      }
    };
    const p = this.tail.then(run);
    this.tail = p.catch(() => undefined);
    return p;
  }
}
