/**
 * Staging budget: bytes reserved per in-flight replicated body. A reservation that does not
 * fit WAITS (FIFO) instead of failing — the incident's bootstrap failed bodies on a full temp
 * budget and never converged. A body larger than the whole budget is admitted alone, so it
 * can never deadlock.
 */

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

interface Waiter {
  readonly bytes: number;
  readonly resolve: () => void;
  readonly reject: (e: unknown) => void;
}

export class StagingBudget {
  private reserved = 0;
  private peak = 0;
  private waits = 0;
  private readonly queue: Waiter[] = [];
  private exhaustedSince: number | undefined;

  constructor(
    readonly budgetBytes: number,
    /** Told when fetches start waiting and when the queue empties again (for a log line each). */
    private readonly onPressure?: (p: StagingPressure) => void,
  ) {
    if (!(budgetBytes > 0)) throw new RangeError(`staging budget must be > 0 bytes, got ${budgetBytes}`);
  }

  private fits(bytes: number): boolean {
    return this.reserved === 0 || this.reserved + bytes <= this.budgetBytes;
  }

  private take(bytes: number): () => void {
    this.reserved += bytes;
    this.peak = Math.max(this.peak, this.reserved);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.reserved -= bytes;
      this.pump();
    };
  }

  private pump(): void {
    while (this.queue.length > 0 && this.fits(this.queue[0]!.bytes)) {
      const w = this.queue.shift()!;
      w.resolve();
    }
    if (this.queue.length === 0 && this.exhaustedSince !== undefined) {
      const waitedMs = Date.now() - this.exhaustedSince;
      this.exhaustedSince = undefined;
      this.onPressure?.({ state: "relieved", budgetBytes: this.budgetBytes, waitedMs });
    }
  }

  /** Reserves `bytes`; resolves to the release function. Rejects only if the signal aborts. */
  async reserve(bytes: number, signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted();
    if (this.queue.length === 0 && this.fits(bytes)) return this.take(bytes);
    this.waits++;
    if (this.exhaustedSince === undefined) {
      this.exhaustedSince = Date.now();
      this.onPressure?.({ state: "exhausted", budgetBytes: this.budgetBytes, reservedBytes: this.reserved, wantBytes: bytes });
    }
    await new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        bytes,
        resolve: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
        reject,
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
    return this.take(bytes);
  }

  stats(): StagingStats {
    return { budgetBytes: this.budgetBytes, reservedBytes: this.reserved, peakReservedBytes: this.peak, waiting: this.queue.length, waits: this.waits };
  }
}
