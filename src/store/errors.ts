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
