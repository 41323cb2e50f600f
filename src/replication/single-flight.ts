/**
 * Node-wide single-flight: an artifact offered by several peers is fetched once. A second
 * claimant gets the first one's promise and waits for it.
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
    this.inflight.set(key, promise);
    return { promise, leader: true };
  }

  has(key: string): boolean {
    return this.inflight.has(key);
  }
}
