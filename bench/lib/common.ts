/**
 * Helpers shared by the measurement tasks: a bounded worker pool, the product's public
 * client calls (Put/Get over one HTTP/2 connection), and a poll-free watcher of a store's
 * change feed (every new entry is seen once, in order, from store.waitForFeed).
 */
import { performance } from "node:perf_hooks";
import { create } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { type ArtifactService, Kind, PutRequestSchema, type PutRequest } from "../../src/gen/granary/artifact/v1/artifact_pb.js";
import type { Store } from "../../src/store/types.js";

export const NAMESPACE = "bench";

const PUT_CHUNK_BYTES = 1 << 20;

/**
 * Runs fn(0..count-1) with at most `concurrency` in flight; the first failure aborts the rest.
 * With `untilMs` (a performance.now() instant) no new item starts after it. Returns how many
 * items completed; items start in index order and every started one is awaited, so those are
 * items 0..n-1.
 */
export async function pool(count: number, concurrency: number, fn: (i: number) => Promise<void>, signal: AbortSignal, untilMs = Infinity): Promise<number> {
  let next = 0;
  let done = 0;
  let failure: unknown;
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < count && performance.now() < untilMs) {
      signal.throwIfAborted();
      const i = next++;
      try {
        await fn(i);
        done++;
      } catch (e) {
        failure ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, count)) }, worker));
  if (failure !== undefined) throw failure;
  return done;
}

async function* putRequests(digest: string | undefined, body: Uint8Array): AsyncGenerator<PutRequest> {
  yield create(PutRequestSchema, {
    msg: { case: "header", value: { namespace: NAMESPACE, kind: Kind.CAS, key: digest ?? "", size: BigInt(body.length) } },
  });
  for (let o = 0; o < body.length; o += PUT_CHUNK_BYTES) {
    yield create(PutRequestSchema, { msg: { case: "chunk", value: body.subarray(o, o + PUT_CHUNK_BYTES) } });
  }
}

/** Puts one CAS body (1 MiB chunks); resolves with the digest the node acknowledged. */
export async function putCas(client: Client<typeof ArtifactService>, digest: string | undefined, body: Uint8Array, signal: AbortSignal): Promise<string> {
  const res = await client.put(putRequests(digest, body), { signal });
  const m = res.manifest;
  if (!m || Number(m.size) !== body.length) throw new Error(`Put acknowledged ${m ? String(m.size) : "no manifest"} bytes, sent ${body.length}`);
  if (digest !== undefined && m.digest !== digest) throw new Error(`Put acknowledged digest ${m.digest}, expected ${digest}`);
  return m.digest;
}

/** Gets one CAS body, counting bytes (not keeping them); throws unless exactly `size` arrived. */
export async function getCas(client: Client<typeof ArtifactService>, digest: string, size: number, signal: AbortSignal): Promise<void> {
  let n = 0;
  for await (const r of client.get({ namespace: NAMESPACE, kind: Kind.CAS, key: digest }, { signal })) {
    if (r.msg.case === "chunk") n += r.msg.value.length;
  }
  if (n !== size) throw new Error(`Get of ${digest} returned ${n} bytes, expected ${size}`);
}

/**
 * Watches a store's change feed after seq `from` (default 0): calls onEntry(key, nowMs) for every entry, woken by
 * store.waitForFeed (no polling by time). Stops when `signal` aborts; resolves then.
 */
export async function watchFeed(store: Store, onEntry: (key: string, atMs: number) => void, signal: AbortSignal, from = 0): Promise<void> {
  let seen = from;
  while (!signal.aborted) {
    try {
      await store.waitForFeed(seen, signal);
    } catch {
      return;
    }
    const at = performance.now();
    for (;;) {
      const entries = store.readFeed(seen, 65_536);
      for (const e of entries) onEntry(e.manifest.key, at);
      if (entries.length === 0) break;
      seen = entries[entries.length - 1]!.seq;
    }
  }
}

/** Resolves once every key of `want` has appeared in the store's feed, or rejects on `signal`. */
export function waitForKeys(store: Store, want: Iterable<string>, signal: AbortSignal): { done: Promise<number>; remaining: () => number; missing: () => ReadonlySet<string> } {
  const missing = new Set(want);
  const stop = new AbortController();
  const onAbort = (): void => stop.abort(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  const done = new Promise<number>((resolve, reject) => {
    if (missing.size === 0) {
      resolve(performance.now());
      return;
    }
    watchFeed(
      store,
      (key, at) => {
        if (missing.delete(key) && missing.size === 0) {
          resolve(at);
          stop.abort();
        }
      },
      stop.signal,
    ).then(
      () => {
        signal.removeEventListener("abort", onAbort);
        if (missing.size > 0) reject(new Error(`${missing.size} artifacts still missing when the wait ended: ${String(signal.reason ?? "stopped")}`));
      },
      reject,
    );
  });
  return { done, remaining: () => missing.size, missing: () => missing };
}

export function mbPerSecond(bytes: number, ms: number): number {
  return bytes / 1e6 / (ms / 1000);
}

export function perSecond(count: number, ms: number): number {
  return count / (ms / 1000);
}

export function peakRssMib(): number {
  return process.resourceUsage().maxRSS / 1024;
}
