/**
 * Streams one record into the tail of a lane's active segment: zero prefix, body (hashed and
 * CRC'd incrementally, never held whole: at most one WRITE_BUFFER_BYTES buffer coalesces small
 * chunks), trailer, then the final prefix. On any failure the segment is cut back to where the
 * record started, which is allowed because the caller owns the lane and therefore the unsynced
 * tail. Owns nothing but this one write; syncing and indexing happen in store.ts.
 */
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import { DigestMismatchError, InvalidArgumentError, NoSpaceError, SizeMismatchError, StoreError, StoreIoError } from "./errors.js";
import { encodePrefix, encodeTrailer, PREFIX_BYTES, recordLength, TRAILER_MAX_BYTES, trailerCrc } from "./record-format.js";
import type { ActiveSegment } from "./segment-file.js";
import type { Manifest } from "./types.js";
import type { Failpoints } from "../util/failpoints.js";
import { abortedError } from "./writer-lanes.js";

/** Small chunks are copied into one buffer of this size; big chunks are written directly. */
export const WRITE_BUFFER_BYTES = 1024 * 1024;

export interface RecordSpec {
  /** Refuse the body unless it hashes to this (CAS key, replicated digest). */
  readonly expectDigest?: string | undefined;
  /** Refuse the body unless it is exactly this long. */
  readonly expectSize?: number | undefined;
  /** Builds the manifest once the body is complete: the moment a client put is versioned. */
  readonly finish: (digest: string, size: number) => Manifest;
  /** Test hook "store.record.write": hit after each write of this record's bytes. */
  readonly failpoints?: Failpoints | undefined;
}

/** Capacity held by one in-flight write; `ensure` grows it or throws NoSpaceError. */
export interface SpaceReservation {
  ensure(totalRecordBytes: number): Promise<void>;
}

export interface WrittenRecord {
  readonly offset: number;
  readonly bodyLen: number;
  readonly trailerLen: number;
  readonly bodyCrc: number;
  readonly recordLen: number;
  readonly manifest: Manifest;
}

function ioError(error: unknown, segment: ActiveSegment): StoreError {
  if (error instanceof StoreError) return error;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === "ENOSPC" || code === "EDQUOT") {
    return new NoSpaceError(`no space left on the device writing ${segment.path}; nothing was stored`, { cause: error });
  }
  return new StoreIoError(`writing ${segment.path} failed; nothing was stored`, { cause: error });
}

class IteratorFailure {
  constructor(readonly error: unknown) {}
}

/** Next body chunk, or AbortedError as soon as the signal fires (even while the producer stalls). */
function nextOrAbort(
  it: AsyncIterator<Uint8Array>,
  signal: AbortSignal | undefined,
): Promise<IteratorResult<Uint8Array>> {
  const next = it.next().then(
    (r) => r,
    (error: unknown) => {
      throw new IteratorFailure(error);
    },
  );
  if (!signal) return next;
  if (signal.aborted) {
    next.catch(() => {});
    return Promise.reject(abortedError(signal, "put"));
  }
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(abortedError(signal, "put"));
    signal.addEventListener("abort", onAbort, { once: true });
    next.then(
      (r) => {
        signal.removeEventListener("abort", onAbort);
        resolve(r);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

/**
 * Coalescing buffers. A record whose declared size fits gets a buffer of exactly its largest
 * record length (a 4 KiB put allocates ~6 KiB, not 1 MiB: a fresh 1 MiB buffer per small put
 * was a quarter of the main thread's time in garbage collection); the others borrow a 1 MiB
 * buffer from a small free list. A buffer is back on the list only once writeRecord has
 * returned, when no write references it any more.
 */
const FREE_BUFFERS_MAX = 8;
const freeBuffers: Buffer[] = [];

function takeWriteBuffer(expectSize: number | undefined): Buffer {
  if (expectSize !== undefined) {
    const exact = recordLength(expectSize, TRAILER_MAX_BYTES);
    if (exact < WRITE_BUFFER_BYTES) return Buffer.allocUnsafe(exact);
  }
  return freeBuffers.pop() ?? Buffer.allocUnsafe(WRITE_BUFFER_BYTES);
}

function returnWriteBuffer(buf: Buffer): void {
  if (buf.length === WRITE_BUFFER_BYTES && freeBuffers.length < FREE_BUFFERS_MAX) freeBuffers.push(buf);
}

export async function writeRecord(
  segment: ActiveSegment,
  body: AsyncIterable<Uint8Array>,
  spec: RecordSpec,
  signal: AbortSignal | undefined,
  space: SpaceReservation,
): Promise<WrittenRecord> {
  const buf = takeWriteBuffer(spec.expectSize);
  try {
    return await writeRecordWith(buf, segment, body, spec, signal, space);
  } finally {
    returnWriteBuffer(buf);
  }
}

async function writeRecordWith(
  buf: Buffer,
  segment: ActiveSegment,
  body: AsyncIterable<Uint8Array>,
  spec: RecordSpec,
  signal: AbortSignal | undefined,
  space: SpaceReservation,
): Promise<WrittenRecord> {
  const start = segment.size;
  let pos = start;
  buf.fill(0, 0, PREFIX_BYTES);
  let bufLen = PREFIX_BYTES;
  let flushedAny = false;
  let bodyLen = 0;
  let crc = 0;
  const hash = createHash("sha256");
  const it = body[Symbol.asyncIterator]();
  let iteratorSettled = false;

  const put = async (bytes: Uint8Array, at: number): Promise<void> => {
    await space.ensure(at + bytes.length - start);
    try {
      await segment.write(bytes, at);
    } catch (error) {
      throw ioError(error, segment);
    }
    const hit = spec.failpoints?.hit("store.record.write", { recordOffset: start, at: at - start, bytes: bytes.length });
    if (hit) await hit;
  };
  const flush = async (): Promise<void> => {
    if (bufLen === 0) return;
    await put(buf.subarray(0, bufLen), pos);
    pos += bufLen;
    bufLen = 0;
    flushedAny = true;
  };

  try {
    for (;;) {
      let r: IteratorResult<Uint8Array>;
      try {
        r = await nextOrAbort(it, signal);
      } catch (error) {
        if (error instanceof IteratorFailure) {
          iteratorSettled = true;
          throw error.error;
        }
        throw error;
      }
      if (r.done) {
        iteratorSettled = true;
        break;
      }
      const chunk = r.value;
      if (!(chunk instanceof Uint8Array)) throw new InvalidArgumentError("body chunks must be Uint8Array");
      if (chunk.length === 0) continue;
      if (spec.expectSize !== undefined && bodyLen + chunk.length > spec.expectSize) {
        throw new SizeMismatchError(spec.expectSize, bodyLen + chunk.length, true);
      }
      bodyLen += chunk.length;
      crc = crc32(chunk, crc);
      hash.update(chunk);
      if (bufLen + chunk.length <= buf.length) {
        buf.set(chunk, bufLen);
        bufLen += chunk.length;
        continue;
      }
      await flush();
      if (chunk.length >= buf.length / 2) {
        // Written before the next chunk is requested, so a producer reusing its buffer is safe.
        await put(chunk, pos);
        pos += chunk.length;
      } else {
        buf.set(chunk, 0);
        bufLen = chunk.length;
      }
    }
    if (signal?.aborted) throw abortedError(signal, "put");
    if (spec.expectSize !== undefined && bodyLen !== spec.expectSize) {
      throw new SizeMismatchError(spec.expectSize, bodyLen, false);
    }
    const digest = hash.digest("hex");
    if (spec.expectDigest !== undefined && digest !== spec.expectDigest) {
      throw new DigestMismatchError(spec.expectDigest, digest);
    }
    const manifest = spec.finish(digest, bodyLen);
    const trailer = encodeTrailer(manifest);
    const prefix = { bodyLen, trailerLen: trailer.length, bodyCrc: crc >>> 0, trailerCrc: trailerCrc(trailer) };
    if (!flushedAny && bufLen + trailer.length <= buf.length) {
      // Small record: one write with the final prefix in place.
      encodePrefix(prefix, buf.subarray(0, PREFIX_BYTES));
      buf.set(trailer, bufLen);
      bufLen += trailer.length;
      await flush();
    } else {
      buf.set(trailer.subarray(0, Math.min(trailer.length, buf.length - bufLen)), bufLen);
      const inBuffer = Math.min(trailer.length, buf.length - bufLen);
      bufLen += inBuffer;
      await flush();
      if (inBuffer < trailer.length) {
        await put(trailer.subarray(inBuffer), pos);
        pos += trailer.length - inBuffer;
      }
      // The prefix goes last: until it is on disk the record reads as a torn tail.
      await put(encodePrefix(prefix), start);
    }
    return {
      offset: start,
      bodyLen,
      trailerLen: trailer.length,
      bodyCrc: prefix.bodyCrc,
      recordLen: recordLength(bodyLen, trailer.length),
      manifest,
    };
  } catch (error) {
    if (!iteratorSettled) {
      // Stop the producer without waiting for it: it may be stalled on the network.
      void Promise.resolve()
        .then(() => it.return?.())
        .catch(() => {});
    }
    try {
      await segment.truncate(start);
    } catch (truncateError) {
      segment.failed = new StoreIoError(`could not cut ${segment.path} back to ${start} after a failed put`, {
        cause: truncateError,
      });
    }
    throw error;
  }
}
