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
 * FIFO; a request larger than the whole window is admitted alone, so nothing waits forever.
 */

/** Default bound: a fraction of the smallest socket buffers seen on these paths (~90 KB unread). */
export const DEFAULT_REQUEST_WINDOW_BYTES = 64 * 1024;

interface Waiter {
  readonly bytes: number;
  readonly grant: () => void;
}

export class RequestWindow {
  private used = 0;
  private peak = 0;
  private waits = 0;
  private readonly queue: Waiter[] = [];

  constructor(readonly limitBytes: number = DEFAULT_REQUEST_WINDOW_BYTES) {
    if (!(limitBytes > 0)) throw new RangeError(`request window must be > 0 bytes, got ${limitBytes}`);
  }

  /** Resolves with a release function once `bytes` fit; rejects with the signal's reason on abort. */
  acquire(bytes: number, signal: AbortSignal): Promise<() => void> {
    signal.throwIfAborted();
    if (this.queue.length === 0 && this.fits(bytes)) return Promise.resolve(this.take(bytes));
    this.waits++;
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        bytes,
        grant: () => {
          signal.removeEventListener("abort", onAbort);
          resolve(this.take(bytes));
        },
      };
      const onAbort = (): void => {
        const i = this.queue.indexOf(waiter);
        if (i >= 0) this.queue.splice(i, 1);
        this.pump();
        reject(signal.reason);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.queue.push(waiter);
    });
  }

  stats(): { limitBytes: number; usedBytes: number; peakBytes: number; waiting: number; waits: number } {
    return { limitBytes: this.limitBytes, usedBytes: this.used, peakBytes: this.peak, waiting: this.queue.length, waits: this.waits };
  }

  private fits(bytes: number): boolean {
    return this.used === 0 || this.used + bytes <= this.limitBytes;
  }

  private take(bytes: number): () => void {
    this.used += bytes;
    this.peak = Math.max(this.peak, this.used);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used -= bytes;
      this.pump();
    };
  }

  private pump(): void {
    while (this.queue.length > 0 && this.fits(this.queue[0]!.bytes)) this.queue.shift()!.grant();
  }
}
