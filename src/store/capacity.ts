/**
 * The byte budget. Counts segment bytes on disk (live and dead records alike, since that is what
 * fills the disk) plus bytes reserved by writes in flight, and evicts whole sealed segments,
 * least recently used first, to make room. Owns the accounting and the eviction decision loop;
 * the eviction itself (index + unlink) is the store's callback.
 */
import pLimit from "p-limit";
import { NoSpaceError } from "./errors.js";
import type { SpaceReservation } from "./body-writer.js";

export interface Evictor {
  /** Bytes in segments that could be evicted now (sealed, not already being evicted). */
  evictableBytes(): number;
  /** Evicts the least recently used sealed segment; false when there is none. */
  evictOne(): Promise<boolean>;
}

export class CapacityGovernor {
  readonly capacityBytes: number;
  #diskBytes: number;
  #reservedBytes = 0;
  readonly #evictor: Evictor;
  /** One eviction decision at a time, so concurrent writers do not evict twice for one need. */
  readonly #mutex = pLimit(1);

  constructor(capacityBytes: number, diskBytes: number, evictor: Evictor) {
    this.capacityBytes = capacityBytes;
    this.#diskBytes = diskBytes;
    this.#evictor = evictor;
  }

  get diskBytes(): number {
    return this.#diskBytes;
  }

  get reservedBytes(): number {
    return this.#reservedBytes;
  }

  /** Bytes that left the disk (an evicted segment, a truncated tail found at open). */
  released(bytes: number): void {
    this.#diskBytes -= bytes;
  }

  reservation(): Reservation {
    return new Reservation(this);
  }

  /** @internal Grows the reservation total by `bytes`, evicting first when over budget. */
  async grow(bytes: number): Promise<void> {
    if (this.capacityBytes === 0) {
      this.#reservedBytes += bytes;
      return;
    }
    await this.#mutex(async () => {
      const over = (): boolean => this.#diskBytes + this.#reservedBytes + bytes > this.capacityBytes;
      if (over() && this.#diskBytes - this.#evictor.evictableBytes() + this.#reservedBytes + bytes > this.capacityBytes) {
        // Even evicting everything evictable would not make room: refuse without evicting.
        throw this.#noSpace(bytes);
      }
      while (over()) {
        if (!(await this.#evictor.evictOne())) throw this.#noSpace(bytes);
      }
      this.#reservedBytes += bytes;
    });
  }

  /** @internal */
  settle(heldBytes: number, writtenBytes: number): void {
    this.#reservedBytes -= heldBytes;
    this.#diskBytes += writtenBytes;
  }

  #noSpace(bytes: number): NoSpaceError {
    return new NoSpaceError(
      `store capacity of ${this.capacityBytes} bytes cannot fit ${bytes} more: ${this.#diskBytes} bytes on disk, ` +
        `${this.#reservedBytes} reserved by writes in flight, ${this.#evictor.evictableBytes()} evictable; ` +
        `raise capacityBytes, or lower segmentMaxBytes so more data sits in evictable sealed segments`,
    );
  }
}

/** The capacity one write holds; grows as its record grows and is settled exactly once. */
export class Reservation implements SpaceReservation {
  #held = 0;
  #settled = false;
  readonly #governor: CapacityGovernor;

  constructor(governor: CapacityGovernor) {
    this.#governor = governor;
  }

  async ensure(totalRecordBytes: number): Promise<void> {
    if (totalRecordBytes <= this.#held) return;
    const need = totalRecordBytes - this.#held;
    await this.#governor.grow(need);
    this.#held += need;
  }

  /** The write ended with `writtenBytes` left on disk (0 when it was cut back). */
  settle(writtenBytes: number): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#governor.settle(this.#held, writtenBytes);
    this.#held = 0;
  }
}
