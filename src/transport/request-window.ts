/**
 * A bound on request bytes a peer client has sent on its connection that the server has not yet
 * taken (a request counts until its first response message arrives, or its call ends).
 *
 * Why: Node's HTTP/2 stops reading a socket while one of its own writes on it is pending. A
 * server writing bodies to a slow reader has a write pending; if the client at the same time has
 * more request bytes pending than the two kernel socket buffers between them hold, it stops
 * reading too, and neither write can finish: both sides idle until the per-message deadlines cut
 * every stream of the connection (chaos scenario 4: 16 ReadBodies requests of ~37 KB each
 * against a ~90 KB receive buffer, 30 s stalls, thousands of aborted streams). Keeping what the
 * client has in flight well below a socket buffer means its writes always complete, so it keeps
 * reading, and the server's writes drain.
 *
 * FIFO; a request larger than the whole window is admitted alone, so nothing waits forever
 * (the shared semaphore, util/fifo-semaphore.ts).
 */
import { FifoSemaphore } from "../util/fifo-semaphore.js";

/** Default bound: a fraction of the smallest socket buffers seen on these paths (~90 KB unread). */
export const DEFAULT_REQUEST_WINDOW_BYTES = 64 * 1024;

export class RequestWindow {
  private readonly sem: FifoSemaphore;

  constructor(readonly limitBytes: number = DEFAULT_REQUEST_WINDOW_BYTES) {
    if (!(limitBytes > 0)) throw new RangeError(`request window must be > 0 bytes, got ${limitBytes}`);
    this.sem = new FifoSemaphore(limitBytes);
  }

  /** Resolves with a release function once `bytes` fit; rejects with the signal's reason on abort. */
  acquire(bytes: number, signal: AbortSignal): Promise<() => void> {
    return this.sem.acquire(bytes, signal);
  }

  stats(): { limitBytes: number; usedBytes: number; peakBytes: number; waiting: number; waits: number } {
    const s = this.sem;
    return { limitBytes: this.limitBytes, usedBytes: s.used, peakBytes: s.peak, waiting: s.waiting, waits: s.waits };
  }
}
