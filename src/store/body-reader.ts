/**
 * Serves one record's body (or a range of it) from its segment with positional reads. Owns the
 * read-side integrity rules:
 *   - truncation guard: before the first byte is yielded, the open file must cover the whole
 *     record (offset + prefix + body + trailer), else TruncatedError;
 *   - EOF before the expected length throws TruncatedError: never a short body;
 *   - a full read (offset 0, whole body) verifies the body CRC32 and holds back the last chunk
 *     until it matches, so a corrupt body never reaches a consumer complete;
 *   - range reads check coverage only (a CRC needs every byte).
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

async function openForRead(plan: BodyReadPlan): Promise<FileHandle> {
  try {
    return await open(plan.path, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") throw await plan.onMissing();
    throw error;
  }
}

export async function* readBody(plan: BodyReadPlan): AsyncGenerator<Uint8Array, void, undefined> {
  const handle = await openForRead(plan);
  try {
    const recordEnd = plan.recordOffset + recordLength(plan.bodyLen, plan.trailerLen);
    const { size } = await handle.stat();
    if (size < recordEnd) {
      throw await plan.onCorrupt(
        new TruncatedError(
          `${plan.path} is ${size} bytes but the record at ${plan.recordOffset} needs ${recordEnd}: the segment was truncated`,
        ),
      );
    }
    const verify = plan.offset === 0 && plan.length === plan.bodyLen;
    let crc = 0;
    let held: Uint8Array | undefined;
    let position = plan.recordOffset + PREFIX_BYTES + plan.offset;
    let remaining = plan.length;
    while (remaining > 0) {
      if (plan.signal?.aborted) throw abortedError(plan.signal, "read");
      const want = Math.min(plan.chunkBytes, remaining);
      const chunk = Buffer.allocUnsafe(want);
      let filled = 0;
      while (filled < want) {
        const { bytesRead } = await handle.read(chunk, filled, want - filled, position + filled);
        if (bytesRead === 0) {
          throw await plan.onCorrupt(
            new TruncatedError(
              `${plan.path} ended at ${position + filled} in the middle of a record body (expected ${remaining - filled} more bytes)`,
            ),
          );
        }
        filled += bytesRead;
      }
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
      if (crc >>> 0 !== plan.bodyCrc) {
        throw await plan.onCorrupt(
          new CorruptRecordError(`body CRC mismatch for the record at ${plan.recordOffset} of ${plan.path}`),
        );
      }
      if (held) yield held;
    }
  } finally {
    await handle.close();
  }
}
