/**
 * Hybrid logical clock for artifact versions: (unix ms << 16n) | counter. Owns only the clock
 * arithmetic; the store persists `latest` in the same index transaction as every versioned
 * write and feeds recovered and replicated versions back through `observe`, so versions stay
 * monotonic across restarts and a clock that steps backwards.
 */

export const HLC_COUNTER_BITS = 16n;
export const MAX_VERSION = (1n << 64n) - 1n;

export class HybridClock {
  #latest: bigint;
  readonly #nowMs: () => number;

  constructor(latest: bigint = 0n, nowMs: () => number = Date.now) {
    this.#latest = latest;
    this.#nowMs = nowMs;
  }

  /** The largest version issued or observed. */
  get latest(): bigint {
    return this.#latest;
  }

  /** A version greater than every version issued or observed so far. */
  now(): bigint {
    const physical = BigInt(Math.max(0, Math.floor(this.#nowMs()))) << HLC_COUNTER_BITS;
    // A burst of more than 65,536 versions in one millisecond carries into the ms field: still
    // monotonic, and the clock catches up once the burst ends.
    this.#latest = physical > this.#latest ? physical : this.#latest + 1n;
    return this.#latest;
  }

  /** Folds in a version seen elsewhere (a replicated write, a recovered record). */
  observe(version: bigint): void {
    if (version > this.#latest) this.#latest = version;
  }
}
