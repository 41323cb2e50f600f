/**
 * Retry as a policy object: exponential backoff with full jitter, capped. Used for passes
 * that were not clean and for reconnecting to a peer (our own retry rate must stay far below
 * peers' reset limits, see reliability.md §3.3).
 */
export interface RetryPolicy {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly multiplier: number;
  /** 0 = no jitter, 1 = full jitter (uniform in [0, delay]). */
  readonly jitter: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { initialMs: 500, maxMs: 30_000, multiplier: 2, jitter: 0.5 };

/** Delay before attempt `attempt` (1-based count of failures so far). */
export function backoffDelayMs(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  const base = Math.min(policy.maxMs, policy.initialMs * policy.multiplier ** Math.max(0, attempt - 1));
  return Math.round(base * (1 - policy.jitter * random()));
}
