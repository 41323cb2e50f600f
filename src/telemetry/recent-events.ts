/**
 * The last warnings and errors a node logged, kept in memory (a bounded ring) for the status
 * page: an operator opening it sees what went wrong lately without reading the log stream.
 */

export interface RecentEvent {
  /** Unix ms. */
  readonly time: number;
  readonly level: "warn" | "error" | "fatal";
  /** The log line's `event` field ("replication.retry", ...), "" when it has none. */
  readonly event: string;
  readonly msg: string;
  /** The error's cause chain, when the line carried one. */
  readonly cause: string;
  /** The peer address the line is about, when it names one. */
  readonly peer: string;
}

export const DEFAULT_RECENT_EVENTS = 50;

export class RecentEvents {
  private readonly ring: RecentEvent[] = [];

  constructor(readonly capacity = DEFAULT_RECENT_EVENTS) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a whole number >= 1, got ${capacity}`);
  }

  add(e: RecentEvent): void {
    this.ring.push(e);
    if (this.ring.length > this.capacity) this.ring.splice(0, this.ring.length - this.capacity);
  }

  /** Newest first. */
  list(): RecentEvent[] {
    return [...this.ring].reverse();
  }

  /** Records a pino log call (fields object and message) at `level`. */
  addLogCall(level: RecentEvent["level"], fields: unknown, msg: unknown): void {
    const f = typeof fields === "object" && fields !== null ? (fields as Record<string, unknown>) : {};
    const text = typeof msg === "string" ? msg : typeof fields === "string" ? fields : "";
    const str = (v: unknown): string => (typeof v === "string" ? v : "");
    this.add({ time: Date.now(), level, event: str(f["event"]), msg: text, cause: str(f["cause"]), peer: str(f["peer"]) || str(f["address"]) });
  }
}
