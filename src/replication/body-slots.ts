/**
 * Large-body stream slots, node-wide: a large body's ReadBodies stream is opened only while it
 * holds a slot, and gives the slot back once its last byte has been handed to the store. The
 * store writes through a fixed number of writer lanes (4 by default); a stream opened while
 * every lane is busy is not read, so its bytes pile up in the HTTP/2 stream window and
 * grpc-js's message queue (~48 MiB a stream with the 32 MiB peer window). With 16 streams on 4
 * lanes that was ~12 bodies waiting in memory (PERFORMANCE.md §8.3: 442 MiB peak for a
 * 512 MiB bootstrap). One slot per lane bounds it: large bodies buffered <= slots.
 *
 * FIFO; a waiting acquire is withdrawn when its signal aborts. Small bodies (batched, read
 * whole, bounded by the staging budget) do not take slots.
 */

export interface BodySlotStats {
  readonly slots: number;
  readonly held: number;
  readonly peakHeld: number;
  readonly waiting: number;
  /** Times an acquire had to wait. */
  readonly waits: number;
}

interface Waiter {
  readonly grant: () => void;
}

export class BodySlots {
  private held = 0;
  private peak = 0;
  private waits = 0;
  private readonly queue: Waiter[] = [];

  constructor(readonly slots: number) {
    if (!Number.isInteger(slots) || slots < 1) throw new RangeError(`body slots: want an integer >= 1, got ${slots}`);
  }

  private take(): () => void {
    this.held++;
    this.peak = Math.max(this.peak, this.held);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.held--;
      const next = this.queue.shift();
      next?.grant();
    };
  }

  /** Resolves to the slot's release function (idempotent). Rejects only if the signal aborts. */
  async acquire(signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted();
    if (this.queue.length === 0 && this.held < this.slots) return this.take();
    this.waits++;
    return new Promise<() => void>((resolve, reject) => {
      const waiter: Waiter = {
        grant: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve(this.take());
        },
      };
      const onAbort = (): void => {
        const i = this.queue.indexOf(waiter);
        if (i >= 0) this.queue.splice(i, 1);
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.queue.push(waiter);
    });
  }

  stats(): BodySlotStats {
    return { slots: this.slots, held: this.held, peakHeld: this.peak, waiting: this.queue.length, waits: this.waits };
  }
}
