/**
 * Crash recovery at open: reconciles segment files with the index before any write.
 *   - Index entries in a missing segment, or running past the end of their segment, are dropped
 *     and reported ('corrupt-record').
 *   - Segments not marked sealed are scanned from their checkpoint; a torn or invalid tail is
 *     truncated (only those segments: a sealed segment is never truncated, its bad records are
 *     only reported and dropped from the index). Valid records the index does not point at
 *     (a crash between fsync and index commit) are re-indexed, with feed entries, under the same
 *     rules as a live write (CAS: when absent; KV: last-writer-wins).
 *   - Unsealed segments are then either handed back to writer lanes or sealed.
 * Owns this reconciliation; it runs before the store accepts operations, so it commits with
 * IndexDb.commitNow.
 */
import { readdir, stat, truncate, unlink, open as openFile } from "node:fs/promises";
import { type ArtifactRow, idKeyOf, manifestOfRow, parseIdKey, rowRecordLength, type IndexDb, type SegmentRow, SYS } from "./index-db.js";
import { recordLength } from "./record-format.js";
import { parseSegmentFileName, segmentPath, syncDirectory } from "./segment-file.js";
import { scanSegment } from "./segment-scan.js";
import type { StoreEvent } from "./types.js";

/** Records re-indexed per index transaction during recovery (see the loop in recoverStore). */
const REINDEX_CHUNK = 2_000;

export interface RecoveryContext {
  readonly index: IndexDb;
  readonly segmentsDir: string;
  readonly segmentMaxBytes: number;
  readonly lanes: number;
  readonly emit: (event: StoreEvent) => void;
}

export interface RecoveredSegment {
  readonly id: number;
  readonly sealed: boolean;
  readonly size: number;
  readonly lastAccess: number;
}

export interface RecoveryResult {
  readonly segments: RecoveredSegment[];
  /** Unsealed segments to reopen as lane segments (at most `lanes`), newest first. */
  readonly reopen: Array<{ readonly id: number; readonly size: number }>;
  readonly maxVersion: bigint;
  readonly nextSegmentId: number;
}

/** Drops the index entries `entries` of segment `seg` and reports each one that was dropped. */
function dropAndReport(ctx: RecoveryContext, seg: number, entries: ReadonlyArray<{ off: number; idKey: string }>, reason: string): void {
  const dropped: Array<{ off: number; idKey: string; row: ArtifactRow }> = [];
  ctx.index.commitNow((tx) => {
    for (const e of entries) {
      const row = tx.dropArtifact(e.idKey, seg, e.off);
      if (row) dropped.push({ ...e, row });
    }
  });
  // The manifest lets the node fetch the body again from a peer (replication/repairer.ts).
  for (const { off, idKey, row } of dropped) ctx.emit({ type: "corrupt-record", id: parseIdKey(idKey), segment: seg, offset: off, reason, manifest: manifestOfRow(row) });
}

/** Drops index entries of `seg` whose record does not fit in `size` bytes. */
function dropEntriesPastEnd(ctx: RecoveryContext, seg: number, size: number): void {
  const doomed: Array<{ off: number; idKey: string }> = [];
  for (const entry of ctx.index.entriesInSegmentDescending(seg)) {
    const row = ctx.index.artifact(entry.idKey);
    if (row && row.seg === seg && row.off === entry.off && entry.off + rowRecordLength(row) <= size) break;
    doomed.push(entry);
  }
  if (doomed.length === 0) return;
  dropAndReport(ctx, seg, doomed, `segment is ${size} bytes, the record runs past its end`);
}

async function fsyncFile(path: string): Promise<void> {
  const handle = await openFile(path, "r+");
  try {
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

export async function recoverSegments(ctx: RecoveryContext): Promise<RecoveryResult> {
  const { index } = ctx;
  const files = new Map<number, number>();
  for (const name of await readdir(ctx.segmentsDir)) {
    const id = parseSegmentFileName(name);
    if (id === undefined) continue;
    files.set(id, (await stat(segmentPath(ctx.segmentsDir, id))).size);
  }
  const rows = index.segmentRows();
  let maxVersion = 0n;

  // Segments evicted before the last stop: finish removing them.
  let unlinkedAny = false;
  for (const [id, row] of rows) {
    if (!row.evicted) continue;
    if (files.delete(id)) {
      await unlink(segmentPath(ctx.segmentsDir, id));
      unlinkedAny = true;
    }
    const entries = index.entriesInSegment(id);
    index.commitNow((tx) => {
      for (const { off, idKey } of entries) tx.dropArtifact(idKey, id, off);
      tx.deleteSegment(id);
    });
    rows.delete(id);
  }
  if (unlinkedAny) await syncDirectory(ctx.segmentsDir);

  // Index entries in segments whose file is gone (found through the index itself, so entries
  // whose segment row is gone too are caught), then rows without a file.
  for (const id of [...index.segmentIdsInIndex()]) {
    if (files.has(id)) continue;
    const entries = index.entriesInSegment(id);
    dropAndReport(ctx, id, entries, "segment file is missing");
  }
  for (const [id] of rows) {
    if (files.has(id)) continue;
    index.commitNow((tx) => tx.deleteSegment(id));
    rows.delete(id);
  }

  const segments = new Map<number, { sealed: boolean; size: number; lastAccess: number }>();
  for (const [id, fileSize] of [...files].sort((a, b) => a[0] - b[0])) {
    const row: SegmentRow = rows.get(id) ?? { sealed: false, lastAccess: 0, checkpoint: 0 };
    if (row.sealed) {
      dropEntriesPastEnd(ctx, id, fileSize);
      segments.set(id, { sealed: true, size: fileSize, lastAccess: row.lastAccess });
      continue;
    }
    const path = segmentPath(ctx.segmentsDir, id);
    const from = row.checkpoint <= fileSize ? row.checkpoint : 0;
    const scan = await scanSegment(path, from);
    let size = scan.fileSize;
    if (scan.validEnd < scan.fileSize) {
      await truncate(path, scan.validEnd);
      await fsyncFile(path);
      size = scan.validEnd;
    }
    for (const record of scan.records) if (record.manifest.version > maxVersion) maxVersion = record.manifest.version;
    const validAt = new Map(scan.records.map((r) => [r.off, r]));
    const staleEntries = index.entriesInSegment(id, from).filter(({ off }) => !validAt.has(off));
    // Re-indexing runs in transactions of REINDEX_CHUNK records: one transaction over a whole
    // segment (~80,000 small records) left LMDB a free list of ~116,000 pages, and the first
    // thousand writes after it cost ~12 x the CPU of the next (bench §9). A crash between chunks
    // is safe: the checkpoint moves only with the last one, and records already indexed are skipped.
    dropAndReport(ctx, id, staleEntries, "no valid record at the indexed offset after a crash");
    let reindexed = 0;
    for (let first = 0; first < scan.records.length || first === 0; first += REINDEX_CHUNK) {
      const chunk = scan.records.slice(first, first + REINDEX_CHUNK);
      const last = first + REINDEX_CHUNK >= scan.records.length;
      reindexed += index.commitNow((tx) => {
        let n = 0;
        for (const r of chunk) {
          const m = r.manifest;
          const current = tx.artifact(idKeyOf(m.namespace, m.kind, m.key));
          if (current && current.seg === id && current.off === r.off) continue;
          const change = tx.applyChange({
            seg: id,
            off: r.off,
            bodyLen: r.bodyLen,
            trailerLen: r.trailerLen,
            bodyCrc: r.bodyCrc,
            ns: m.namespace,
            kind: m.kind,
            key: m.key,
            size: m.size,
            digest: m.digest,
            version: m.version.toString(10),
            origin: m.origin,
          });
          if (change.applied) n++;
        }
        if (last) tx.putSegment(id, { sealed: false, lastAccess: row.lastAccess, checkpoint: size });
        return n;
      });
    }
    for (const b of scan.bad) {
      ctx.emit({
        type: "corrupt-record",
        id: b.manifest
          ? { namespace: b.manifest.namespace, kind: b.manifest.kind, key: b.manifest.key }
          : { namespace: "", kind: "cas", key: "" },
        segment: id,
        offset: b.off,
        reason: b.reason,
      });
    }
    const truncatedBytes = scan.fileSize - size;
    if (truncatedBytes > 0 || reindexed > 0) {
      ctx.emit({ type: "recovered", segment: id, truncatedBytes, reindexed });
    }
    dropEntriesPastEnd(ctx, id, size);
    segments.set(id, { sealed: false, size, lastAccess: row.lastAccess });
  }

  // Hand unsealed segments back to lanes (newest first); seal the rest; drop empty ones.
  const reopen: Array<{ id: number; size: number }> = [];
  let removedAny = false;
  for (const id of [...segments.keys()].sort((a, b) => b - a)) {
    const s = segments.get(id);
    if (!s || s.sealed) continue;
    if (s.size === 0) {
      await unlink(segmentPath(ctx.segmentsDir, id));
      index.commitNow((tx) => tx.deleteSegment(id));
      segments.delete(id);
      removedAny = true;
    } else if (reopen.length < ctx.lanes && s.size + recordLength(0, 1) < ctx.segmentMaxBytes) {
      reopen.push({ id, size: s.size });
    } else {
      index.commitNow((tx) => tx.putSegment(id, { sealed: true, lastAccess: s.lastAccess, checkpoint: s.size }));
      s.sealed = true;
    }
  }
  if (removedAny) await syncDirectory(ctx.segmentsDir);

  const maxId = Math.max(0, ...segments.keys(), ...rows.keys());
  const nextSegmentId = Math.max(index.sys<number>(SYS.nextSegmentId) ?? 1, maxId + 1);
  return {
    segments: [...segments].map(([id, s]) => ({ id, ...s })),
    reopen,
    maxVersion,
    nextSegmentId,
  };
}
