/**
 * Staging budget: bytes reserved per in-flight replicated body. A reservation that does not
 * fit WAITS (FIFO) instead of failing — the incident's bootstrap failed bodies on a full temp
 * budget and never converged. A body larger than the whole budget is admitted alone, so it
 * can never deadlock. The queue is the shared FIFO semaphore (util/fifo-semaphore.ts).
 */
import { FifoSemaphore } from "../util/fifo-semaphore.js";

export interface StagingStats {
  readonly budgetBytes: number;
  readonly reservedBytes: number;
  readonly peakReservedBytes: number;
  readonly waiting: number;
  /** Times a reservation had to wait. */
  readonly waits: number;
}

/** Transitions of the budget: fetches start waiting (exhausted), the last waiter got in (relieved). */
export type StagingPressure =
  | { readonly state: "exhausted"; readonly budgetBytes: number; readonly reservedBytes: number; readonly wantBytes: number }
  | { readonly state: "relieved"; readonly budgetBytes: number; readonly waitedMs: number };

export class StagingBudget {
  private readonly sem: FifoSemaphore;
  private exhaustedSince: number | undefined;

  constructor(
    readonly budgetBytes: number,
    /** Told when fetches start waiting and when the queue empties again (for a log line each). */
    onPressure?: (p: StagingPressure) => void,
  ) {
    if (!(budgetBytes > 0)) throw new RangeError(`staging budget must be > 0 bytes, got ${budgetBytes}`);
    this.sem = new FifoSemaphore(budgetBytes, {
      onQueueStart: (wantBytes, reservedBytes) => {
        this.exhaustedSince = Date.now();
        onPressure?.({ state: "exhausted", budgetBytes, reservedBytes, wantBytes });
      },
      onQueueEnd: () => {
        const waitedMs = Date.now() - (this.exhaustedSince ?? Date.now());
        this.exhaustedSince = undefined;
        onPressure?.({ state: "relieved", budgetBytes, waitedMs });
      },
    });
  }

  /** Reserves `bytes`; resolves to the release function. Rejects only if the signal aborts. */
  reserve(bytes: number, signal?: AbortSignal): Promise<() => void> {
    return this.sem.acquire(bytes, signal);
  }

  stats(): StagingStats {
    const s = this.sem;
    return { budgetBytes: this.budgetBytes, reservedBytes: s.used, peakReservedBytes: s.peak, waiting: s.waiting, waits: s.waits };
  }
}
