/**
 * Peer-plane ReplicationService (served only on the mTLS peer listener). Serves the change
 * feed, the index newest-first, and bodies; it never waits on readiness, so a cold mesh can
 * bootstrap from itself.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  type FollowResponse,
  FollowResponseSchema,
  HelloResponseSchema,
  type ListManifestsResponse,
  ListManifestsResponseSchema,
  type ReadBodiesResponse,
  ReadBodiesResponseSchema,
  type ReplicationService,
} from "../gen/granary/replication/v1/replication_pb.js";
import { CorruptRecordError, FeedTrimmedError, NotFoundError, StoreError } from "../store/errors.js";
import { validateKey, validateNamespace } from "../store/names.js";
import type { Store } from "../store/types.js";
import type { Failpoints } from "../util/failpoints.js";
import { kindFromWire, manifestToWire, safeNumber } from "./convert.js";

/** Trailer that says why a Follow cursor was refused (machine-readable). */
export const REFUSAL_TRAILER = "granary-refusal";
export type RefusalReason = "CURSOR_BELOW_FLOOR" | "INCARNATION_MISMATCH";

export const FOLLOW_PAGE_ITEMS_MAX = 4096;
export const LIST_PAGE_ITEMS_MAX = 8192;
export const LIST_PAGE_BYTES_MIN = 1024;
export const LIST_PAGE_BYTES_MAX = 4 << 20;
export const READ_BODIES_MAX = 4096;
export const BODY_CHUNK_BYTES = 1 << 20;

export interface HelloFrom {
  /** Node name proven by the caller's certificate. */
  readonly nodeName: string;
  readonly nodeId: string;
  readonly incarnation: string;
  readonly advertiseAddress: string;
}

export interface ReplicationServiceDeps {
  readonly store: Store;
  /** This node's peer address as others should dial it. */
  readonly advertiseAddress: () => string;
  /** Peer addresses this node knows (for a caller to find the rest of the mesh). */
  readonly knownPeers: () => string[];
  /** Membership learns the caller; must not block. */
  readonly onHello: (from: HelloFrom) => void;
  /** The mTLS-proven node name of the caller. */
  readonly callerName: (ctx: HandlerContext) => string | undefined;
  /** Interval of heartbeat frames on a quiet Follow stream; keep it well below peers' idle timeout. */
  readonly heartbeatIntervalMs: number;
  readonly sendDeadline?: <T>(ctx: HandlerContext, src: AsyncIterable<T>) => AsyncIterable<T>;
  /** A body stream ended before its last byte (`offset` = bytes handed to the stream); for the log. */
  readonly onBodyCut?: (cut: { key: string; offset: number; length: number; callerGone: boolean }) => void;
  /** Test hooks: "peer.read-bodies.body", "peer.read-bodies.chunk", "peer.list-manifests.page", "peer.follow.page". */
  readonly failpoints?: Failpoints;
  /** Aborted when the node shuts down: Follow streams end (OK) so listeners can drain at once. */
  readonly stopping?: AbortSignal;
}

function clamp(v: number, lo: number, hi: number, dflt: number): number {
  return v === 0 ? dflt : Math.min(hi, Math.max(lo, v));
}

function refuse(reason: RefusalReason, message: string): ConnectError {
  return new ConnectError(message, Code.FailedPrecondition, { [REFUSAL_TRAILER]: reason });
}

/**
 * Waits for the feed to move past `after`, the interval to pass, or any of `signals` to abort
 * (the call ending, the node stopping). Listens to each signal itself and lets go after: never
 * `AbortSignal.any`, which on Node 20 leaves one entry per call in every source signal's set of
 * dependants for as long as that source lives (nodejs/node#55351). A Follow stream waits here
 * once per feed change or heartbeat for hours, on its call's signal and the node's: in a soak at
 * 150 ops/s those entries were the only objects a follower's heap kept (~0.13 MiB a minute).
 */
async function waitFeedOrTimeout(store: Store, after: number, ms: number, signals: readonly AbortSignal[]): Promise<void> {
  const ac = new AbortController();
  const onAbort = (): void => ac.abort();
  if (signals.some((s) => s.aborted)) return;
  for (const s of signals) s.addEventListener("abort", onAbort, { once: true });
  const timer = setTimeout(onAbort, ms);
  try {
    await store.waitForFeed(after, ac.signal);
  } catch {
    // timeout or caller gone: both just end the wait
  } finally {
    clearTimeout(timer);
    for (const s of signals) s.removeEventListener("abort", onAbort);
  }
}

export function replicationService(deps: ReplicationServiceDeps): ServiceImpl<typeof ReplicationService> {
  const { store } = deps;
  const fp = deps.failpoints;
  const deadline = <T>(ctx: HandlerContext, src: AsyncIterable<T>): AsyncIterable<T> => (deps.sendDeadline ? deps.sendDeadline(ctx, src) : src);

  return {
    hello(req, ctx) {
      const name = deps.callerName(ctx);
      if (!name) throw new ConnectError("caller has no mesh node identity", Code.PermissionDenied);
      if (req.advertiseAddress !== "" && !/^https:\/\/[^/\s]+:\d+\/?$/.test(req.advertiseAddress)) {
        throw new ConnectError(`advertise_address must look like https://HOST:PORT, got "${req.advertiseAddress}"`, Code.InvalidArgument);
      }
      if (req.advertiseAddress !== "") {
        deps.onHello({ nodeName: name, nodeId: req.nodeId, incarnation: req.incarnation, advertiseAddress: req.advertiseAddress });
      }
      return create(HelloResponseSchema, {
        nodeId: store.nodeId,
        incarnation: store.incarnation,
        feedHead: BigInt(store.feedHead()),
        feedFloor: BigInt(store.feedFloor()),
        capabilities: ["follow.v1", "list-manifests.v1", "read-bodies.v1"],
        knownPeers: deps.knownPeers(),
        artifactCount: BigInt(store.usage().artifactCount),
        liveBytes: BigInt(store.usage().liveBytes),
        advertiseAddress: deps.advertiseAddress(),
      });
    },

    async *follow(req, ctx) {
      if (req.incarnation !== "" && req.incarnation !== store.incarnation) {
        throw refuse("INCARNATION_MISMATCH", `cursor belongs to incarnation ${req.incarnation}; this node is ${store.incarnation} (its data dir was recreated): re-sync`);
      }
      let after = safeNumber(req.afterSeq, "after_seq");
      if (after < store.feedFloor()) {
        throw refuse("CURSOR_BELOW_FLOOR", `cursor ${after} is below the feed floor ${store.feedFloor()}: re-sync`);
      }
      const maxItems = clamp(req.maxPageItems, 1, FOLLOW_PAGE_ITEMS_MAX, 1024);
      async function* frames(): AsyncGenerator<FollowResponse> {
        while (!ctx.signal.aborted && !deps.stopping?.aborted) {
          let entries;
          try {
            entries = store.readFeed(after, maxItems);
          } catch (e) {
            if (e instanceof FeedTrimmedError) throw refuse("CURSOR_BELOW_FLOOR", e.message);
            throw e;
          }
          if (entries.length > 0) {
            await fp?.hit("peer.follow.page", { first: entries[0]!.seq, count: entries.length });
            after = entries[entries.length - 1]!.seq;
            yield create(FollowResponseSchema, {
              frame: {
                case: "page",
                value: {
                  entries: entries.map((e) => ({ seq: BigInt(e.seq), manifest: manifestToWire(e.manifest) })),
                  headSeq: BigInt(store.feedHead()),
                },
              },
            });
            continue;
          }
          await waitFeedOrTimeout(store, after, deps.heartbeatIntervalMs, deps.stopping ? [ctx.signal, deps.stopping] : [ctx.signal]);
          if (deps.stopping?.aborted) return;
          if (store.feedHead() <= after && !ctx.signal.aborted) {
            yield create(FollowResponseSchema, {
              frame: { case: "heartbeat", value: { headSeq: BigInt(store.feedHead()), sentAtMs: BigInt(Date.now()) } },
            });
          }
        }
      }
      yield* deadline(ctx, frames());
    },

    async *listManifests(req, ctx) {
      const items = clamp(req.pageItems, 1, LIST_PAGE_ITEMS_MAX, 1024);
      const bytes = req.pageBytes === 0n ? 1 << 20 : Math.min(LIST_PAGE_BYTES_MAX, Math.max(LIST_PAGE_BYTES_MIN, safeNumber(req.pageBytes, "page_bytes")));
      const snapshotHead = BigInt(store.feedHead());
      let cursor: Uint8Array | undefined = req.cursor.length > 0 ? req.cursor : undefined;
      async function* pages(): AsyncGenerator<ListManifestsResponse> {
        for (let n = 0; req.maxPages === 0 || n < req.maxPages; n++) {
          if (ctx.signal.aborted) return;
          const page = store.listManifests(cursor, items, bytes);
          await fp?.hit("peer.list-manifests.page", { index: n, count: page.manifests.length });
          cursor = page.nextCursor;
          yield create(ListManifestsResponseSchema, {
            manifests: page.manifests.map(manifestToWire),
            nextCursor: page.nextCursor,
            done: page.done,
            snapshotHead,
            incarnation: store.incarnation,
          });
          if (page.done) return;
        }
      }
      yield* deadline(ctx, pages());
    },

    async *readBodies(req, ctx) {
      if (req.bodies.length > READ_BODIES_MAX) {
        throw new ConnectError(`at most ${READ_BODIES_MAX} bodies per ReadBodies call, got ${req.bodies.length}`, Code.InvalidArgument);
      }
      // Validate the whole request before sending anything.
      const wanted = req.bodies.map((b, i) => {
        if (!b.ref) throw new ConnectError(`bodies[${i}].ref is missing`, Code.InvalidArgument);
        validateNamespace(b.ref.namespace);
        const kind = kindFromWire(b.ref.kind, `bodies[${i}].ref.kind`);
        validateKey(kind, b.ref.key);
        return { id: { namespace: b.ref.namespace, kind, key: b.ref.key }, digest: b.digest, offset: safeNumber(b.offset, `bodies[${i}].offset`) };
      });
      async function* frames(): AsyncGenerator<ReadBodiesResponse> {
        for (const [index, w] of wanted.entries()) {
          if (ctx.signal.aborted) return;
          const m = store.stat(w.id);
          if (!m || (w.digest !== "" && m.digest !== w.digest)) {
            yield create(ReadBodiesResponseSchema, { frame: { case: "missing", value: { index, reason: m ? "superseded" : "not found" } } });
            continue;
          }
          let read;
          try {
            read = store.read(w.id, { offset: w.offset, signal: ctx.signal, chunkBytes: BODY_CHUNK_BYTES });
          } catch (e) {
            // Absent, or dropped because its segment does not cover it: the follower skips it as stale.
            if (e instanceof NotFoundError || e instanceof CorruptRecordError || (e instanceof StoreError && e.code === "OUT_OF_RANGE")) {
              yield create(ReadBodiesResponseSchema, { frame: { case: "missing", value: { index, reason: e.message } } });
              continue;
            }
            throw e;
          }
          await fp?.hit("peer.read-bodies.body", { key: w.id.key, size: read.length });
          yield create(ReadBodiesResponseSchema, {
            frame: {
              case: "header",
              value: { index, manifest: manifestToWire(read.manifest), offset: BigInt(read.offset), length: BigInt(read.length) },
            },
          });
          // A failure mid-body ends the whole stream with an error: the receiver never takes
          // a short body as complete.
          let sent = 0;
          try {
            for await (const chunk of read.chunks) {
              // `values`: the call's context values, opaque here, so an in-process test can cut
              // the call at the HTTP/2 layer (RST_STREAM, GOAWAY) at this very byte.
              await fp?.hit("peer.read-bodies.chunk", { key: w.id.key, offset: sent, size: read.length, values: ctx.values });
              sent += chunk.length;
              yield create(ReadBodiesResponseSchema, { frame: { case: "chunk", value: chunk } });
            }
          } finally {
            // Cut mid-body (caller gone, connection lost, read failed): say where.
            if (sent < read.length) deps.onBodyCut?.({ key: w.id.key, offset: sent, length: read.length, callerGone: ctx.signal.aborted });
          }
        }
      }
      yield* deadline(ctx, frames());
    },
  };
}
