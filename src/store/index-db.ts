/**
 * The index: an LMDB environment in DATA/index/ holding where every live artifact is, the
 * version-ordered listing, the change feed, segment states, counters and other layers' meta.
 * Owns every index mutation and its atomicity: an artifact row, its secondary keys, its feed
 * entry and the counters always change in one transaction.
 *
 * Commits are group-committed through lmdb-js's asynchronous `transaction()`: every request
 * queued while no transaction is waiting to start runs, in order, inside ONE write transaction
 * that lmdb's write thread opens; the callback runs on the main thread (sub-millisecond: the row
 * writes), and the commit with its fdatasync and O_DSYNC meta-page write runs on lmdb's write
 * thread, so the event loop never waits for the disk. Requests made while a commit syncs wait
 * for the next transaction, so batches grow with the disk's latency. With `overlappingSync:
 * false` (noSync/noMetaSync off) the transaction's promise resolves only after the commit is
 * durable, and readers see a commit only once its meta page is written, i.e. once it is durable.
 * (A previous note here said these callbacks never run with lmdb 3.5.6: that happens only when
 * `lmdb/index.js` is imported directly, which skips `node-index.js` and its
 * `enableThreadSafeCalls()`; through the package's "node" export they run.)
 */
import { statfsSync } from "node:fs";
import { open, type Database, type RootDatabase } from "lmdb";
import { NoSpaceError, StoreIoError } from "./errors.js";
import type { ArtifactId, FeedEntry, Kind, Manifest } from "./types.js";

/** Where an artifact's record is, and its manifest. Versions are decimal strings (u64). */
export interface ArtifactRow {
  readonly seg: number;
  readonly off: number;
  readonly bodyLen: number;
  readonly trailerLen: number;
  readonly bodyCrc: number;
  readonly ns: string;
  readonly kind: Kind;
  readonly key: string;
  readonly size: number;
  readonly digest: string;
  readonly version: string;
  readonly origin: string;
  /** Feed seq of the change that indexed this row. */
  readonly seq: number;
}

export type NewArtifactRow = Omit<ArtifactRow, "seq">;

export interface SegmentRow {
  readonly sealed: boolean;
  /** Logical access tick (higher = more recent); drives LRU eviction. */
  readonly lastAccess: number;
  /** Records below this offset were verified and reconciled; recovery scans from here. */
  readonly checkpoint: number;
  /**
   * Evicted: its artifacts are gone from the index and its file is being (or was) unlinked. The
   * row stays until the unlink is durable, so a crash in between does not resurrect the file's
   * records at the next open.
   */
  readonly evicted?: boolean;
}

interface FeedRow {
  readonly ns: string;
  readonly kind: Kind;
  readonly key: string;
  readonly size: number;
  readonly digest: string;
  readonly version: string;
  readonly origin: string;
}

export interface IndexCounters {
  readonly feedHead: number;
  readonly feedFloor: number;
  readonly liveBytes: number;
  readonly artifactCount: number;
  readonly evictedCount: number;
}

export const SYS = {
  formatVersion: "formatVersion",
  incarnation: "incarnation",
  nodeId: "nodeId",
  createdMs: "createdMs",
  nextSegmentId: "nextSegmentId",
  feedHead: "feedHead",
  feedFloor: "feedFloor",
  hlc: "hlc",
  liveBytes: "liveBytes",
  artifactCount: "artifactCount",
  evictedCount: "evictedCount",
  accessTick: "accessTick",
} as const;

export const INDEX_FORMAT_VERSION = 1;

export function idKeyOf(ns: string, kind: Kind, key: string): string {
  // Namespaces and kinds never contain "/", so the first two separate the fields unambiguously.
  return `${ns}/${kind}/${key}`;
}

export function parseIdKey(idKey: string): ArtifactId {
  const first = idKey.indexOf("/");
  const second = idKey.indexOf("/", first + 1);
  return { namespace: idKey.slice(0, first), kind: idKey.slice(first + 1, second) as Kind, key: idKey.slice(second + 1) };
}

export function rowRecordLength(row: { bodyLen: number; trailerLen: number }): number {
  return 32 + row.bodyLen + row.trailerLen;
}

export function manifestOfRow(row: FeedRow): Manifest {
  return {
    namespace: row.ns,
    kind: row.kind,
    key: row.key,
    size: row.size,
    digest: row.digest,
    version: BigInt(row.version),
    origin: row.origin,
  };
}

/** Last-writer-wins order on (version, origin): >0 when a wins. */
export function compareWrites(a: { version: bigint; origin: string }, b: { version: bigint; origin: string }): number {
  if (a.version !== b.version) return a.version > b.version ? 1 : -1;
  return a.origin === b.origin ? 0 : a.origin > b.origin ? 1 : -1;
}

export function versionKey(version: bigint, idKey: string): Buffer {
  const id = Buffer.from(idKey, "utf8");
  const key = Buffer.allocUnsafe(8 + id.length);
  key.writeBigUInt64BE(version, 0);
  id.copy(key, 8);
  return key;
}

function segmentKey(seg: number, off: number): Buffer {
  const key = Buffer.allocUnsafe(12);
  key.writeUInt32BE(seg, 0);
  key.writeBigUInt64BE(BigInt(off), 4);
  return key;
}

/** Below this many free bytes, a filesystem counts as full when LMDB reports an I/O error. */
export const FULL_DISK_FREE_BYTES = 4 * 1024 * 1024;

function freeBytes(dir: string): number | undefined {
  try {
    const st = statfsSync(dir);
    return st.bavail * st.bsize;
  } catch {
    return undefined;
  }
}

/** A failed LMDB commit: NoSpaceError when the disk (or LMDB's map) is full, else StoreIoError. */
function commitFailure(error: unknown, dir: string): StoreIoError | NoSpaceError {
  const e = error as { code?: unknown; message?: unknown } | undefined;
  const text = `${String(e?.code)} ${String(e?.message)}`;
  if (/ENOSPC|EDQUOT|No space left|MDB_MAP_FULL/i.test(text)) {
    return new NoSpaceError("no space left for the index; the change was not stored", { cause: error });
  }
  // LMDB reports a page write that hit a full filesystem as EIO ("Input/output error", seen on
  // a full tmpfs by chaos scenario 12): on a full disk that is a full disk (RESOURCE_EXHAUSTED,
  // retryable once space frees), not an internal error.
  const free = /EIO|Input\/output error/i.test(text) ? freeBytes(dir) : undefined;
  if (free !== undefined && free < FULL_DISK_FREE_BYTES) {
    return new NoSpaceError(`no space left for the index (${free} bytes free; LMDB said: ${String(e?.message)}); the change was not stored`, { cause: error });
  }
  return new StoreIoError("index commit failed; the change was not stored", { cause: error });
}

/** The cause of a failed async commit: lmdb-js hides it behind `commitError`. */
async function commitCause(error: unknown): Promise<unknown> {
  const inner = (error as { commitError?: unknown } | undefined)?.commitError;
  if (inner && typeof (inner as Promise<unknown>).then === "function") {
    // lmdb-js rejects it in the same callback that failed the commit, so it has settled before
    // the next macrotask; if it has not, the generic error is all there is.
    const pending = Symbol("pending");
    try {
      const value = await Promise.race([inner as Promise<unknown>, new Promise((resolve) => setImmediate(() => resolve(pending)))]);
      if (value === pending) return error;
    } catch (cause) {
      return cause;
    }
  }
  return error;
}

interface Pending {
  readonly fn: (tx: IndexTx) => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

interface Dbs {
  readonly root: RootDatabase;
  readonly artifacts: Database<ArtifactRow, string>;
  readonly byVersion: Database<Buffer, Buffer>;
  readonly bySegment: Database<string, Buffer>;
  readonly feed: Database<FeedRow, number>;
  readonly segments: Database<SegmentRow, number>;
  readonly sys: Database<unknown, string>;
  readonly user: Database<unknown, string>;
}

export interface ChangeResult {
  readonly applied: boolean;
  /** The row indexed after the change: the new one, or the one that won. */
  readonly current: ArtifactRow;
  /** Feed floor after the change, when it trimmed the feed. */
  readonly trimmedTo: number | undefined;
}

/** Index operations inside one write transaction. Reads here see the transaction's own writes. */
export class IndexTx {
  readonly #db: Dbs;
  readonly #feedMaxEntries: number;

  constructor(db: Dbs, feedMaxEntries: number) {
    this.#db = db;
    this.#feedMaxEntries = feedMaxEntries;
  }

  /**
   * System values read or set in this transaction. Every change touches the same few counters
   * (feedHead, liveBytes, artifactCount, hlc): they are written once per transaction by
   * `finish()`, not once per change.
   */
  readonly #sys = new Map<string, unknown>();
  readonly #sysDirty = new Set<string>();

  sys<T>(key: string): T | undefined {
    if (this.#sys.has(key)) return this.#sys.get(key) as T | undefined;
    const value = this.#db.sys.get(key);
    this.#sys.set(key, value);
    return value as T | undefined;
  }

  setSys(key: string, value: unknown): void {
    this.#sys.set(key, value);
    this.#sysDirty.add(key);
  }

  /** Writes the system values set in this transaction; call once, after the last change. */
  finish(): void {
    for (const key of this.#sysDirty) this.#db.sys.putSync(key, this.#sys.get(key));
    this.#sysDirty.clear();
  }

  /** Counters as this transaction leaves them. */
  counters(): IndexCounters {
    return {
      feedHead: this.sys<number>(SYS.feedHead) ?? 0,
      feedFloor: this.sys<number>(SYS.feedFloor) ?? 0,
      liveBytes: this.sys<number>(SYS.liveBytes) ?? 0,
      artifactCount: this.sys<number>(SYS.artifactCount) ?? 0,
      evictedCount: this.sys<number>(SYS.evictedCount) ?? 0,
    };
  }

  #add(key: string, delta: number): void {
    if (delta !== 0) this.setSys(key, (this.sys<number>(key) ?? 0) + delta);
  }

  artifact(idKey: string): ArtifactRow | undefined {
    return this.#db.artifacts.get(idKey);
  }

  segment(id: number): SegmentRow | undefined {
    return this.#db.segments.get(id);
  }

  putSegment(id: number, row: SegmentRow): void {
    this.#db.segments.putSync(id, row);
  }

  deleteSegment(id: number): void {
    this.#db.segments.removeSync(id);
  }

  putUser(key: string, value: unknown): void {
    this.#db.user.putSync(key, value);
  }

  deleteUser(key: string): void {
    this.#db.user.removeSync(key);
  }

  #unindex(idKey: string, row: ArtifactRow): void {
    this.#db.artifacts.removeSync(idKey);
    this.#db.byVersion.removeSync(versionKey(BigInt(row.version), idKey));
    this.#db.bySegment.removeSync(segmentKey(row.seg, row.off));
    this.#add(SYS.liveBytes, -rowRecordLength(row));
    this.#add(SYS.artifactCount, -1);
  }

  /**
   * Indexes a written record if it changes the state: CAS when absent, KV when it wins
   * last-writer-wins on (version, origin). An applied change gets the next feed seq.
   */
  applyChange(row: NewArtifactRow): ChangeResult {
    const idKey = idKeyOf(row.ns, row.kind, row.key);
    const existing = this.artifact(idKey);
    if (existing) {
      const wins =
        row.kind === "kv" &&
        compareWrites({ version: BigInt(row.version), origin: row.origin }, { version: BigInt(existing.version), origin: existing.origin }) > 0;
      if (!wins) return { applied: false, current: existing, trimmedTo: undefined };
      this.#unindex(idKey, existing);
    }
    const seq = (this.sys<number>(SYS.feedHead) ?? 0) + 1;
    const current: ArtifactRow = { ...row, seq };
    this.#db.artifacts.putSync(idKey, current);
    this.#db.byVersion.putSync(versionKey(BigInt(row.version), idKey), Buffer.alloc(0));
    this.#db.bySegment.putSync(segmentKey(row.seg, row.off), idKey);
    const feedRow: FeedRow = {
      ns: row.ns,
      kind: row.kind,
      key: row.key,
      size: row.size,
      digest: row.digest,
      version: row.version,
      origin: row.origin,
    };
    this.#db.feed.putSync(seq, feedRow);
    this.setSys(SYS.feedHead, seq);
    this.#add(SYS.liveBytes, rowRecordLength(row));
    this.#add(SYS.artifactCount, 1);
    const hlc = BigInt(this.sys<string>(SYS.hlc) ?? "0");
    if (BigInt(row.version) > hlc) this.setSys(SYS.hlc, row.version);
    return { applied: true, current, trimmedTo: this.trimFeed() };
  }

  /** Drops the oldest feed entries beyond feedMaxEntries; returns the new floor if it moved. */
  trimFeed(): number | undefined {
    const head = this.sys<number>(SYS.feedHead) ?? 0;
    const floor = this.sys<number>(SYS.feedFloor) ?? 0;
    if (head - floor <= this.#feedMaxEntries) return undefined;
    const trimmedTo = head - this.#feedMaxEntries;
    for (let s = floor + 1; s <= trimmedTo; s++) this.#db.feed.removeSync(s);
    this.setSys(SYS.feedFloor, trimmedTo);
    return trimmedTo;
  }

  /** Removes the artifact if its row still points at (seg, off). No feed entry: this is local. */
  dropArtifact(idKey: string, seg: number, off: number): ArtifactRow | undefined {
    const row = this.artifact(idKey);
    if (!row || row.seg !== seg || row.off !== off) {
      // A by-segment entry whose artifact moved on is stale: clear it so scans stop finding it.
      if (this.#db.bySegment.get(segmentKey(seg, off)) === idKey) this.#db.bySegment.removeSync(segmentKey(seg, off));
      return undefined;
    }
    this.#unindex(idKey, row);
    return row;
  }

  /** Index entries of one segment at or after `fromOffset`, by offset. */
  entriesInSegment(seg: number, fromOffset = 0): Array<{ off: number; idKey: string }> {
    return entriesInSegment(this.#db, seg, fromOffset);
  }

  /**
   * Drops up to `limit` artifacts stored in `seg` (counted as evicted); once none is left, marks
   * the segment evicted and says `done`. The store evicts a segment in several of these so no
   * single transaction frees tens of thousands of pages (LMDB's free list then makes the next
   * commits ~12 x dearer; PERFORMANCE.md §9.3).
   */
  evictSegment(seg: number, limit = Number.POSITIVE_INFINITY): { artifacts: number; bytes: number; done: boolean } {
    let artifacts = 0;
    let bytes = 0;
    let seen = 0;
    const range = this.#db.bySegment.getRange({ start: segmentKey(seg, 0), end: segmentKey(seg + 1, 0), ...(Number.isFinite(limit) ? { limit } : {}) });
    for (const { key, value: idKey } of [...range]) {
      seen++;
      const off = Number(key.readBigUInt64BE(4));
      const row = this.dropArtifact(idKey, seg, off);
      if (row) {
        artifacts++;
        bytes += rowRecordLength(row);
      } else {
        this.#db.bySegment.removeSync(segmentKey(seg, off));
      }
    }
    this.#add(SYS.evictedCount, artifacts);
    const done = seen < limit;
    if (done) {
      const row = this.segment(seg);
      this.putSegment(seg, { sealed: true, lastAccess: row?.lastAccess ?? 0, checkpoint: row?.checkpoint ?? 0, evicted: true });
    }
    return { artifacts, bytes, done };
  }
}

/** Index entries of one segment, highest offset first (lazy: callers stop early). */
function* entriesInSegmentDescending(db: Dbs, seg: number): Generator<{ off: number; idKey: string }> {
  const top = Buffer.alloc(12, 0xff);
  top.writeUInt32BE(seg, 0);
  for (const { key, value } of db.bySegment.getRange({ reverse: true, start: top })) {
    if (key.readUInt32BE(0) !== seg) return;
    yield { off: Number(key.readBigUInt64BE(4)), idKey: value };
  }
}

function entriesInSegment(db: Dbs, seg: number, fromOffset: number): Array<{ off: number; idKey: string }> {
  const out: Array<{ off: number; idKey: string }> = [];
  for (const { key, value } of db.bySegment.getRange({ start: segmentKey(seg, fromOffset), end: segmentKey(seg + 1, 0) })) {
    out.push({ off: Number(key.readBigUInt64BE(4)), idKey: value });
  }
  return out;
}

export class IndexDb {
  readonly #db: Dbs;
  readonly #feedMaxEntries: number;
  #queue: Pending[] = [];
  /** A transaction() was requested whose callback has not taken the queue yet. */
  #scheduled = false;
  /** Transactions requested and not settled (committed or failed). */
  #inTransaction = 0;
  readonly #idleWaiters: Array<() => void> = [];
  #counters: IndexCounters;
  #closed = false;
  /** Called after every successful commit (the store notifies feed waiters from here). */
  onCommitted: (counters: IndexCounters) => void = () => {};

  /** The index directory (to tell a full disk from a failing one). */
  #dir = ".";

  private constructor(db: Dbs, feedMaxEntries: number) {
    this.#db = db;
    this.#feedMaxEntries = feedMaxEntries;
    this.#counters = this.#readCounters();
  }

  static open(dir: string, feedMaxEntries: number): IndexDb {
    const root = open({
      path: dir,
      maxDbs: 16,
      // Durability: a resolved transaction() (and a returned transactionSync) means "on disk".
      // These are lmdb-js's defaults except overlappingSync, which defaults to true on Linux and
      // would resolve commits (and show them to readers) before their flush.
      overlappingSync: false,
      noSync: false,
      noMetaSync: false,
      useWritemap: false,
      // Event-turn batching starts each batch with an instruction whose promise nobody awaits:
      // a failed commit (full disk) rejects it and crashes the process with an unhandled
      // rejection. The requests are batched here instead (one transaction() at a time).
      eventTurnBatching: false,
    });
    const db: Dbs = {
      root,
      artifacts: root.openDB<ArtifactRow, string>("artifacts", {}),
      byVersion: root.openDB<Buffer, Buffer>("by-version", { keyEncoding: "binary", encoding: "binary" }),
      bySegment: root.openDB<string, Buffer>("by-segment", { keyEncoding: "binary", encoding: "string" }),
      feed: root.openDB<FeedRow, number>("feed", {}),
      segments: root.openDB<SegmentRow, number>("segments", {}),
      sys: root.openDB<unknown, string>("sys", {}),
      user: root.openDB<unknown, string>("meta", {}),
    };
    const ix = new IndexDb(db, feedMaxEntries);
    ix.#dir = dir;
    return ix;
  }

  #readCounters(): IndexCounters {
    const sys = this.#db.sys;
    return {
      feedHead: (sys.get(SYS.feedHead) as number | undefined) ?? 0,
      feedFloor: (sys.get(SYS.feedFloor) as number | undefined) ?? 0,
      liveBytes: (sys.get(SYS.liveBytes) as number | undefined) ?? 0,
      artifactCount: (sys.get(SYS.artifactCount) as number | undefined) ?? 0,
      evictedCount: (sys.get(SYS.evictedCount) as number | undefined) ?? 0,
    };
  }

  /** Counters as of the last durable commit. */
  get counters(): IndexCounters {
    return this.#counters;
  }

  // ---- committed reads (synchronous) ----

  artifact(idKey: string): ArtifactRow | undefined {
    return this.#db.artifacts.get(idKey);
  }

  sys<T>(key: string): T | undefined {
    return this.#db.sys.get(key) as T | undefined;
  }

  user<T>(key: string): T | undefined {
    return this.#db.user.get(key) as T | undefined;
  }

  segmentRows(): Map<number, SegmentRow> {
    const out = new Map<number, SegmentRow>();
    for (const { key, value } of this.#db.segments.getRange({})) out.set(key, value);
    return out;
  }

  entriesInSegment(seg: number, fromOffset = 0): Array<{ off: number; idKey: string }> {
    return entriesInSegment(this.#db, seg, fromOffset);
  }

  /** Segment ids that index entries point into, ascending (one seek per segment). */
  *segmentIdsInIndex(): Generator<number> {
    let start = segmentKey(0, 0);
    for (;;) {
      let next: number | undefined;
      for (const key of this.#db.bySegment.getKeys({ start, limit: 1 })) next = key.readUInt32BE(0);
      if (next === undefined) return;
      yield next;
      if (next === 0xffffffff) return;
      start = segmentKey(next + 1, 0);
    }
  }

  entriesInSegmentDescending(seg: number): Generator<{ off: number; idKey: string }> {
    return entriesInSegmentDescending(this.#db, seg);
  }

  feedEntries(afterSeq: number, limit: number): FeedEntry[] {
    const out: FeedEntry[] = [];
    for (const { key, value } of this.#db.feed.getRange({ start: afterSeq + 1, limit })) {
      out.push({ seq: key, manifest: manifestOfRow(value) });
    }
    return out;
  }

  /** byVersion keys newest first, starting at `from` (inclusive) or the newest. */
  versionKeysDescending(from: Buffer | undefined): Iterable<Buffer> {
    return this.#db.byVersion.getKeys(from ? { reverse: true, start: from } : { reverse: true });
  }

  // ---- writes ----

  /** Queues `fn` for the next group commit; resolves with its result once durable. */
  commit<T>(fn: (tx: IndexTx) => T): Promise<T> {
    if (this.#closed) return Promise.reject(new StoreIoError("index is closed"));
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ fn, resolve: resolve as (value: unknown) => void, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        this.#startTransaction();
      }
    });
  }

  /** Runs `fn` in its own transaction now (open-time recovery, where nothing else is queued). */
  commitNow<T>(fn: (tx: IndexTx) => T): T {
    try {
      const result = this.#db.root.transactionSync(() => {
        const tx = new IndexTx(this.#db, this.#feedMaxEntries);
        const value = fn(tx);
        tx.finish();
        return value;
      });
      this.#counters = this.#readCounters();
      return result;
    } catch (error) {
      throw commitFailure(error, this.#dir);
    }
  }

  /**
   * Asks lmdb's write thread for one transaction. Its callback takes every request queued by
   * then; requests queued after it ran start the next transaction (lmdb runs it once this one
   * has committed), so at most one transaction waits to start at any time.
   */
  #startTransaction(): void {
    let batch: Pending[] = [];
    const outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    let counters: IndexCounters | undefined;
    this.#inTransaction++;
    let ran = false;
    const committed = this.#db.root.transaction(() => {
      ran = true;
      this.#scheduled = false;
      batch = this.#queue;
      this.#queue = [];
      const tx = new IndexTx(this.#db, this.#feedMaxEntries);
      // Request functions validate before they write, so one that throws leaves no partial
      // change in the shared transaction.
      for (const item of batch) {
        try {
          outcomes.push({ ok: true, value: item.fn(tx) });
        } catch (error) {
          outcomes.push({ ok: false, error });
        }
      }
      tx.finish();
      // As the transaction leaves them; published only once it is durable.
      counters = tx.counters();
    });
    committed.then(
      () => {
        this.#inTransaction--;
        if (counters) this.#counters = counters;
        batch.forEach((item, i) => {
          const outcome = outcomes[i];
          if (outcome?.ok) item.resolve(outcome.value);
          else item.reject(outcome?.error);
        });
        if (batch.length > 0) this.onCommitted(this.#counters);
        this.#settled();
      },
      (error: unknown) => {
        this.#inTransaction--;
        // lmdb-js rejects with a generic "Commit failed" whose `commitError` promise carries
        // the cause (errno, message); a request that never ran is failed with the same cause.
        void commitCause(error).then((cause) => {
          const failure = commitFailure(cause, this.#dir);
          if (!ran) {
            // The callback never ran: the queued requests were waiting for it.
            this.#scheduled = false;
            batch = this.#queue;
            this.#queue = [];
          }
          for (const item of batch) item.reject(failure);
          this.#settled();
        });
      },
    );
  }

  #settled(): void {
    if (this.#inTransaction === 0 && !this.#scheduled) {
      for (const resolve of this.#idleWaiters.splice(0)) resolve();
    }
  }

  /** Waits for queued commits, then closes the environment. */
  async close(): Promise<void> {
    if (this.#closed) return;
    while (this.#queue.length > 0 || this.#scheduled || this.#inTransaction > 0) {
      await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
    }
    this.#closed = true;
    await this.#db.root.close();
  }
}
