/**
 * Serves one record's body (or a range of it) from its segment with positional reads. Owns the
 * read-side integrity rules:
 *   - truncation guard: before the first byte is yielded, the open file must cover the whole
 *     record (offset + prefix + body + trailer), else TruncatedError;
 *   - EOF before the expected length throws TruncatedError: never a short body;
 *   - every read that serves bytes verifies the whole body's CRC32 and holds back the last chunk
 *     it serves until the CRC matches, so neither a corrupt body nor a range of one ever reaches
 *     a consumer complete. A range read hashes the bytes before and after its range without
 *     sending them (one pass over the record);
 *   - a record that passed is remembered in a bounded LRU (`verifiedRecords`) keyed by the
 *     segment file and the record's offset, with the file's identity and change time (dev, ino,
 *     ctime in ns) and the record's length and CRC: a later read of the same unchanged file skips
 *     the hash, so hot ranges of sealed segments do not re-read whole records. Any write to the
 *     file (an append to an open segment, damage, a truncation, a new file under the same name)
 *     changes its ctime and the entry no longer matches, so the record is hashed again. The kernel
 *     stamps ctime from a coarse clock (a few ms), so a write just after a read could keep the
 *     ctime that read saw: a verification is remembered only when the file had not changed for
 *     `VERIFIED_QUIET_MS` before it (sealed segments; an open segment's appends keep it fresh).
 * The file handle stays open for the whole read, so a segment evicted (unlinked) mid-read keeps
 * serving on Linux.
 */
import { open, type FileHandle } from "node:fs/promises";
import { crc32 } from "node:zlib";
import { CorruptRecordError, TruncatedError } from "./errors.js";
import { PREFIX_BYTES, recordLength } from "./record-format.js";
import { abortedError } from "./writer-lanes.js";

export interface BodyLocation {
  readonly path: string;
  readonly recordOffset: number;
  readonly bodyLen: number;
  readonly trailerLen: number;
  readonly bodyCrc: number;
}

export interface BodyReadPlan extends BodyLocation {
  /** Offset within the body. */
  readonly offset: number;
  readonly length: number;
  readonly chunkBytes: number;
  readonly signal: AbortSignal | undefined;
  /** The segment file does not exist: returns the error to throw (NotFound when evicted). */
  readonly onMissing: () => Promise<Error>;
  /** The record failed a check: reports it, drops it from the index, returns the error to throw. */
  readonly onCorrupt: (error: CorruptRecordError) => Promise<Error>;
}

/** Records whose CRC passed, at most this many remembered (about 150 bytes each). */
export const VERIFIED_RECORDS_MAX = 8192;
/** A file changed more recently than this when a read began is verified but not remembered. */
export const VERIFIED_QUIET_MS = 1000;
/** Read size while hashing the bytes of a record that a range read does not send. */
const HASH_READ_BYTES = 1 << 20;

/** What must still hold for a remembered verification to stand. */
interface VerifiedStamp {
  readonly dev: bigint;
  readonly ino: bigint;
  readonly ctimeNs: bigint;
  readonly bodyLen: number;
  readonly bodyCrc: number;
}

interface FileStamp {
  readonly dev: bigint;
  readonly ino: bigint;
  readonly ctimeNs: bigint;
  readonly size: number;
  /** Unchanged for VERIFIED_QUIET_MS when stat'ed: a later write cannot carry the same ctime. */
  readonly quiet: boolean;
}

/** Bounded LRU of verified records (a Map keeps insertion order: a hit is re-inserted last). */
class VerifiedRecords {
  readonly #entries = new Map<string, VerifiedStamp>();

  constructor(readonly max: number) {}

  get size(): number {
    return this.#entries.size;
  }

  has(key: string, file: FileStamp, loc: BodyLocation): boolean {
    const e = this.#entries.get(key);
    if (!e) return false;
    if (e.dev !== file.dev || e.ino !== file.ino || e.ctimeNs !== file.ctimeNs || e.bodyLen !== loc.bodyLen || e.bodyCrc !== loc.bodyCrc) {
      this.#entries.delete(key);
      return false;
    }
    this.#entries.delete(key);
    this.#entries.set(key, e);
    return true;
  }

  add(key: string, file: FileStamp, loc: BodyLocation): void {
    this.#entries.delete(key);
    this.#entries.set(key, { dev: file.dev, ino: file.ino, ctimeNs: file.ctimeNs, bodyLen: loc.bodyLen, bodyCrc: loc.bodyCrc });
    while (this.#entries.size > this.max) {
      const oldest = this.#entries.keys().next();
      if (oldest.done === true) break;
      this.#entries.delete(oldest.value);
    }
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }

  clear(): void {
    this.#entries.clear();
  }
}

/** Process-wide: the key names the file, and the stamp ties it to one version of that file. */
export const verifiedRecords = new VerifiedRecords(VERIFIED_RECORDS_MAX);

function recordKey(loc: BodyLocation): string {
  return `${loc.path}\0${loc.recordOffset}`;
}

async function openForRead(plan: BodyReadPlan): Promise<FileHandle> {
  try {
    return await open(plan.path, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") throw await plan.onMissing();
    throw error;
  }
}

async function fileStamp(handle: FileHandle): Promise<FileStamp> {
  const nowNs = BigInt(Date.now()) * 1_000_000n;
  const s = await handle.stat({ bigint: true });
  const quiet = nowNs - s.ctimeNs > BigInt(VERIFIED_QUIET_MS) * 1_000_000n;
  return { dev: s.dev, ino: s.ino, ctimeNs: s.ctimeNs, size: Number(s.size), quiet };
}

export async function* readBody(plan: BodyReadPlan): AsyncGenerator<Uint8Array, void, undefined> {
  const handle = await openForRead(plan);
  const key = recordKey(plan);
  try {
    const recordEnd = plan.recordOffset + recordLength(plan.bodyLen, plan.trailerLen);
    const file = await fileStamp(handle);
    if (file.size < recordEnd) {
      verifiedRecords.delete(key);
      throw await plan.onCorrupt(
        new TruncatedError(
          `${plan.path} is ${file.size} bytes but the record at ${plan.recordOffset} needs ${recordEnd}: the segment was truncated`,
        ),
      );
    }
    const bodyStart = plan.recordOffset + PREFIX_BYTES;
    // Reading nothing serves no bytes to be wrong; a record verified on this file version serves
    // its range straight away.
    const verify = plan.length > 0 && !verifiedRecords.has(key, file, plan);

    /** Fills `chunk` from `position` or throws TruncatedError (never a short read). */
    const readFully = async (chunk: Uint8Array, want: number, position: number): Promise<void> => {
      let filled = 0;
      while (filled < want) {
        const { bytesRead } = await handle.read(chunk, filled, want - filled, position + filled);
        if (bytesRead === 0) {
          throw await plan.onCorrupt(
            new TruncatedError(
              `${plan.path} ended at ${position + filled} in the middle of a record body (expected ${want - filled} more bytes of this read)`,
            ),
          );
        }
        filled += bytesRead;
      }
    };
    let crc = 0;
    /** Hashes body bytes [from, to) without serving them. */
    const hashSpan = async (from: number, to: number): Promise<void> => {
      if (from >= to) return;
      const scratch = Buffer.allocUnsafe(Math.min(HASH_READ_BYTES, to - from));
      for (let at = from; at < to; ) {
        if (plan.signal?.aborted) throw abortedError(plan.signal, "read");
        const want = Math.min(scratch.length, to - at);
        await readFully(scratch, want, bodyStart + at);
        crc = crc32(want === scratch.length ? scratch : scratch.subarray(0, want), crc);
        at += want;
      }
    };

    if (verify) await hashSpan(0, plan.offset);
    let held: Uint8Array | undefined;
    let position = bodyStart + plan.offset;
    let remaining = plan.length;
    while (remaining > 0) {
      if (plan.signal?.aborted) throw abortedError(plan.signal, "read");
      const want = Math.min(plan.chunkBytes, remaining);
      const chunk = Buffer.allocUnsafe(want);
      await readFully(chunk, want, position);
      position += want;
      remaining -= want;
      if (verify) {
        crc = crc32(chunk, crc);
        if (held) yield held;
        held = chunk;
      } else {
        yield chunk;
      }
    }
    if (verify) {
      await hashSpan(plan.offset + plan.length, plan.bodyLen);
      if (crc >>> 0 !== plan.bodyCrc) {
        verifiedRecords.delete(key);
        throw await plan.onCorrupt(
          new CorruptRecordError(`body CRC mismatch for the record at ${plan.recordOffset} of ${plan.path}`),
        );
      }
      if (file.quiet) verifiedRecords.add(key, file, plan);
      if (held) yield held;
    }
  } finally {
    await handle.close();
  }
}
