/**
 * Store errors: small classes with a stable `code` the RPC boundary maps to a gRPC code.
 */

export type StoreErrorCode =
  | "NOT_FOUND"
  | "INVALID_ARGUMENT"
  | "DIGEST_MISMATCH"
  | "SIZE_MISMATCH"
  | "OUT_OF_RANGE"
  | "CORRUPT"
  | "NO_SPACE"
  | "FEED_TRIMMED"
  | "CLOSED"
  | "ABORTED"
  | "IO";

export class StoreError extends Error {
  readonly code: StoreErrorCode;
  constructor(code: StoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

export class NotFoundError extends StoreError {
  constructor(message: string) {
    super("NOT_FOUND", message);
  }
}

export class InvalidArgumentError extends StoreError {
  constructor(message: string) {
    super("INVALID_ARGUMENT", message);
  }
}

export class DigestMismatchError extends StoreError {
  constructor(readonly expected: string, readonly actual: string) {
    super("DIGEST_MISMATCH", `body hashes to sha256 ${actual}, expected ${expected}; nothing was stored`);
  }
}

export class SizeMismatchError extends StoreError {
  constructor(readonly expected: number, readonly actual: number, readonly longer: boolean) {
    super(
      "SIZE_MISMATCH",
      longer
        ? `body is longer than the declared ${expected} bytes; nothing was stored`
        : `body ended after ${actual} of the declared ${expected} bytes; nothing was stored`,
    );
  }
}

export class InvalidRangeError extends StoreError {
  constructor(message: string) {
    super("OUT_OF_RANGE", message);
  }
}

/** A record failed its checks (CRC, header, or the segment does not cover it). */
export class CorruptRecordError extends StoreError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("CORRUPT", message, options);
  }
}

export class NoSpaceError extends StoreError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("NO_SPACE", message, options);
  }
}

export class FeedTrimmedError extends StoreError {
  constructor(readonly afterSeq: number, readonly floor: number) {
    super("FEED_TRIMMED", `feed cursor ${afterSeq} is below the floor ${floor}`);
  }
}

export class StoreClosedError extends StoreError {
  constructor() {
    super("CLOSED", "store is closed");
  }
}

/**
 * A read found the segment shorter than the record (truncation guard) or hit EOF before the
 * expected length. A CorruptRecordError, so code "CORRUPT"; the record is dropped from the
 * index when this is thrown, so a retry gets NotFoundError.
 */
export class TruncatedError extends CorruptRecordError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The caller's AbortSignal fired; `cause` is the signal's reason. Nothing was stored. */
export class AbortedError extends StoreError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ABORTED", message, options);
  }
}

/** The filesystem or the index failed (EIO, a failed fsync, an index commit error). */
export class StoreIoError extends StoreError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("IO", message, options);
  }
}

/** Another live process (or another open store in this process) holds the data directory. */
export class DataDirLockedError extends StoreError {
  constructor(readonly dataDir: string, readonly holderPid: number) {
    super(
      "IO",
      `data directory ${dataDir} is in use by process ${holderPid}; stop that process, or delete ${dataDir}/LOCK if it is gone`,
    );
  }
}
