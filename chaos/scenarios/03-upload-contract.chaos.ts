/**
 * Scenario 3 — the upload contract, property-based (fast-check) through the public API of a
 * real node: wrong digest, wrong declared size, a client that disconnects at a random byte, and
 * correct uploads, in random order; then 64 concurrent uploads of one large body. Oracle: every
 * case gets its proper code, nothing bad is indexed (a later honest put of the same digest is
 * the first to store it: alreadyPresent=false), one stored copy of the duplicated body, and
 * every stored digest reads back byte for byte.
 */
import { create } from "@bufbuild/protobuf";
import fc from "fast-check";
import { afterAll, expect, it } from "vitest";
import { ArtifactService, Kind, PutRequestSchema, type PutRequest } from "../../src/gen/granary/artifact/v1/artifact_pb.js";
import type { GranaryNode } from "../../src/node/granary-node.js";
import { connectPublic, type PublicConnection } from "../../src/transport/public-client.js";
import { publicClient } from "../../test/helpers/mesh.js";
import { bodyBytes, codeOf, digestOf, getCas } from "../lib/artifacts.js";
import { chaosContext, Violations } from "../lib/context.js";
import { scratch, startSingleNode } from "../lib/nodes.js";

const ctx = chaosContext("03-upload-contract");
const RUNS = ctx.size(400, 5000);
const DUP_CLIENTS = 64;
const DUP_BYTES = ctx.size(16 << 20, 256 << 20);
const NS = "upload";
const SIZE_MAX = ctx.size(1 << 20, 4 << 20);

let node: GranaryNode | undefined;
let dir: Awaited<ReturnType<typeof scratch>> | undefined;
afterAll(async () => {
  await node?.close();
  await dir?.cleanup();
});

type Case =
  | { kind: "ok"; seed: number; size: number }
  | { kind: "wrong-digest"; seed: number; size: number }
  | { kind: "wrong-size"; seed: number; size: number; delta: number }
  | { kind: "disconnect"; seed: number; size: number; at: number };

/** Header and chunks; with `cutAt`, only the bytes before it, then the client disconnects (abort + stream reset). */
async function* requests(header: { key: string; size: bigint | undefined }, body: Uint8Array, chunk: number, cut?: { at: number; abort: () => void }): AsyncGenerator<PutRequest> {
  yield create(PutRequestSchema, { msg: { case: "header", value: { namespace: NS, kind: Kind.CAS, key: header.key, ...(header.size === undefined ? {} : { size: header.size }) } } });
  const end = cut ? cut.at : body.length;
  for (let o = 0; o < end; o += chunk) yield create(PutRequestSchema, { msg: { case: "chunk", value: body.subarray(o, Math.min(end, o + chunk)) } });
  if (cut) {
    cut.abort();
    throw new Error(`client disconnects after ${cut.at} of ${body.length} bytes`);
  }
}

async function putOutcome(conn: PublicConnection, gen: AsyncIterable<PutRequest>, signal?: AbortSignal): Promise<{ code: string; alreadyPresent?: boolean }> {
  try {
    const r = await conn.client(ArtifactService).put(gen, signal ? { signal } : {});
    return { code: "OK", alreadyPresent: r.alreadyPresent };
  } catch (e) {
    return { code: codeOf(e) };
  }
}

it("answers every upload case with its code and indexes nothing bad; 64 duplicate uploads store one copy", async () => {
  const v = new Violations();
  dir = await scratch("upload");
  node = await startSingleNode(dir.path);
  const conn = publicClient(node);
  const codes: Record<string, Record<string, number>> = {};
  const note = (k: string, code: string): void => {
    codes[k] ??= {};
    codes[k][code] = (codes[k][code] ?? 0) + 1;
  };
  const stored = new Map<string, number>();
  const caseArb: fc.Arbitrary<Case> = fc.oneof(
    fc.record({ kind: fc.constant("ok" as const), seed: fc.nat(), size: fc.integer({ min: 0, max: SIZE_MAX }) }),
    fc.record({ kind: fc.constant("wrong-digest" as const), seed: fc.nat(), size: fc.integer({ min: 0, max: SIZE_MAX }) }),
    fc.record({ kind: fc.constant("wrong-size" as const), seed: fc.nat(), size: fc.integer({ min: 1, max: SIZE_MAX }), delta: fc.integer({ min: -4096, max: 4096 }).filter((d) => d !== 0) }),
    fc
      .record({ kind: fc.constant("disconnect" as const), seed: fc.nat(), size: fc.integer({ min: 2, max: SIZE_MAX }), at: fc.double({ min: 0, max: 0.99, noNaN: true }) })
      .map((c) => ({ ...c, at: Math.floor(c.at * c.size) })),
  );
  await fc.assert(
    fc.asyncProperty(caseArb, fc.integer({ min: 1024, max: 1 << 20 }), async (c, chunk) => {
      // Distinct bodies per case: the seed mixes in the run index.
      const body = bodyBytes({ seed: (c.seed * 7919 + c.size) >>> 0, size: c.size });
      const digest = digestOf(body);
      if (stored.has(digest)) return;
      if (c.kind === "ok") {
        const r = await putOutcome(conn, requests({ key: digest, size: BigInt(c.size) }, body, chunk));
        note(c.kind, r.code);
        v.check(r.code === "OK" && r.alreadyPresent === false, `ok put of ${c.size} B answered ${r.code} alreadyPresent=${String(r.alreadyPresent)}`);
        stored.set(digest, c.size);
        return;
      }
      if (c.kind === "wrong-digest") {
        const claimed = digestOf(bodyBytes({ seed: c.seed ^ 0x5a5a5a5a, size: c.size + 1 }));
        // A put naming a stored digest is answered alreadyPresent without reading the body (contract).
        if (stored.has(claimed)) return;
        const r = await putOutcome(conn, requests({ key: claimed, size: BigInt(c.size) }, body, chunk));
        note(c.kind, r.code);
        v.check(r.code === "InvalidArgument", `wrong digest answered ${r.code}`);
        v.check(!node!.store.stat({ namespace: NS, kind: "cas", key: claimed }), `wrong digest: ${claimed} indexed`);
        v.check(!node!.store.stat({ namespace: NS, kind: "cas", key: digest }), `wrong digest: real digest ${digest} indexed`);
        return;
      }
      if (c.kind === "wrong-size") {
        const declared = Math.max(0, c.size + c.delta);
        const r = await putOutcome(conn, requests({ key: digest, size: BigInt(declared) }, body, chunk));
        note(c.kind, r.code);
        v.check(r.code === "InvalidArgument", `declared ${declared} for ${c.size} B answered ${r.code}`);
        v.check(!node!.store.stat({ namespace: NS, kind: "cas", key: digest }), `wrong size: ${digest} indexed`);
        return;
      }
      // Disconnect after `at` (< size) body bytes: the rest is never sent.
      const ac = new AbortController();
      const r = await putOutcome(conn, requests({ key: digest, size: BigInt(c.size) }, body, chunk, { at: c.at, abort: () => ac.abort() }), ac.signal);
      note(c.kind, r.code);
      v.check(r.code !== "OK", `disconnect at ${c.at}/${c.size} answered OK`);
      // The honest retry must be the one that stores it: nothing from the cut upload was indexed.
      const retry = await putOutcome(conn, requests({ key: digest, size: BigInt(c.size) }, body, 1 << 20));
      note("retry-after-disconnect", retry.code);
      v.check(retry.code === "OK" && retry.alreadyPresent === false, `after a disconnect at ${c.at}/${c.size}, the retry answered ${retry.code} alreadyPresent=${String(retry.alreadyPresent)}`);
      stored.set(digest, c.size);
    }),
    { numRuns: RUNS, seed: ctx.rng.u32() | 0, endOnFailure: true },
  );

  // 64 concurrent uploads of one body, each on its own connection.
  const dup = bodyBytes({ seed: ctx.rng.u32(), size: DUP_BYTES });
  const dupDigest = digestOf(dup);
  const before = node.store.usage();
  const conns = Array.from({ length: DUP_CLIENTS }, () => connectPublic({ server: `http://127.0.0.1:${node!.publicAddress.port}` }));
  const results = await Promise.all(conns.map((c) => putOutcome(c, requests({ key: dupDigest, size: BigInt(DUP_BYTES) }, dup, 1 << 20))));
  for (const c of conns) c.close();
  const after = node.store.usage();
  const firsts = results.filter((r) => r.code === "OK" && r.alreadyPresent === false).length;
  const dups = results.filter((r) => r.code === "OK" && r.alreadyPresent === true).length;
  v.check(firsts === 1 && dups === DUP_CLIENTS - 1, `64 duplicate uploads: ${firsts} stored, ${dups} alreadyPresent, codes ${results.map((r) => r.code).join(",")}`);
  // Live bytes count the record (32 B prefix + trailer) around the body.
  v.check(after.liveBytes - before.liveBytes >= DUP_BYTES && after.liveBytes - before.liveBytes < DUP_BYTES + 4096, `live bytes grew by ${after.liveBytes - before.liveBytes} for one ${DUP_BYTES} B body`);
  v.check(after.diskBytes - before.diskBytes < 2 * DUP_BYTES, `disk grew by ${after.diskBytes - before.diskBytes} for one ${DUP_BYTES} B body`);
  stored.set(dupDigest, DUP_BYTES);

  // Oracle: every stored digest reads back byte for byte; the index holds exactly them.
  let oracleReads = 0;
  for (const [digest, size] of stored) {
    const r = await getCas(conn, NS, digest);
    oracleReads++;
    v.check(r.kind === "ok" && r.digest === digest && r.length === size, `stored ${digest} read back as ${JSON.stringify(r)}`);
  }
  const indexed = node.store.usage().artifactCount;
  v.check(indexed === stored.size, `index holds ${indexed} artifacts, ${stored.size} were stored`);
  conn.close();
  const figures = {
    propertyRuns: RUNS,
    codesByCase: codes,
    duplicateClients: DUP_CLIENTS,
    duplicateBodyBytes: DUP_BYTES,
    duplicateStoredCopies: firsts,
    duplicateDiskGrowthBytes: after.diskBytes - before.diskBytes,
    artifactsStored: stored.size,
    artifactsIndexed: indexed,
    badArtifactsIndexed: v.list.filter((x) => x.includes("indexed")).length,
    oracleReads,
  };
  ctx.record({ passed: v.list.length === 0, figures, violations: v.list });
  ctx.log(JSON.stringify(figures));
  expect(v.list).toEqual([]);
});
