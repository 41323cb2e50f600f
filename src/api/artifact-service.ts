/**
 * Public ArtifactService: validates every request at the boundary, then hands bodies to the
 * store as streams (never buffered whole). Errors are thrown as store/Connect errors and
 * mapped to gRPC codes by errors.ts.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  type ArtifactService,
  ArtifactRefSchema,
  FindMissingResponseSchema,
  GetResponseSchema,
  type GetResponse,
  type PutRequest,
  PutResponseSchema,
  StatResponseSchema,
  StatResultSchema,
} from "../gen/granary/artifact/v1/artifact_pb.js";
import { CorruptRecordError } from "../store/errors.js";
import { validateDigest, validateKey, validateNamespace } from "../store/names.js";
import type { BodyRead, Store } from "../store/types.js";
import { kindFromWire, manifestToWire, safeNumber } from "./convert.js";
import { ATTR, SPAN } from "../telemetry/names.js";
import { withSpan } from "../telemetry/spans.js";

/** Most refs or digests one Stat/FindMissing call may carry. */
export const MAX_BATCH_ITEMS = 10_000;
/** Body chunk size on Get; well below the 4 MiB message limit. */
export const GET_CHUNK_BYTES = 1 << 20;

export interface ArtifactServiceDeps {
  readonly store: Store;
  /** Wraps a response stream with the per-message send deadline (transport concern). */
  readonly sendDeadline?: <T>(ctx: HandlerContext, src: AsyncIterable<T>) => AsyncIterable<T>;
}

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

export function artifactService(deps: ArtifactServiceDeps): ServiceImpl<typeof ArtifactService> {
  const { store } = deps;
  return {
    async put(requests: AsyncIterable<PutRequest>, ctx) {
      const it = requests[Symbol.asyncIterator]();
      const first = await it.next();
      if (first.done || first.value.msg.case !== "header") {
        throw invalid("the first Put message must be a header (namespace, kind, key or digest, size)");
      }
      const h = first.value.msg.value;
      validateNamespace(h.namespace);
      const kind = kindFromWire(h.kind, "header.kind");
      if (kind === "kv" || h.key !== "") validateKey(kind, h.key);
      const size = h.size === undefined ? undefined : safeNumber(h.size, "header.size");
      async function* body(): AsyncGenerator<Uint8Array> {
        for (;;) {
          const r = await it.next();
          if (r.done) return;
          if (r.value.msg.case !== "chunk") throw invalid("after the header, Put messages must be body chunks");
          yield r.value.msg.value;
        }
      }
      // The store commit as a span of its own (child of the Put server span): receiving the body
      // and the durable write are most of a Put's time.
      const res = await withSpan(SPAN.storePut, { attributes: { [ATTR.namespace]: h.namespace, [ATTR.kind]: kind } }, async (span) => {
        const r = await store.put({ namespace: h.namespace, kind, key: h.key === "" ? undefined : h.key, size }, body(), ctx.signal);
        span.setAttributes({ [ATTR.key]: r.manifest.key, [ATTR.bytes]: r.manifest.size, [ATTR.outcome]: r.alreadyPresent ? "already-present" : "stored" });
        return r;
      });
      return create(PutResponseSchema, { manifest: manifestToWire(res.manifest), alreadyPresent: res.alreadyPresent });
    },

    async *get(req, ctx) {
      validateNamespace(req.namespace);
      const kind = kindFromWire(req.kind);
      validateKey(kind, req.key);
      const offset = safeNumber(req.offset, "offset");
      const limit = safeNumber(req.limit, "limit");
      let read: BodyRead;
      try {
        read = store.read(
          { namespace: req.namespace, kind, key: req.key },
          { offset, ...(limit > 0 ? { length: limit } : {}), signal: ctx.signal, chunkBytes: GET_CHUNK_BYTES },
        );
      } catch (e) {
        // A record its segment does not cover (or that failed its checks) is dropped and
        // answered as absent, before any header: the client fetches it elsewhere.
        if (e instanceof CorruptRecordError) {
          throw new ConnectError(`${req.key} failed its integrity check on this node and was dropped (${e.message})`, Code.NotFound, undefined, undefined, e);
        }
        throw e;
      }
      async function* frames(): AsyncGenerator<GetResponse> {
        yield create(GetResponseSchema, {
          msg: {
            case: "header",
            value: { manifest: manifestToWire(read.manifest), offset: BigInt(read.offset), length: BigInt(read.length) },
          },
        });
        for await (const chunk of read.chunks) yield create(GetResponseSchema, { msg: { case: "chunk", value: chunk } });
      }
      yield* deps.sendDeadline ? deps.sendDeadline(ctx, frames()) : frames();
    },

    stat(req) {
      if (req.refs.length > MAX_BATCH_ITEMS) throw invalid(`at most ${MAX_BATCH_ITEMS} refs per Stat call, got ${req.refs.length}`);
      const results = req.refs.map((ref, i) => {
        validateNamespace(ref.namespace);
        const kind = kindFromWire(ref.kind, `refs[${i}].kind`);
        validateKey(kind, ref.key);
        const m = store.stat({ namespace: ref.namespace, kind, key: ref.key });
        return create(StatResultSchema, {
          ref: create(ArtifactRefSchema, ref),
          ...(m ? { manifest: manifestToWire(m) } : {}),
        });
      });
      return create(StatResponseSchema, { results });
    },

    findMissing(req) {
      validateNamespace(req.namespace);
      if (req.digests.length > MAX_BATCH_ITEMS) {
        throw invalid(`at most ${MAX_BATCH_ITEMS} digests per FindMissing call, got ${req.digests.length}`);
      }
      const missing: string[] = [];
      for (const d of req.digests) {
        validateDigest(d);
        if (!store.stat({ namespace: req.namespace, kind: "cas", key: d })) missing.push(d);
      }
      return create(FindMissingResponseSchema, { missingDigests: missing });
    },
  };
}
