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
 * whole, bounded by the staging budget) do not take slots. The queue is the shared FIFO
 * semaphore (util/fifo-semaphore.ts) with weight 1.
 */
import { FifoSemaphore } from "../util/fifo-semaphore.js";

export interface BodySlotStats {
  readonly slots: number;
  readonly held: number;
  readonly peakHeld: number;
  readonly waiting: number;
  /** Times an acquire had to wait. */
  readonly waits: number;
}

export class BodySlots {
  private readonly sem: FifoSemaphore;

  constructor(readonly slots: number) {
    if (!Number.isInteger(slots) || slots < 1) throw new RangeError(`body slots: want an integer >= 1, got ${slots}`);
    this.sem = new FifoSemaphore(slots);
  }

  /** Resolves to the slot's release function (idempotent). Rejects only if the signal aborts. */
  acquire(signal?: AbortSignal): Promise<() => void> {
    return this.sem.acquire(1, signal);
  }

  stats(): BodySlotStats {
    const s = this.sem;
    return { slots: this.slots, held: s.used, peakHeld: s.peak, waiting: s.waiting, waits: s.waits };
  }
}
