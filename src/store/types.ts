/**
 * The store's public surface: what the API and replication layers may rely on.
 * Implementation lives in store.ts (and helpers beside it); nothing above src/store imports
 * anything but this file, errors.ts and store.ts's `openStore`.
 */

import type { Failpoints } from "../util/failpoints.js";

export type Kind = "cas" | "kv";

/** Names one artifact. Validated by the caller (see src/store/names.ts). */
export interface ArtifactId {
  readonly namespace: string;
  readonly kind: Kind;
  readonly key: string;
}

export interface Manifest extends ArtifactId {
  /** Body length in bytes (safe integer; 2^53 bytes is far beyond any artifact). */
  readonly size: number;
  /** Lowercase hex SHA-256 of the body; equals key for CAS. */
  readonly digest: string;
  /** Hybrid logical clock of the write: (unix ms << 16n) | counter. */
  readonly version: bigint;
  /** Node id of the node that accepted the write. */
  readonly origin: string;
}

export interface FeedEntry {
  readonly seq: number;
  readonly manifest: Manifest;
}

export interface StoreOptions {
  /** Data directory; created when absent. */
  readonly dataDir: string;
  /** Node id to record for a new data dir; an existing data dir keeps the one it has unless this differs (then the new one is recorded). */
  readonly nodeId?: string;
  /**
   * Byte budget for segment files on disk (live and dead records, plus writes in flight);
   * 0 = unbounded. Only sealed segments are evicted, so leave room for lanes × segmentMaxBytes.
   * Default 0.
   */
  readonly capacityBytes?: number;
  /** Segment files are sealed once they reach this size. Default 256 MiB. */
  readonly segmentMaxBytes?: number;
  /** Change-feed entries kept; older ones are trimmed and the floor raised. Default 1,000,000. */
  readonly feedMaxEntries?: number;
  /** Writer lanes (active segments written concurrently). Default 4. */
  readonly lanes?: number;
  /**
   * Called for events worth a log line (corruption found, eviction, recovery). A corrupt-record
   * found by a recovery scan whose trailer is unreadable has an empty namespace and key.
   */
  readonly onEvent?: (event: StoreEvent) => void;
  /**
   * Test hooks (never set in production): "store.segment.datasync" before each fdatasync of a
   * segment (an error there is a failed fdatasync), "store.record.write" after each write of a record's
   * bytes (mid-record: the prefix is written last), "store.put.before-index" after the data
   * fdatasync and before the index commit. Default none.
   */
  readonly failpoints?: Failpoints | undefined;
}

export type StoreEvent =
  | { readonly type: "recovered"; readonly segment: number; readonly truncatedBytes: number; readonly reindexed: number }
  | {
      readonly type: "corrupt-record";
      readonly id: ArtifactId;
      readonly segment: number;
      readonly offset: number;
      readonly reason: string;
      /** Set when an index entry was dropped: what to fetch again from a peer. */
      readonly manifest?: Manifest;
    }
  | { readonly type: "evicted"; readonly segment: number; readonly artifacts: number; readonly bytes: number }
  | { readonly type: "feed-trimmed"; readonly floor: number };

/** Header of a client put. */
export interface PutHeader {
  readonly namespace: string;
  readonly kind: Kind;
  /** CAS: expected digest, or undefined to accept whatever the body hashes to. KV: the key. */
  readonly key?: string | undefined;
  /** Declared size; when set, any other body length is refused. */
  readonly size?: number | undefined;
}

export interface PutResult {
  readonly manifest: Manifest;
  /** True when this exact artifact was already stored and nothing new was written. */
  readonly alreadyPresent: boolean;
}

export type ApplyOutcome =
  /** Body written and indexed; a feed entry was appended. */
  | "applied"
  /** Same digest/version already here (or a newer KV version): nothing written. */
  | "skipped";

export interface ReadOptions {
  readonly offset?: number;
  /** Bytes to read; undefined = to the end. */
  readonly length?: number;
  readonly signal?: AbortSignal;
  /** Chunk size of the yielded buffers. Default 1 MiB. */
  readonly chunkBytes?: number;
}

export interface BodyRead {
  readonly manifest: Manifest;
  readonly offset: number;
  readonly length: number;
  /**
   * Yields exactly `length` bytes, or throws (CorruptRecordError, TruncatedError) — never ends
   * early without an error. A full read verifies the record CRC before its last chunk is
   * yielded; a mismatch throws and the record is reported and treated as absent from then on.
   */
  readonly chunks: AsyncIterable<Uint8Array>;
}

export interface ListPage {
  readonly manifests: readonly Manifest[];
  /** Opaque; pass back to continue after this page. */
  readonly nextCursor: Uint8Array;
  readonly done: boolean;
}

export interface StoreUsage {
  readonly liveBytes: number;
  readonly diskBytes: number;
  readonly capacityBytes: number;
  readonly artifactCount: number;
  readonly segmentCount: number;
  /** Artifacts removed by capacity eviction since the data dir was created. */
  readonly evictedCount: number;
}

export interface Store {
  readonly nodeId: string;
  /** Minted when the data dir was created; stable across restarts. */
  readonly incarnation: string;

  /** A client write: stamps a fresh HLC version and origin = nodeId. Resolves once durable. */
  put(header: PutHeader, body: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<PutResult>;
  /**
   * A replicated write: keeps the manifest's version and origin. Idempotent. Verifies the
   * body's size and digest against the manifest (DigestMismatchError / SizeMismatchError,
   * nothing stored). Resolves once durable.
   */
  apply(manifest: Manifest, body: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<ApplyOutcome>;
  /** True when apply(manifest) would be skipped. */
  has(manifest: Manifest): boolean;
  stat(id: ArtifactId): Manifest | undefined;
  /** Throws NotFoundError when absent; RangeError-like InvalidRangeError for a bad range. */
  read(id: ArtifactId, options?: ReadOptions): BodyRead;

  /** Newest feed seq (0 when empty). */
  feedHead(): number;
  /** Entries with seq <= floor have been trimmed (0 when nothing was). */
  feedFloor(): number;
  /** Entries with seq > afterSeq, oldest first, at most `limit`. Throws FeedTrimmedError when afterSeq < floor. */
  readFeed(afterSeq: number, limit: number): FeedEntry[];
  /** Resolves when feedHead() > afterSeq, or rejects with the signal's reason. */
  waitForFeed(afterSeq: number, signal: AbortSignal): Promise<void>;

  /** The whole index newest-version first, resumable. */
  listManifests(cursor: Uint8Array | undefined, maxItems: number, maxBytes: number): ListPage;

  /** Small persistent key/value state for other layers (replication cursors, peers). */
  getMeta<T>(key: string): T | undefined;
  /** Durable when resolved. Values are msgpack-encoded plain data; undefined deletes the key. */
  putMeta(key: string, value: unknown): Promise<void>;

  usage(): StoreUsage;
  /** Idempotent; waits for in-flight writes to finish or fail. */
  close(): Promise<void>;
}
