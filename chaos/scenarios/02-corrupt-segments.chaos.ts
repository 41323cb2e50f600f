/**
 * Scenario 2 — corrupted and truncated segments. Rounds of: write artifacts into a real store
 * (small segments, so most are sealed and never rescanned at open), close it, then damage the
 * segment files — truncate at a record boundary, one byte before or after it, or at a random
 * offset; flip random bits in bodies, prefixes and trailers — reopen, and read every artifact,
 * half of them in full and half as a range read (a random offset and length inside the body,
 * compared with that slice of the body). Oracle: a read of a damaged body ends in an error or
 * NotFound (dropped), never OK with other bytes — a range read too, wherever the damage lies in
 * the record; undamaged artifacts read back byte for byte; a dropped record stays absent.
 *
 * Then the same damage on a node of a two-node mesh, while it serves: bits flipped in the bodies
 * of records node B holds (replicated from A). Oracle: every read of a damaged body through B's
 * public API ends in an error, never OK with other bytes; each damaged record is dropped and
 * fetched again from A by B's repairer (re-fetches counted by B), after which all of B's
 * artifacts read back byte for byte.
 */
import { createHash } from "node:crypto";
import { open as openFile, readdir, readFile, truncate, stat } from "node:fs/promises";
import { join } from "node:path";
import { expect, it } from "vitest";
import { NotFoundError } from "../../src/store/errors.js";
import { openStore } from "../../src/store/store.js";
import type { Store } from "../../src/store/types.js";
import { makePki, publicClient, startMeshNode, waitForArtifacts } from "../../test/helpers/mesh.js";
import { bodyBytes, digestOf, getCas, putCasBody } from "../lib/artifacts.js";
import { chaosContext, Violations, type Rng } from "../lib/context.js";
import { scratch } from "../lib/nodes.js";

const ctx = chaosContext("02-corrupt-segments");
const ROUNDS = ctx.size(12, 120);
const ARTIFACTS_PER_ROUND = ctx.size(300, 400);
const NS = "corrupt";
const meshCtx = chaosContext("02-corrupt-segments", "mesh");
const MESH_ROUNDS = ctx.size(2, 10);
const MESH_ARTIFACTS_PER_ROUND = ctx.size(60, 300);

async function* once(b: Uint8Array): AsyncGenerator<Uint8Array> {
  yield b;
}

interface RecordLoc {
  readonly file: string;
  readonly offset: number;
  readonly bodyStart: number;
  /** End of the body (the trailer follows). */
  readonly bodyEnd: number;
  readonly end: number;
  readonly key: string;
}

/** Record boundaries of a segment file, from its prefixes (stops at the first unreadable one). */
async function records(file: string): Promise<RecordLoc[]> {
  const buf = await readFile(file);
  const out: RecordLoc[] = [];
  for (let off = 0; off + 32 <= buf.length; ) {
    if (buf.toString("latin1", off, off + 4) !== "GRNR") break;
    const bodyLen = Number(buf.readBigUInt64BE(off + 8));
    const trailerLen = buf.readUInt32BE(off + 16);
    const end = off + 32 + bodyLen + trailerLen;
    if (end > buf.length) break;
    const trailer = JSON.parse(buf.toString("utf8", off + 32 + bodyLen, end)) as { key: string };
    out.push({ file, offset: off, bodyStart: off + 32, bodyEnd: off + 32 + bodyLen, end, key: trailer.key });
    off = end;
  }
  return out;
}

type ReadResult = { kind: "ok"; digest: string; length: number } | { kind: "error"; name: string };

/** Reads a body, or the range [offset, offset + length) of it; hashes what arrived. */
async function readAll(store: Store, key: string, range?: { offset: number; length: number }): Promise<ReadResult> {
  const h = createHash("sha256");
  let length = 0;
  try {
    const r = store.read({ namespace: NS, kind: "cas", key }, range ?? {});
    for await (const c of r.chunks) {
      h.update(c);
      length += c.length;
    }
  } catch (e) {
    return { kind: "error", name: (e as Error).name };
  }
  return { kind: "ok", digest: h.digest("hex"), length };
}

async function flipBit(file: string, pos: number, rng: Rng): Promise<void> {
  const fh = await openFile(file, "r+");
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, pos);
    b[0] = b[0]! ^ (1 << rng.int(0, 7));
    await fh.write(b, 0, 1, pos);
  } finally {
    await fh.close();
  }
}

it("every read of a damaged record ends in an error, never OK with other bytes", async () => {
  const v = new Violations();
  const rng = ctx.rng;
  const dir = await scratch("corrupt");
  const counts = { damagedReads: 0, damagedReadErrors: 0, damagedReadsOkSameBytes: 0, okReadsWithOtherBytes: 0, cleanReads: 0, cleanReadFailures: 0, rereadsOfDropped: 0, rereadsNotAbsent: 0 };
  // The range reads among the reads above (a damaged record read by range, whatever the damage).
  const ranges = { damagedRangeReads: 0, damagedRangeReadErrors: 0, damagedRangeReadsOkSameBytes: 0, rangeOkWithOtherBytes: 0, cleanRangeReads: 0 };
  const damage = { truncateAtBoundary: 0, truncateBoundaryMinus1: 0, truncateBoundaryPlus1: 0, truncateRandom: 0, bitFlipsBody: 0, bitFlipsHeader: 0 };
  const errorNames: Record<string, number> = {};
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const dataDir = join(dir.path, `r${round}`);
      const bodies = new Map<string, { seed: number; size: number }>();
      let store = await openStore({ dataDir, segmentMaxBytes: 512 << 10, lanes: 2 });
      const puts: Promise<unknown>[] = [];
      for (let i = 0; i < ARTIFACTS_PER_ROUND; i++) {
        const spec = { seed: rng.u32(), size: rng.int(0, 96 << 10) };
        const body = bodyBytes(spec);
        const d = digestOf(body);
        bodies.set(d, spec);
        puts.push(store.put({ namespace: NS, kind: "cas", key: d, size: body.length }, once(body)));
      }
      await Promise.all(puts);
      await store.close();

      // Damage: per segment, maybe one truncation; then bit flips in random records.
      const segDir = join(dataDir, "segments");
      const files = (await readdir(segDir)).filter((f) => f.endsWith(".seg")).map((f) => join(segDir, f));
      const damaged = new Set<string>();
      const all: RecordLoc[] = [];
      for (const file of files) {
        const recs = await records(file);
        all.push(...recs);
        if (recs.length === 0 || rng.next() < 0.5) continue;
        const size = (await stat(file)).size;
        const mode = rng.pick(["truncateAtBoundary", "truncateBoundaryMinus1", "truncateBoundaryPlus1", "truncateRandom"] as const);
        const boundary = rng.pick(recs).offset;
        const at = mode === "truncateAtBoundary" ? boundary : mode === "truncateBoundaryMinus1" ? Math.max(0, boundary - 1) : mode === "truncateBoundaryPlus1" ? boundary + 1 : rng.int(0, size - 1);
        await truncate(file, at);
        damage[mode]++;
        for (const r of recs) if (r.end > at) damaged.add(r.key);
      }
      for (const r of all) {
        if (damaged.has(r.key) || rng.next() < 0.6) continue;
        const len = (await stat(r.file)).size;
        if (r.end > len) continue;
        // Mostly body bytes (what a reader would serve), some in the prefix or trailer.
        const inBody = r.end - 32 > r.bodyStart && rng.next() < 0.85;
        const bodyLen = r.end - r.bodyStart; // includes the trailer
        const pos = inBody ? r.bodyStart + rng.int(0, Math.max(0, bodyLen - 1)) : rng.pick([r.offset + rng.int(0, 31), r.end - 1]);
        await flipBit(r.file, pos, rng);
        if (inBody) damage.bitFlipsBody++;
        else damage.bitFlipsHeader++;
        damaged.add(r.key);
      }

      store = await openStore({ dataDir, segmentMaxBytes: 512 << 10, lanes: 2 });
      try {
        const dropped: string[] = [];
        for (const [key, spec] of bodies) {
          // A range read of a non-empty body half of the time: offset in [0, size), length >= 1.
          let range: { offset: number; length: number } | undefined;
          if (spec.size > 0 && rng.next() < 0.5) {
            const offset = rng.int(0, spec.size - 1);
            range = { offset, length: rng.int(1, spec.size - offset) };
          }
          const want = range ? digestOf(bodyBytes(spec).subarray(range.offset, range.offset + range.length)) : key;
          const wantLength = range ? range.length : spec.size;
          const r = await readAll(store, key, range);
          const hit = damaged.has(key);
          if (hit) counts.damagedReads++;
          else counts.cleanReads++;
          if (range) {
            if (hit) ranges.damagedRangeReads++;
            else ranges.cleanRangeReads++;
          }
          if (r.kind === "ok") {
            if (r.digest !== want || r.length !== wantLength) {
              counts.okReadsWithOtherBytes++;
              if (range) ranges.rangeOkWithOtherBytes++;
              v.check(false, `round ${round}: OK ${range ? `range read [${range.offset}, +${range.length})` : "read"} of ${key} gave ${r.length}/${wantLength} B hashing to ${r.digest}`);
            } else if (hit) {
              counts.damagedReadsOkSameBytes++;
              if (range) ranges.damagedRangeReadsOkSameBytes++;
            }
          } else {
            errorNames[r.name] = (errorNames[r.name] ?? 0) + 1;
            if (hit && range) ranges.damagedRangeReadErrors++;
            if (hit) counts.damagedReadErrors++;
            else {
              // A clean record after a truncation point or a torn prefix is legitimately gone.
              counts.cleanReadFailures++;
            }
            if (r.name !== "NotFoundError") dropped.push(key);
          }
        }
        // A record that failed a check is dropped: read again, it is absent.
        for (const key of dropped) {
          counts.rereadsOfDropped++;
          try {
            store.read({ namespace: NS, kind: "cas", key });
            counts.rereadsNotAbsent++;
            v.check(false, `round ${round}: ${key} failed a check but is still indexed`);
          } catch (e) {
            if (!(e instanceof NotFoundError)) {
              counts.rereadsNotAbsent++;
              v.check(false, `round ${round}: re-read of dropped ${key} threw ${(e as Error).name}, not NotFound`);
            }
          }
        }
      } finally {
        await store.close();
      }
    }
  } finally {
    await dir.cleanup();
  }
  const figures = { rounds: ROUNDS, artifactsPerRound: ARTIFACTS_PER_ROUND, damage, ...counts, ...ranges, errorNames, damagedReadsEndingInErrorOrSameBytesPct: counts.damagedReads === 0 ? 0 : (100 * (counts.damagedReadErrors + counts.damagedReadsOkSameBytes)) / counts.damagedReads };
  ctx.record({ passed: v.list.length === 0 && counts.damagedReads > 0 && ranges.damagedRangeReads > 0, figures, violations: v.list });
  ctx.log(JSON.stringify(figures));
  expect(v.list).toEqual([]);
  expect(counts.damagedReads).toBeGreaterThan(0);
  expect(ranges.damagedRangeReads).toBeGreaterThan(0);
});

it("a damaged record on a serving mesh node is answered with an error, then fetched again from its peer", async () => {
  const v = new Violations();
  const rng = meshCtx.rng;
  const dir = await scratch("corrupt-mesh");
  const counts = { artifacts: 0, damaged: 0, damagedReads: 0, damagedReadErrors: 0, okReadsWithOtherBytes: 0, refetchedFromPeer: 0, readsAfterRepair: 0, readsAfterRepairWrong: 0 };
  const errorCodes: Record<string, number> = {};
  const pki = await makePki(join(dir.path, "pki"));
  const a = await startMeshNode({ name: "a", pki, root: dir.path, hooks: { processMetrics: false } });
  const b = await startMeshNode({ name: "b", pki, root: dir.path, peers: [a.peerAddress], hooks: { processMetrics: false } });
  const connA = publicClient(a);
  const connB = publicClient(b);
  try {
    for (let round = 0; round < MESH_ROUNDS; round++) {
      const bodies = new Map<string, Uint8Array>();
      for (let i = 0; i < MESH_ARTIFACTS_PER_ROUND; i++) {
        const body = bodyBytes({ seed: rng.u32(), size: rng.int(1 << 10, 256 << 10) });
        bodies.set(await putCasBody(connA, NS, body), body);
      }
      counts.artifacts += bodies.size;
      await waitForArtifacts(b, NS, [...bodies.keys()], AbortSignal.timeout(120_000));

      // Flip one bit in the body of about a third of this round's records on B.
      const segDir = join(b.config.dataDir, "segments");
      const recs: RecordLoc[] = [];
      for (const f of (await readdir(segDir)).filter((n) => n.endsWith(".seg"))) recs.push(...(await records(join(segDir, f))));
      const damaged = new Set<string>();
      for (const r of recs) {
        if (!bodies.has(r.key) || damaged.has(r.key) || rng.next() >= 0.35) continue;
        await flipBit(r.file, r.bodyStart + rng.int(0, r.bodyEnd - r.bodyStart - 1), rng);
        damaged.add(r.key);
      }
      counts.damaged += damaged.size;
      const repairedBefore = b.replication?.repairer.stats().repaired ?? 0;

      for (const key of damaged) {
        const r = await getCas(connB, NS, key);
        counts.damagedReads++;
        if (r.kind === "ok") {
          counts.okReadsWithOtherBytes++;
          v.check(false, `round ${round}: damaged ${key} read OK from B (${r.length} B hashing to ${r.digest})`);
        } else {
          counts.damagedReadErrors++;
          errorCodes[r.code] = (errorCodes[r.code] ?? 0) + 1;
        }
      }
      // Every damaged record comes back on B, fetched from A (the repairer settles its count
      // once the round that fetched it ends).
      await waitForArtifacts(b, NS, [...damaged], AbortSignal.timeout(120_000));
      await b.replication?.repairer.idle();
      const refetched = (b.replication?.repairer.stats().repaired ?? 0) - repairedBefore;
      counts.refetchedFromPeer += refetched;
      v.check(refetched === damaged.size, `round ${round}: ${damaged.size} records damaged, ${refetched} re-fetched from the peer`);
      for (const [key, body] of bodies) {
        const r = await getCas(connB, NS, key);
        counts.readsAfterRepair++;
        if (r.kind !== "ok" || r.digest !== key || r.length !== body.length) {
          counts.readsAfterRepairWrong++;
          v.check(false, `round ${round}: after repair B serves ${key} as ${JSON.stringify(r)}`);
        }
      }
    }
  } finally {
    connA.close();
    connB.close();
    await b.close();
    await a.close();
    await dir.cleanup();
  }
  const figures = { rounds: MESH_ROUNDS, ...counts, errorCodes, damagedReadsEndingInErrorPct: counts.damagedReads === 0 ? 0 : (100 * counts.damagedReadErrors) / counts.damagedReads, refetchedPct: counts.damaged === 0 ? 0 : (100 * counts.refetchedFromPeer) / counts.damaged };
  meshCtx.record({ passed: v.list.length === 0 && counts.damaged > 0, figures, violations: v.list });
  meshCtx.log(JSON.stringify(figures));
  expect(v.list).toEqual([]);
  expect(counts.damaged).toBeGreaterThan(0);
});
