/**
 * Free-space admission for writes of a known size. Every write that declared its size claims it
 * here before it queues for a writer lane, and reports its bytes as it writes them; a new write
 * is refused at once when the filesystem's free space, less what the writes already admitted
 * still have to write, cannot hold it plus a margin.
 *
 * Why: the filesystem's free space alone does not say whether a put will fit. With 64 uploads
 * on a nearly full disk, each one saw room (nothing written yet), queued behind the others for
 * one of the 4 writer lanes, and learnt the disk was full only at its turn: refusals took up to
 * ~1.2 s (chaos 12 at full size, RESOURCE_EXHAUSTED asked within 1 s). With the claims, the
 * writes that cannot fit are refused before they wait for anything.
 *
 * Bytes counted as written are the ones a write is about to write (its reservation's high-water
 * mark), so a claim never makes the estimate stricter than the disk by more than one chunk per
 * lane; the margin covers that and the index pages.
 */
import { NoSpaceError } from "./errors.js";

export interface SpaceClaim {
  /** The write has reached this many bytes of its record (monotonic; capped at the claim). */
  progress(recordBytes: number): void;
  /**
   * Tests the claim again against `freeBytes` (once the write holds a lane, the disk may have
   * filled meanwhile); throws NoSpaceError like admit().
   */
  recheck(freeBytes: number | undefined): void;
  /** The write ended (stored, refused or failed): it promises nothing more. Idempotent. */
  release(): void;
}

export class SpaceClaims {
  /** Bytes admitted writes still have to write. */
  #unwritten = 0;
  readonly #marginBytes: number;

  constructor(marginBytes: number) {
    this.#marginBytes = marginBytes;
  }

  /** Bytes promised to admitted writes and not yet written. */
  get unwrittenBytes(): number {
    return this.#unwritten;
  }

  /**
   * Admits a write of `recordBytes` (0 when its size is unknown) when `freeBytes`, the
   * filesystem's free space now, less the other writes' unwritten bytes leaves room for it and
   * the margin; throws NoSpaceError otherwise. `freeBytes` undefined (statfs failed) admits: the
   * write itself will say.
   */
  admit(recordBytes: number, freeBytes: number | undefined): SpaceClaim {
    this.#check(recordBytes, freeBytes, this.#unwritten);
    let remaining = recordBytes;
    let written = 0;
    this.#unwritten += remaining;
    return {
      progress: (bytes: number): void => {
        if (bytes <= written) return;
        const step = Math.min(bytes - written, remaining);
        written = bytes;
        remaining -= step;
        this.#unwritten -= step;
      },
      recheck: (free: number | undefined): void => this.#check(remaining, free, this.#unwritten - remaining),
      release: (): void => {
        this.#unwritten -= remaining;
        remaining = 0;
      },
    };
  }

  #check(recordBytes: number, freeBytes: number | undefined, promised: number): void {
    if (freeBytes === undefined) return;
    if (freeBytes - promised < recordBytes + this.#marginBytes) {
      throw new NoSpaceError(
        `no space left on the device: ${freeBytes} bytes free, ${promised} of them promised to writes in flight, ` +
          `for a ${recordBytes}-byte record (plus a ${this.#marginBytes}-byte margin); nothing was stored`,
      );
    }
  }
}
