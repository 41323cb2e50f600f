/**
 * The embedded artifact store: composes segments, writer lanes, group commit, the LMDB index,
 * the change feed, capacity and recovery into the Store interface of types.ts. Owns the
 * put/apply/read flows and their ordering rules:
 *   write record (lane held) -> release lane -> fdatasync (group) -> index commit (group) -> ack.
 * Must not know about RPC, replication or transport; nothing above src/store imports more than
 * `openStore`, types.ts and errors.ts.
 */
import { randomBytes } from "node:crypto";
import { statfsSync, statSync } from "node:fs";
import { mkdir, unlink } from "node:fs/promises";
import { join } from "node:path";
import { readBody } from "./body-reader.js";
import { writeRecord, type SpaceReservation, type WrittenRecord } from "./body-writer.js";
import { CapacityGovernor } from "./capacity.js";
import { SpaceClaims } from "./space-claims.js";
import { DataDirLock } from "./data-dir-lock.js";
import {
  FeedTrimmedError,
  InvalidArgumentError,
  InvalidRangeError,
  NoSpaceError,
  NotFoundError,
  StoreClosedError,
  StoreIoError,
  TruncatedError,
} from "./errors.js";
import type { CorruptRecordError } from "./errors.js";
import { FeedWaiters } from "./feed-waiters.js";
import { HybridClock, MAX_VERSION } from "./hlc.js";
import {
  compareWrites,
  idKeyOf,
  IndexDb,
  INDEX_FORMAT_VERSION,
  manifestOfRow,
  rowRecordLength,
  SYS,
  versionKey,
  type ArtifactRow,
} from "./index-db.js";
import { validateDigest, validateKey, validateKind, validateNamespace } from "./names.js";
import { LRU_PERSIST_INTERVAL_MS, resolveStoreOptions, validateNodeId, type ResolvedStoreOptions } from "./options.js";
import { recordLength, TRAILER_MAX_BYTES } from "./record-format.js";
import { recoverSegments } from "./recovery.js";
import { ActiveSegment, segmentPath, syncDirectory } from "./segment-file.js";
import { SingleFlight, waitForFlight } from "./single-flight.js";
import type {
  ApplyOutcome,
  ArtifactId,
  BodyRead,
  FeedEntry,
  ListPage,
  Manifest,
  PutHeader,
  PutResult,
  ReadOptions,
  Store,
  StoreEvent,
  StoreOptions,
  StoreUsage,
} from "./types.js";
import { WriterLanes, type Lane } from "./writer-lanes.js";

export const DEFAULT_READ_CHUNK_BYTES = 1024 * 1024;
export const MAX_READ_CHUNK_BYTES = 64 * 1024 * 1024;
const MAX_META_KEY_LENGTH = 256;
/** Free space a put leaves on the data dir's filesystem (index pages, the record's own metadata). */
const FREE_SPACE_MARGIN_BYTES = 1 << 20;
/** Artifacts dropped per index transaction when a segment is evicted (see IndexTx.evictSegment). */
const EVICT_CHUNK = 2_000;

/** In-memory state of one segment file. */
interface SegmentInfo {
  readonly id: number;
  sealed: boolean;
  /** File size; for a segment still being written, as of its last sealing or open. */
  size: number;
  /** Logical access tick: higher is more recent (LRU order). */
  lastAccess: number;
  /** The writable handle while a lane (or a pending seal) holds the segment. */
  active: ActiveSegment | undefined;
  evicting: boolean;
  /** Records written into this segment whose index commit has not settled: not evictable. */
  pendingCommits: number;
}

interface WriteSpec {
  readonly ns: string;
  readonly kind: "cas" | "kv";
  /** Known CAS key or KV key; undefined for a CAS put that learns its key from the body. */
  readonly key: string | undefined;
  readonly expectDigest: string | undefined;
  readonly expectSize: number | undefined;
  readonly finish: (digest: string, size: number) => Manifest;
}

interface WriteOutcome {
  readonly applied: boolean;
  readonly row: ArtifactRow;
}

function checkSafeInteger(name: string, value: unknown, min: number): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    throw new InvalidArgumentError(`${name} must be an integer >= ${min}, got ${String(value)}`);
  }
  return value;
}

function validateId(id: ArtifactId): string {
  validateNamespace(id.namespace);
  validateKind(id.kind);
  validateKey(id.kind, id.key);
  return idKeyOf(id.namespace, id.kind, id.key);
}

function validateManifest(m: Manifest): string {
  const idKey = validateId(m);
  validateDigest(m.digest);
  if (m.kind === "cas" && m.digest !== m.key) {
    throw new InvalidArgumentError(`CAS manifest for ${m.key} carries digest ${m.digest}; a CAS key must equal its digest`);
  }
  checkSafeInteger("manifest size", m.size, 0);
  if (typeof m.version !== "bigint" || m.version < 0n || m.version > MAX_VERSION) {
    throw new InvalidArgumentError(`manifest version must be a u64 bigint, got ${String(m.version)}`);
  }
  validateNodeId(m.origin, "manifest origin");
  return idKey;
}

function displayId(id: ArtifactId): string {
  return `${id.namespace}/${id.kind}/${id.key}`;
}

function rowOf(seg: number, rec: WrittenRecord): Omit<ArtifactRow, "seq"> {
  const m = rec.manifest;
  return {
    seg,
    off: rec.offset,
    bodyLen: rec.bodyLen,
    trailerLen: rec.trailerLen,
    bodyCrc: rec.bodyCrc,
    ns: m.namespace,
    kind: m.kind,
    key: m.key,
    size: m.size,
    digest: m.digest,
    version: m.version.toString(10),
    origin: m.origin,
  };
}

/** Rough wire size of a manifest, for ListPage's maxBytes. */
function manifestBytes(row: ArtifactRow): number {
  return row.ns.length + row.key.length + row.digest.length + row.origin.length + 32;
}

export async function openStore(options: StoreOptions): Promise<Store> {
  return GranaryStore.open(options);
}

class GranaryStore implements Store {
  readonly nodeId: string;
  readonly incarnation: string;
  readonly #opts: ResolvedStoreOptions;
  readonly #segmentsDir: string;
  readonly #index: IndexDb;
  readonly #lock: DataDirLock;
  readonly #lanes: WriterLanes;
  readonly #capacity: CapacityGovernor;
  readonly #spaceClaims = new SpaceClaims(FREE_SPACE_MARGIN_BYTES);
  readonly #flights = new SingleFlight();
  readonly #waiters = new FeedWaiters();
  readonly #hlc: HybridClock;
  readonly #segments = new Map<number, SegmentInfo>();
  /** Rows dropped after a failed check whose index commit is still in flight (#liveRow). */
  readonly #dropping = new Map<string, ArtifactRow>();
  #nextSegmentId: number;
  #accessTick: number;
  #accessDirty = false;
  #lastReportedFloor: number;
  readonly #inflight = new Set<Promise<unknown>>();
  readonly #background = new Set<Promise<unknown>>();
  #closed = false;
  #closing: Promise<void> | undefined;
  readonly #lruTimer: NodeJS.Timeout;

  private constructor(init: {
    opts: ResolvedStoreOptions;
    segmentsDir: string;
    index: IndexDb;
    lock: DataDirLock;
    nodeId: string;
    incarnation: string;
    hlc: HybridClock;
    nextSegmentId: number;
    accessTick: number;
    diskBytes: number;
  }) {
    this.#opts = init.opts;
    this.#segmentsDir = init.segmentsDir;
    this.#index = init.index;
    this.#lock = init.lock;
    this.nodeId = init.nodeId;
    this.incarnation = init.incarnation;
    this.#hlc = init.hlc;
    this.#nextSegmentId = init.nextSegmentId;
    this.#accessTick = init.accessTick;
    this.#lanes = new WriterLanes(init.opts.lanes);
    this.#capacity = new CapacityGovernor(init.opts.capacityBytes, init.diskBytes, {
      evictableBytes: () => this.#evictableBytes(),
      evictOne: () => this.#evictOne(),
    });
    this.#lastReportedFloor = init.index.counters.feedFloor;
    this.#index.onCommitted = (counters) => this.#waiters.advanced(counters.feedHead);
    this.#lruTimer = setInterval(() => this.#persistAccessOrder(), LRU_PERSIST_INTERVAL_MS);
    this.#lruTimer.unref();
  }

  static async open(options: StoreOptions): Promise<GranaryStore> {
    const opts = resolveStoreOptions(options);
    await mkdir(opts.dataDir, { recursive: true });
    const lock = await DataDirLock.acquire(opts.dataDir);
    let index: IndexDb | undefined;
    try {
      const segmentsDir = join(opts.dataDir, "segments");
      const indexDir = join(opts.dataDir, "index");
      await mkdir(segmentsDir, { recursive: true });
      await mkdir(indexDir, { recursive: true });
      await syncDirectory(opts.dataDir);
      index = IndexDb.open(indexDir, opts.feedMaxEntries);
      const ix = index;

      let incarnation = ix.sys<string>(SYS.incarnation);
      let nodeId = ix.sys<string>(SYS.nodeId);
      if (incarnation === undefined || nodeId === undefined) {
        const minted = { incarnation: randomBytes(16).toString("hex"), nodeId: opts.nodeId ?? `node-${randomBytes(6).toString("hex")}` };
        ix.commitNow((tx) => {
          tx.setSys(SYS.formatVersion, INDEX_FORMAT_VERSION);
          tx.setSys(SYS.incarnation, minted.incarnation);
          tx.setSys(SYS.nodeId, minted.nodeId);
          tx.setSys(SYS.createdMs, Date.now());
        });
        incarnation = minted.incarnation;
        nodeId = minted.nodeId;
      } else {
        const format = ix.sys<number>(SYS.formatVersion);
        if (format !== INDEX_FORMAT_VERSION) {
          throw new StoreIoError(`index format ${String(format)} in ${indexDir} is not supported (expected ${INDEX_FORMAT_VERSION})`);
        }
        if (opts.nodeId !== undefined && opts.nodeId !== nodeId) {
          const newId = opts.nodeId;
          ix.commitNow((tx) => tx.setSys(SYS.nodeId, newId));
          nodeId = newId;
        }
      }

      const events: StoreEvent[] = [];
      const recovery = await recoverSegments({
        index: ix,
        segmentsDir,
        segmentMaxBytes: opts.segmentMaxBytes,
        lanes: opts.lanes,
        emit: (event) => events.push(event),
      });
      ix.commitNow((tx) => tx.trimFeed());
      const persistedHlc = BigInt(ix.sys<string>(SYS.hlc) ?? "0");
      const hlc = new HybridClock(persistedHlc > recovery.maxVersion ? persistedHlc : recovery.maxVersion);
      const store = new GranaryStore({
        opts,
        segmentsDir,
        index: ix,
        lock,
        nodeId,
        incarnation,
        hlc,
        nextSegmentId: recovery.nextSegmentId,
        accessTick: Math.max(ix.sys<number>(SYS.accessTick) ?? 0, ...recovery.segments.map((s) => s.lastAccess)),
        diskBytes: recovery.segments.reduce((sum, s) => sum + s.size, 0),
      });
      for (const s of recovery.segments) {
        store.#segments.set(s.id, { id: s.id, sealed: s.sealed, size: s.size, lastAccess: s.lastAccess, active: undefined, evicting: false, pendingCommits: 0 });
      }
      for (const [i, r] of recovery.reopen.entries()) {
        const seg = await ActiveSegment.reopen(segmentsDir, r.id, r.size, options.failpoints);
        const lane = store.#lanes.lanes[i];
        const info = store.#segments.get(r.id);
        if (lane && info) {
          lane.segment = seg;
          info.active = seg;
        } else {
          await seg.close();
        }
      }
      for (const event of events) store.#emit(event);
      return store;
    } catch (error) {
      await index?.close().catch(() => {});
      await lock.release().catch(() => {});
      throw error;
    }
  }

  // ---------------------------------------------------------------- writes

  put(header: PutHeader, body: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<PutResult> {
    try {
      this.#assertOpen();
      validateNamespace(header.namespace);
      validateKind(header.kind);
      if (header.key !== undefined) validateKey(header.kind, header.key);
      else if (header.kind === "kv") throw new InvalidArgumentError("a KV put needs a key");
      if (header.size !== undefined) checkSafeInteger("declared size", header.size, 0);
    } catch (error) {
      return Promise.reject(error as Error);
    }
    return this.#track(this.#put(header, body, signal));
  }

  async #put(header: PutHeader, body: AsyncIterable<Uint8Array>, signal: AbortSignal | undefined): Promise<PutResult> {
    const { namespace: ns, kind, key } = header;
    let endFlight: (() => void) | undefined;
    if (kind === "cas" && key !== undefined) {
      const idKey = idKeyOf(ns, kind, key);
      for (;;) {
        const existing = this.#index.artifact(idKey);
        if (existing) return { manifest: manifestOfRow(existing), alreadyPresent: true };
        const other = this.#flights.current(idKey);
        if (!other) {
          endFlight = this.#flights.begin(idKey);
          break;
        }
        await waitForFlight(other, signal, "put");
      }
    }
    try {
      const outcome = await this.#writeAndCommit(
        {
          ns,
          kind,
          key,
          expectDigest: kind === "cas" ? key : undefined,
          expectSize: header.size,
          finish: (digest, size) => ({
            namespace: ns,
            kind,
            key: kind === "cas" ? digest : (key ?? ""),
            size,
            digest,
            version: this.#hlc.now(),
            origin: this.nodeId,
          }),
        },
        body,
        signal,
      );
      // A KV put that lost last-writer-wins to a concurrent newer put still happened (and was
      // overwritten at once); a CAS put that found the artifact already indexed wrote nothing new.
      return { manifest: manifestOfRow(outcome.row), alreadyPresent: kind === "cas" && !outcome.applied };
    } finally {
      endFlight?.();
    }
  }

  apply(manifest: Manifest, body: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<ApplyOutcome> {
    let idKey: string;
    try {
      this.#assertOpen();
      idKey = validateManifest(manifest);
    } catch (error) {
      return Promise.reject(error as Error);
    }
    // Skipped without touching the body, like has().
    if (this.#hasValid(idKey, manifest)) return Promise.resolve("skipped");
    return this.#track(this.#apply(idKey, manifest, body, signal));
  }

  async #apply(idKey: string, m: Manifest, body: AsyncIterable<Uint8Array>, signal: AbortSignal | undefined): Promise<ApplyOutcome> {
    this.#hlc.observe(m.version);
    const flightKey = m.kind === "cas" ? idKey : `${idKey}@${m.version.toString(10)}/${m.origin}`;
    let endFlight: () => void;
    for (;;) {
      if (this.#hasValid(idKey, m)) return "skipped";
      const other = this.#flights.current(flightKey);
      if (!other) {
        endFlight = this.#flights.begin(flightKey);
        break;
      }
      await waitForFlight(other, signal, "apply");
    }
    try {
      const manifest: Manifest = { ...m };
      const outcome = await this.#writeAndCommit(
        { ns: m.namespace, kind: m.kind, key: m.key, expectDigest: m.digest, expectSize: m.size, finish: () => manifest },
        body,
        signal,
      );
      return outcome.applied ? "applied" : "skipped";
    } finally {
      endFlight();
    }
  }

  /** Free bytes of the data dir's filesystem for us (one statfs); undefined when statfs fails. */
  #freeBytes(): number | undefined {
    try {
      const st = statfsSync(this.#segmentsDir);
      return Number(st.bavail) * Number(st.bsize);
    } catch {
      return undefined;
    }
  }

  /**
   * Writes one record and indexes it. The lane is held only while the record is written; the
   * fdatasync and the index commit are group commits shared with concurrent writers.
   */
  async #writeAndCommit(spec: WriteSpec, body: AsyncIterable<Uint8Array>, signal: AbortSignal | undefined): Promise<WriteOutcome> {
    const reservation = this.#capacity.reservation();
    try {
      const need = spec.expectSize !== undefined ? recordLength(spec.expectSize, TRAILER_MAX_BYTES) : 0;
      if (spec.expectSize !== undefined) await reservation.ensure(need);
      // A full disk refuses before the lane queue, counting what the writes already admitted
      // still have to write (space-claims.ts), and again once a lane is ours.
      const claim = this.#spaceClaims.admit(need, this.#freeBytes());
      const tracked: SpaceReservation = {
        ensure: (total) => {
          claim.progress(total);
          return reservation.ensure(total);
        },
      };
      const written = await this.#lanes.run(signal, async (lane) => {
        claim.recheck(this.#freeBytes());
        const seg = await this.#laneSegment(lane, spec.expectSize);
        let rec: WrittenRecord;
        try {
          rec = await writeRecord(seg, body, { ...spec, failpoints: this.#opts.failpoints }, signal, tracked);
        } catch (error) {
          if (seg.failed) this.#retireLaneSegment(lane, seg);
          throw error;
        }
        if (spec.kind === "cas" && spec.key === undefined) {
          // The key was learnt from the body: if it is already stored, take the record back.
          const existing = this.#index.artifact(idKeyOf(spec.ns, "cas", rec.manifest.digest));
          if (existing) {
            try {
              await seg.truncate(rec.offset);
              reservation.settle(0);
            } catch (error) {
              seg.failed = new StoreIoError(`could not cut ${seg.path} back after a duplicate put`, { cause: error });
              reservation.settle(rec.recordLen);
              this.#retireLaneSegment(lane, seg);
            }
            return { duplicate: existing } as const;
          }
        }
        reservation.settle(rec.recordLen);
        this.#touch(seg.id);
        const info = this.#segments.get(seg.id);
        if (info) info.pendingCommits++;
        // A full segment leaves the lane now; this put seals it in its own index commit, after
        // the fsync that covers every record in it (no one writes to it any more).
        const sealing = seg.size >= this.#opts.segmentMaxBytes;
        if (sealing) lane.segment = undefined;
        return { rec, seg, sealing } as const;
      }).finally(() => claim.release()); // written (on the filesystem now) or failed: nothing more promised
      if ("duplicate" in written) return { applied: false, row: written.duplicate };
      const { rec, seg, sealing } = written;
      let sealed = false;
      try {
        await seg.syncer.syncTo(rec.offset + rec.recordLen);
        await this.#opts.failpoints?.hit("store.put.before-index", { segment: seg.id, offset: rec.offset });
        const row = rowOf(seg.id, rec);
        const info = this.#segments.get(seg.id);
        const change = await this.#index.commit((tx) => {
          const result = tx.applyChange(row);
          if (sealing) {
            tx.putSegment(seg.id, { sealed: true, lastAccess: info?.lastAccess ?? this.#accessTick, checkpoint: seg.size });
          }
          return result;
        });
        if (sealing && info) {
          info.sealed = true;
          info.size = seg.size;
          info.active = undefined;
        }
        sealed = sealing;
        if (change.trimmedTo !== undefined) this.#noteFeedTrim(change.trimmedTo);
        return { applied: change.applied, row: change.current };
      } finally {
        const info = this.#segments.get(seg.id);
        if (info) info.pendingCommits--;
        if (sealing) {
          // Sealed, or left unsealed after a failure for the next open to scan: either way the
          // write handle is done.
          if (info && !sealed) {
            info.size = seg.size;
            info.active = undefined;
          }
          this.#trackBackground(seg.close().catch(() => {}));
        }
      }
    } finally {
      reservation.settle(0);
    }
  }

  /** The lane's segment, rolled over first when the declared record would overflow it. */
  async #laneSegment(lane: Lane, expectSize: number | undefined): Promise<ActiveSegment> {
    let seg = lane.segment;
    if (seg && (seg.failed || seg.syncer.failure)) {
      this.#retireLaneSegment(lane, seg);
      seg = undefined;
    }
    if (
      seg &&
      expectSize !== undefined &&
      seg.size > 0 &&
      seg.size + recordLength(expectSize, TRAILER_MAX_BYTES) > this.#opts.segmentMaxBytes
    ) {
      this.#rollLane(lane);
      seg = undefined;
    }
    if (!seg) {
      seg = await this.#createSegment();
      lane.segment = seg;
    }
    return seg;
  }

  async #createSegment(): Promise<ActiveSegment> {
    const id = this.#nextSegmentId++;
    const lastAccess = ++this.#accessTick;
    await this.#index.commit((tx) => {
      tx.setSys(SYS.nextSegmentId, id + 1);
      tx.putSegment(id, { sealed: false, lastAccess, checkpoint: 0 });
    });
    let seg: ActiveSegment;
    try {
      seg = await ActiveSegment.create(this.#segmentsDir, id, this.#opts.failpoints);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOSPC" || code === "EDQUOT") {
        throw new NoSpaceError(`no space left on the device to create segment ${id}; nothing was stored`, { cause: error });
      }
      throw new StoreIoError(`creating segment ${id} failed; nothing was stored`, { cause: error });
    }
    this.#segments.set(id, { id, sealed: false, size: 0, lastAccess, active: seg, evicting: false, pendingCommits: 0 });
    return seg;
  }

  /** Takes the lane's full segment off the lane and seals it once everything in it is durable. */
  #rollLane(lane: Lane): void {
    const seg = lane.segment;
    if (!seg) return;
    lane.segment = undefined;
    this.#trackBackground(
      (async () => {
        try {
          await seg.syncer.syncTo(seg.size);
          const info = this.#segments.get(seg.id);
          const lastAccess = info?.lastAccess ?? this.#accessTick;
          await this.#index.commit((tx) => tx.putSegment(seg.id, { sealed: true, lastAccess, checkpoint: seg.size }));
          if (info) {
            info.sealed = true;
            info.size = seg.size;
            info.active = undefined;
          }
        } catch {
          // Left unsealed: the next open scans it and seals it.
        } finally {
          await seg.close().catch(() => {});
        }
      })(),
    );
  }

  /** Drops a segment whose tail is in doubt; it stays unsealed so the next open scans it. */
  #retireLaneSegment(lane: Lane, seg: ActiveSegment): void {
    if (lane.segment === seg) lane.segment = undefined;
    const info = this.#segments.get(seg.id);
    if (info) {
      info.size = seg.size;
      info.active = undefined;
    }
    this.#trackBackground(seg.close().catch(() => {}));
  }

  // ---------------------------------------------------------------- capacity

  #evictableBytes(): number {
    let bytes = 0;
    for (const info of this.#segments.values()) if (this.#evictable(info)) bytes += info.size;
    return bytes;
  }

  #evictable(info: SegmentInfo): boolean {
    return info.sealed && !info.evicting && info.pendingCommits === 0;
  }

  async #evictOne(): Promise<boolean> {
    let victim: SegmentInfo | undefined;
    for (const info of this.#segments.values()) {
      if (!this.#evictable(info)) continue;
      if (!victim || info.lastAccess < victim.lastAccess || (info.lastAccess === victim.lastAccess && info.id < victim.id)) {
        victim = info;
      }
    }
    if (!victim) return false;
    const target = victim;
    target.evicting = true;
    // Index first: once committed, no new read finds the segment; reads already streaming keep
    // their open handle after the unlink.
    const result = { artifacts: 0, bytes: 0 };
    for (;;) {
      const chunk = await this.#index.commit((tx) => tx.evictSegment(target.id, EVICT_CHUNK));
      result.artifacts += chunk.artifacts;
      result.bytes += chunk.bytes;
      if (chunk.done) break;
    }
    this.#segments.delete(target.id);
    this.#capacity.released(target.size);
    try {
      await unlink(segmentPath(this.#segmentsDir, target.id));
      await syncDirectory(this.#segmentsDir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
        // The index no longer points into it, and its row says evicted: the next open unlinks it.
        throw new StoreIoError(`removing evicted segment ${target.id} failed`, { cause: error });
      }
    }
    this.#trackBackground(this.#index.commit((tx) => tx.deleteSegment(target.id)).catch(() => {}));
    this.#emit({ type: "evicted", segment: target.id, artifacts: result.artifacts, bytes: target.size });
    return true;
  }

  #touch(segmentId: number): void {
    const info = this.#segments.get(segmentId);
    if (info) {
      info.lastAccess = ++this.#accessTick;
      this.#accessDirty = true;
    }
  }

  #persistAccessOrder(): void {
    if (!this.#accessDirty || this.#closed) return;
    this.#accessDirty = false;
    const snapshot = [...this.#segments.values()].map((s) => [s.id, s.lastAccess] as const);
    const tick = this.#accessTick;
    this.#trackBackground(
      this.#index
        .commit((tx) => {
          for (const [id, lastAccess] of snapshot) {
            const row = tx.segment(id);
            if (row && row.lastAccess !== lastAccess) tx.putSegment(id, { ...row, lastAccess });
          }
          tx.setSys(SYS.accessTick, tick);
        })
        .catch(() => {
          this.#accessDirty = true;
        }),
    );
  }

  // ---------------------------------------------------------------- reads

  has(manifest: Manifest): boolean {
    this.#assertOpen();
    return this.#hasValid(validateManifest(manifest), manifest);
  }

  /**
   * The index row of `idKey`, unless a failed check is dropping it: a drop's index commit is
   * asynchronous, and the record must read as absent from the moment the check failed.
   */
  #liveRow(idKey: string): ArtifactRow | undefined {
    const row = this.#index.artifact(idKey);
    if (!row) return undefined;
    const dropping = this.#dropping.get(idKey);
    return dropping && dropping.seg === row.seg && dropping.off === row.off ? undefined : row;
  }

  #hasValid(idKey: string, m: Manifest): boolean {
    const row = this.#liveRow(idKey);
    if (!row) return false;
    if (m.kind === "cas") return true;
    return compareWrites({ version: BigInt(row.version), origin: row.origin }, m) >= 0;
  }

  stat(id: ArtifactId): Manifest | undefined {
    this.#assertOpen();
    const row = this.#liveRow(validateId(id));
    return row ? manifestOfRow(row) : undefined;
  }

  read(id: ArtifactId, options: ReadOptions = {}): BodyRead {
    this.#assertOpen();
    const idKey = validateId(id);
    const row = this.#liveRow(idKey);
    if (!row) throw new NotFoundError(`${displayId(id)} is not stored on this node`);
    const offset = options.offset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > row.size) {
      throw new InvalidRangeError(`read offset ${String(offset)} is outside the body of ${row.size} bytes`);
    }
    const length = options.length ?? row.size - offset;
    if (!Number.isSafeInteger(length) || length < 0 || offset + length > row.size) {
      throw new InvalidRangeError(`read of ${String(length)} bytes at ${offset} runs past the body of ${row.size} bytes`);
    }
    const chunkBytes = options.chunkBytes ?? DEFAULT_READ_CHUNK_BYTES;
    if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 1 || chunkBytes > MAX_READ_CHUNK_BYTES) {
      throw new InvalidArgumentError(`chunkBytes must be from 1 to ${MAX_READ_CHUNK_BYTES}, got ${String(chunkBytes)}`);
    }
    const path = segmentPath(this.#segmentsDir, row.seg);
    const recordEnd = row.off + rowRecordLength(row);
    // Truncation guard, synchronously, so the caller can refuse before sending any header. The
    // reader checks again against the handle it actually reads from.
    let fileSize: number;
    try {
      fileSize = statSync(path).size;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw new StoreIoError(`cannot stat ${path}`, { cause: error });
      if (!this.#segments.has(row.seg)) throw new NotFoundError(`${displayId(id)} was evicted from this node`);
      fileSize = -1;
    }
    if (fileSize < recordEnd) {
      const error = new TruncatedError(
        fileSize < 0
          ? `segment file ${path} holding ${displayId(id)} is missing`
          : `${path} is ${fileSize} bytes but the record of ${displayId(id)} at ${row.off} needs ${recordEnd}: the segment was truncated`,
      );
      void this.#dropCorrupt(idKey, row, error);
      throw error;
    }
    this.#touch(row.seg);
    const plan = {
      path,
      recordOffset: row.off,
      bodyLen: row.bodyLen,
      trailerLen: row.trailerLen,
      bodyCrc: row.bodyCrc,
      offset,
      length,
      chunkBytes,
      signal: options.signal,
      onMissing: async (): Promise<Error> => {
        if (!this.#segments.has(row.seg)) return new NotFoundError(`${displayId(id)} was evicted from this node`);
        return this.#dropCorrupt(idKey, row, new TruncatedError(`segment file ${path} holding ${displayId(id)} is missing`));
      },
      onCorrupt: (error: CorruptRecordError): Promise<Error> => this.#dropCorrupt(idKey, row, error),
    };
    return { manifest: manifestOfRow(row), offset, length, chunks: { [Symbol.asyncIterator]: () => readBody(plan) } };
  }

  /** Reports a record that failed a check and removes it from the index (no feed entry). */
  async #dropCorrupt(idKey: string, row: ArtifactRow, error: CorruptRecordError): Promise<Error> {
    // Absent at once (this runs before the caller's first await), durable once committed.
    this.#dropping.set(idKey, row);
    try {
      const dropped = await this.#index.commit((tx) => tx.dropArtifact(idKey, row.seg, row.off));
      if (dropped) {
        this.#emit({
          type: "corrupt-record",
          id: { namespace: row.ns, kind: row.kind, key: row.key },
          segment: row.seg,
          offset: row.off,
          reason: error.message,
          manifest: manifestOfRow(row),
        });
      }
    } catch {
      // The store is closing or the index failed: the next open re-checks the segment.
    } finally {
      if (this.#dropping.get(idKey) === row) this.#dropping.delete(idKey);
    }
    return error;
  }

  // ---------------------------------------------------------------- feed and listing

  feedHead(): number {
    this.#assertOpen();
    return this.#index.counters.feedHead;
  }

  feedFloor(): number {
    this.#assertOpen();
    return this.#index.counters.feedFloor;
  }

  readFeed(afterSeq: number, limit: number): FeedEntry[] {
    this.#assertOpen();
    checkSafeInteger("afterSeq", afterSeq, 0);
    checkSafeInteger("limit", limit, 1);
    const floor = this.#index.counters.feedFloor;
    if (afterSeq < floor) throw new FeedTrimmedError(afterSeq, floor);
    return this.#index.feedEntries(afterSeq, limit);
  }

  waitForFeed(afterSeq: number, signal: AbortSignal): Promise<void> {
    try {
      this.#assertOpen();
      checkSafeInteger("afterSeq", afterSeq, 0);
    } catch (error) {
      return Promise.reject(error as Error);
    }
    return this.#waiters.wait(afterSeq, this.#index.counters.feedHead, signal);
  }

  listManifests(cursor: Uint8Array | undefined, maxItems: number, maxBytes: number): ListPage {
    this.#assertOpen();
    checkSafeInteger("maxItems", maxItems, 1);
    checkSafeInteger("maxBytes", maxBytes, 1);
    const from = cursor && cursor.length > 0 ? Buffer.from(cursor) : undefined;
    if (from && from.length < 9) throw new InvalidArgumentError("listManifests cursor is malformed; pass back a nextCursor unchanged");
    const manifests: Manifest[] = [];
    let bytes = 0;
    let last: Buffer | undefined;
    let done = true;
    for (const key of this.#index.versionKeysDescending(from)) {
      if (from && key.equals(from)) continue;
      const idKey = key.subarray(8).toString("utf8");
      const row = this.#index.artifact(idKey);
      if (!row || !versionKey(BigInt(row.version), idKey).equals(key)) continue;
      const size = manifestBytes(row);
      if (manifests.length >= maxItems || (manifests.length > 0 && bytes + size > maxBytes)) {
        done = false;
        break;
      }
      manifests.push(manifestOfRow(row));
      bytes += size;
      last = Buffer.from(key);
    }
    const nextCursor = last ? new Uint8Array(last) : from ? new Uint8Array(from) : new Uint8Array(0);
    return { manifests, nextCursor, done };
  }

  // ---------------------------------------------------------------- meta, usage, lifecycle

  getMeta<T>(key: string): T | undefined {
    this.#assertOpen();
    this.#checkMetaKey(key);
    return this.#index.user<T>(key);
  }

  putMeta(key: string, value: unknown): Promise<void> {
    try {
      this.#assertOpen();
      this.#checkMetaKey(key);
    } catch (error) {
      return Promise.reject(error as Error);
    }
    // undefined deletes the key, so getMeta returns undefined again.
    return this.#track(this.#index.commit((tx) => (value === undefined ? tx.deleteUser(key) : tx.putUser(key, value))));
  }

  #checkMetaKey(key: string): void {
    if (typeof key !== "string" || key.length === 0 || key.length > MAX_META_KEY_LENGTH) {
      throw new InvalidArgumentError(`meta key must be a string of 1 to ${MAX_META_KEY_LENGTH} characters`);
    }
  }

  usage(): StoreUsage {
    this.#assertOpen();
    const c = this.#index.counters;
    return {
      liveBytes: c.liveBytes,
      diskBytes: this.#capacity.diskBytes,
      capacityBytes: this.#opts.capacityBytes,
      artifactCount: c.artifactCount,
      segmentCount: this.#segments.size,
      evictedCount: c.evictedCount,
    };
  }

  /** Writer-lane occupancy, for metrics. */
  laneStats(): { active: number; pending: number; lanes: number } {
    return { active: this.#lanes.activeCount, pending: this.#lanes.pendingCount, lanes: this.#opts.lanes };
  }

  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closed = true;
    this.#closing = this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    clearInterval(this.#lruTimer);
    this.#waiters.rejectAll(new StoreClosedError());
    while (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
    while (this.#background.size > 0) await Promise.allSettled([...this.#background]);
    const active = new Map<number, ActiveSegment>();
    for (const lane of this.#lanes.lanes) {
      if (lane.segment && !lane.segment.failed && !lane.segment.syncer.failure) active.set(lane.segment.id, lane.segment);
    }
    const snapshot = [...this.#segments.values()].map((s) => [s.id, s.lastAccess] as const);
    const tick = this.#accessTick;
    try {
      // Everything in the lane segments is synced and reconciled now: the next open need not
      // scan below these checkpoints.
      await this.#index.commit((tx) => {
        for (const [id, lastAccess] of snapshot) {
          const row = tx.segment(id);
          if (!row) continue;
          const seg = active.get(id);
          tx.putSegment(id, { ...row, lastAccess, checkpoint: seg ? seg.size : row.checkpoint });
        }
        tx.setSys(SYS.accessTick, tick);
      });
    } catch {
      // Not fatal: the next open scans from the older checkpoints.
    }
    for (const lane of this.#lanes.lanes) {
      const seg = lane.segment;
      lane.segment = undefined;
      await seg?.close().catch(() => {});
    }
    await this.#index.close();
    await this.#lock.release();
  }

  // ---------------------------------------------------------------- helpers

  #assertOpen(): void {
    if (this.#closed) throw new StoreClosedError();
  }

  #track<T>(promise: Promise<T>): Promise<T> {
    this.#inflight.add(promise);
    const remove = (): void => {
      this.#inflight.delete(promise);
    };
    promise.then(remove, remove);
    return promise;
  }

  #trackBackground(promise: Promise<unknown>): void {
    this.#background.add(promise);
    const remove = (): void => {
      this.#background.delete(promise);
    };
    promise.then(remove, remove);
  }

  #noteFeedTrim(floor: number): void {
    const step = Math.max(1, Math.floor(this.#opts.feedMaxEntries / 16));
    if (floor >= this.#lastReportedFloor + step) {
      this.#lastReportedFloor = floor;
      this.#emit({ type: "feed-trimmed", floor });
    }
  }

  #emit(event: StoreEvent): void {
    try {
      this.#opts.onEvent(event);
    } catch {
      // A failing listener must not fail the write that produced the event.
    }
  }
}

