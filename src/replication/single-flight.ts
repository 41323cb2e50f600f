/**
 * Node-wide single-flight: an artifact offered by several peers is fetched once. A second
 * claimant gets the first one's promise and waits for it — on its own signal (followerWait),
 * and when the first one's fetch fails the second fetches it itself from its own peer
 * (fetcher.ts): a stalled or vanished peer must not fail, or hold up, the passes of links to
 * healthy ones.
 */
export class SingleFlight<T> {
  private readonly inflight = new Map<string, Promise<T>>();

  get size(): number {
    return this.inflight.size;
  }

  /** Returns the running promise for `key`, or starts `run` and registers it. */
  claim(key: string, run: () => Promise<T>): { promise: Promise<T>; leader: boolean } {
    const existing = this.inflight.get(key);
    if (existing) return { promise: existing, leader: false };
    const promise = run().finally(() => this.inflight.delete(key));
    // A failure is its waiters' to handle; a flight nobody else joined has none.
    promise.catch(() => undefined);
    this.inflight.set(key, promise);
    return { promise, leader: true };
  }

  has(key: string): boolean {
    return this.inflight.has(key);
  }
}

/**
 * A follower's wait for a flight another link leads: settles with the flight, or rejects with
 * `signal`'s reason as soon as it aborts (the follower's pass was abandoned or its link
 * stopped), leaving no listener behind either way.
 */
export function followerWait<T>(flight: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    flight.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}
