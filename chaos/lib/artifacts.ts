/**
 * Artifacts as the oracle knows them: a body is (seed, size) so it can be regenerated and
 * compared byte for byte without being held; puts and reads through the public API; a
 * store-level audit that every index entry has a verified body.
 */
import { createHash } from "node:crypto";
import { ConnectError, Code } from "@connectrpc/connect";
import pLimit from "p-limit";
import { ArtifactService, Kind } from "../../src/gen/granary/artifact/v1/artifact_pb.js";
import { openStore } from "../../src/store/store.js";
import type { Manifest, Store } from "../../src/store/types.js";
import type { PublicConnection } from "../../src/transport/public-client.js";
import { deterministicChunks } from "../../test/helpers/data.js";
import { putRequests } from "../../test/helpers/mesh.js";
import type { Violations } from "./context.js";

export interface BodySpec {
  readonly seed: number;
  readonly size: number;
}

export function bodyBytes(b: BodySpec): Uint8Array {
  const out = new Uint8Array(b.size);
  let off = 0;
  for (const c of deterministicChunks(b.seed, b.size)) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

export function digestOf(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Log-uniform size in [lo, hi]: many small bodies, some large, like build outputs. */
export function buildSize(u: number, lo = 8 << 10, hi = 2 << 20): number {
  return Math.round(Math.exp(Math.log(lo) + u * (Math.log(hi) - Math.log(lo))));
}

export function codeOf(e: unknown): string {
  return e instanceof ConnectError ? Code[e.code] : e instanceof Error ? `error:${e.message}` : "error";
}

/** Puts a CAS body; `digest` may be given when the caller already hashed it (to time the put alone). */
export async function putCasBody(conn: PublicConnection, ns: string, body: Uint8Array, signal?: AbortSignal, digest = digestOf(body)): Promise<string> {
  await conn.client(ArtifactService).put(putRequests(ns, Kind.CAS, digest, body), signal ? { signal } : {});
  return digest;
}

export type ReadOutcome =
  | { readonly kind: "ok"; readonly digest: string; readonly length: number }
  | { readonly kind: "error"; readonly code: string };

/** Full Get of a CAS digest; hashes what arrived (never holds it). */
export async function getCas(conn: PublicConnection, ns: string, digest: string, signal?: AbortSignal): Promise<ReadOutcome> {
  const h = createHash("sha256");
  let length = 0;
  try {
    for await (const m of conn.client(ArtifactService).get({ namespace: ns, kind: Kind.CAS, key: digest }, signal ? { signal } : {})) {
      if (m.msg.case === "chunk") {
        h.update(m.msg.value);
        length += m.msg.value.length;
      }
    }
  } catch (e) {
    return { kind: "error", code: codeOf(e) };
  }
  return { kind: "ok", digest: h.digest("hex"), length };
}

/**
 * The oracle's read-back: every acknowledged body from every target node, byte for byte
 * (SHA-256 and length), `inFlight` reads at a time spread over each target's connections; a
 * read that is not exactly the body is a violation. Read one at a time, a 60-minute soak's
 * ~540,000 reads outran its test's timeout.
 */
export async function readBackAll(
  v: Violations,
  ns: string,
  acked: ReadonlyMap<string, { readonly size: number }>,
  targets: ReadonlyArray<readonly [name: string, conns: readonly PublicConnection[]]>,
  inFlight = 16,
): Promise<{ reads: number; ms: number }> {
  const started = Date.now();
  const limit = pLimit(inFlight);
  let reads = 0;
  await Promise.all(
    [...acked].flatMap(([d, spec], i) =>
      targets.map(([name, conns]) =>
        limit(async () => {
          const r = await getCas(conns[i % conns.length]!, ns, d);
          reads++;
          v.check(r.kind === "ok" && r.digest === d && r.length === spec.size, `${name} serves ${d} as ${JSON.stringify(r)}`);
        }),
      ),
    ),
  );
  return { reads, ms: Date.now() - started };
}

export interface AuditResult {
  readonly entries: number;
  readonly verified: number;
  /** Index entries whose body is missing, short, or hashes to something else. */
  readonly bad: readonly string[];
}

/** Opens the (closed) data dir, lists every index entry and reads each body in full. */
export async function auditStore(dataDir: string): Promise<AuditResult> {
  const store = await openStore({ dataDir });
  try {
    return await auditOpenStore(store);
  } finally {
    await store.close();
  }
}

/** Lists every index entry of an open store and reads each body in full. */
export async function auditOpenStore(store: Store): Promise<AuditResult> {
  const bad: string[] = [];
  let entries = 0;
  let verified = 0;
  try {
    let cursor: Uint8Array | undefined;
    for (let pages = 0; pages < 100_000; pages++) {
      const page = store.listManifests(cursor, 1000, 4 << 20);
      for (const m of page.manifests) {
        entries++;
        const why = await verifyEntry(store, m);
        if (why) bad.push(`${m.key}: ${why}`);
        else verified++;
      }
      cursor = page.nextCursor;
      if (page.done) break;
    }
  } catch (e) {
    bad.push(`listing failed: ${(e as Error).message}`);
  }
  return { entries, verified, bad };
}

async function verifyEntry(store: Store, m: Manifest): Promise<string | undefined> {
  const h = createHash("sha256");
  let length = 0;
  try {
    const r = store.read(m);
    for await (const c of r.chunks) {
      h.update(c);
      length += c.length;
    }
  } catch (e) {
    return `read failed: ${(e as Error).message}`;
  }
  if (length !== m.size) return `short: ${length} of ${m.size}`;
  const d = h.digest("hex");
  if (d !== m.digest) return `hashes to ${d}`;
  return undefined;
}
