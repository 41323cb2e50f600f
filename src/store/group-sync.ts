/**
 * Group commit for one segment file: every writer waiting for its bytes to be durable is served
 * by the next single fdatasync, which covers everything written before it started. No lock is
 * held across the fsync; writers keep appending while it runs and are picked up by the next one.
 *
 * After a failed fdatasync the file's durability is unknown (the kernel may have dropped the
 * dirty pages), so the syncer stays failed: every later wait rejects and the segment is retired.
 */
import { StoreIoError } from "./errors.js";

export class GroupSync {
  /** Bytes known durable: [0, synced). */
  #synced: number;
  #running: Promise<void> | undefined;
  #failure: StoreIoError | undefined;
  /** Lowest truncation point seen while the current fdatasync runs. */
  #floorDuringRun = Number.POSITIVE_INFINITY;
  readonly #currentEnd: () => number;
  readonly #datasync: () => Promise<void>;
  readonly #label: string;

  constructor(options: { syncedTo: number; currentEnd: () => number; datasync: () => Promise<void>; label: string }) {
    this.#synced = options.syncedTo;
    this.#currentEnd = options.currentEnd;
    this.#datasync = options.datasync;
    this.#label = options.label;
  }

  get syncedTo(): number {
    return this.#synced;
  }

  get failure(): StoreIoError | undefined {
    return this.#failure;
  }

  /** Resolves once bytes [0, end) are durable. */
  async syncTo(end: number): Promise<void> {
    while (this.#synced < end) {
      if (this.#failure) throw this.#failure;
      if (this.#currentEnd() < end) {
        throw new StoreIoError(`${this.#label} is shorter than ${end} bytes: the bytes to sync were truncated`);
      }
      this.#running ??= this.#runOnce();
      await this.#running;
    }
    if (this.#failure) throw this.#failure;
  }

  /** The unsynced tail was cut back to `to`: bytes past it are no longer covered by any sync. */
  noteTruncate(to: number): void {
    if (to < this.#synced) this.#synced = to;
    if (to < this.#floorDuringRun) this.#floorDuringRun = to;
  }

  /** Resolves when no fdatasync is running (for close). */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  async #runOnce(): Promise<void> {
    const target = this.#currentEnd();
    this.#floorDuringRun = target;
    try {
      await this.#datasync();
      // Bytes truncated while the sync ran may have been rewritten with different content after
      // the sync captured them; only the part below the lowest truncation point is covered.
      const covered = Math.min(target, this.#floorDuringRun);
      if (covered > this.#synced) this.#synced = covered;
    } catch (error) {
      this.#failure = new StoreIoError(`fdatasync of ${this.#label} failed; the segment is retired`, { cause: error });
    } finally {
      this.#floorDuringRun = Number.POSITIVE_INFINITY;
      this.#running = undefined;
    }
  }
}
