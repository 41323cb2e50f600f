/**
 * PeerClient over one grpc-js channel (one HTTP/2 connection, see peer-channel.ts): every
 * server stream goes through idleTimeout() — reset on each message, never a total deadline —
 * and every failure becomes a PeerRpcError with a stable code and the refusal trailer.
 * Hello, which carries no body, is the one call with a total deadline (connect timeout plus a
 * margin).
 *
 * Tracing: each call is a CLIENT span (child of the context active when the call was made)
 * whose W3C trace context travels in the call's metadata (traceparent), so the peer's server
 * span joins the same trace. grpc-js's auto-instrumentation is not used: it needs an ESM
 * loader hook and does nothing inside test runners.
 */
import * as grpc from "@grpc/grpc-js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { ReplicationService, type ReadBodiesRequestSchema } from "../gen/granary/replication/v1/replication_pb.js";
import { idleTimeout, IdleTimeoutError } from "./deadlines.js";
import type { GrpcJsClient } from "./grpc-js-adapter.js";
import { createPeerGrpcClient, DEFAULT_PEER_CONNECT_TIMEOUT_MS, diagnoseDial, waitForChannelReady, type PeerChannelOptions, type PeerTlsPem } from "./peer-channel.js";
import { RequestWindow } from "./request-window.js";
import { PeerRpcError, type PeerClient, type PeerRpcCode, type PeerStreamCounters } from "./peer-client.js";
import { ATTR } from "../telemetry/names.js";
import { activeContext, endSpan, SpanKind, startSpan, traceHeaders, type Context, type Span } from "../telemetry/spans.js";

export interface GrpcJsPeerClientOptions {
  readonly tls: PeerTlsPem;
  /** Per-message idle timeout on every server stream. */
  readonly idleTimeoutMs: number;
  readonly channel?: PeerChannelOptions;
  /** Total deadline of Hello (no body). Default 10 s. */
  readonly helloTimeoutMs?: number;
  /**
   * TCP connections to the peer, default 1. Body streams (ReadBodies) go to the connection with
   * the fewest open; Hello, Follow and ListManifests use the first. More than one only pays
   * where one loss-based (CUBIC) flow cannot fill a lossy long link (docs/PERFORMANCE-WAN.md).
   */
  readonly connections?: number;
  /**
   * Bound on ReadBodies request bytes sent but not yet answered (request-window.ts); default
   * 64 KiB. Keeps both ends of a busy connection reading (Node stops reading during a write).
   */
  readonly requestWindowBytes?: number;
}

type GrpcClient = GrpcJsClient<typeof ReplicationService>;

const CODES: Record<number, PeerRpcCode> = {
  [grpc.status.UNAVAILABLE]: "UNAVAILABLE",
  [grpc.status.DEADLINE_EXCEEDED]: "DEADLINE_EXCEEDED",
  [grpc.status.FAILED_PRECONDITION]: "FAILED_PRECONDITION",
  [grpc.status.PERMISSION_DENIED]: "PERMISSION_DENIED",
  [grpc.status.UNAUTHENTICATED]: "UNAUTHENTICATED",
  [grpc.status.NOT_FOUND]: "NOT_FOUND",
  [grpc.status.INVALID_ARGUMENT]: "INVALID_ARGUMENT",
  [grpc.status.RESOURCE_EXHAUSTED]: "RESOURCE_EXHAUSTED",
  [grpc.status.CANCELLED]: "CANCELLED",
  [grpc.status.UNIMPLEMENTED]: "UNIMPLEMENTED",
  [grpc.status.INTERNAL]: "INTERNAL",
};

function toPeerError(address: string, method: string, e: unknown): PeerRpcError {
  if (e instanceof PeerRpcError) return e;
  if (e instanceof IdleTimeoutError) return new PeerRpcError("IDLE_TIMEOUT", `${method} from ${address}: ${e.message}`, undefined, { cause: e });
  const se = e as Partial<grpc.ServiceError>;
  if (typeof se.code === "number") {
    const refusal = se.metadata?.get("granary-refusal")[0];
    // The cause (grpc-js's "13 INTERNAL: <details>") carries the peer's words; not repeated here.
    return new PeerRpcError(CODES[se.code] ?? "UNKNOWN", `${method} from ${address} failed`, typeof refusal === "string" ? refusal : undefined, { cause: e });
  }
  return new PeerRpcError("UNKNOWN", `${method} from ${address} failed`, undefined, { cause: e });
}

/** A failed dial's reason is looked for again after this long (see whyUnreachable). */
export const DIAGNOSIS_INTERVAL_MS = 60_000;

export function createGrpcJsPeerClient(address: string, options: GrpcJsPeerClientOptions, serverName?: string): PeerClient {
  const url = new URL(address);
  const target = url.host;
  const channel: PeerChannelOptions = { ...options.channel, ...(serverName ? { serverName } : {}) };
  const connections = options.connections ?? 1;
  if (!Number.isInteger(connections) || connections < 1 || connections > 64) throw new RangeError(`connections: want an integer in [1, 64], got ${String(connections)}`);
  // use_local_subchannel_pool (peerChannelOptions) gives every client its own TCP connection.
  const dial = (): GrpcClient => createPeerGrpcClient(ReplicationService, target, options.tls, channel);
  const clients = Array.from({ length: connections }, dial);
  const openOn = clients.map(() => 0);
  /** When a message last arrived on each connection (any stream), ms. */
  const heardAt = clients.map(() => Date.now());
  let replacedConnections = 0;
  /**
   * A stream's idle deadline fired and nothing arrived on its whole connection for as long:
   * the connection is presumed dead. Node does not always report a TCP connection closed under
   * a busy TLS session (docs/RELIABILITY.md §5), and grpc-js's keepalive takes up to 30 s to
   * find it; meanwhile every new stream would go to it and stall to its own deadline. Later
   * streams get a new connection now; the old one is closed for new calls (calls on it end by
   * their own deadlines). A peer that is merely stalled costs one reconnect.
   */
  const replaceIfSilent = (k: number, used: GrpcClient): boolean => {
    if (clients[k] !== used || Date.now() - heardAt[k]! < options.idleTimeoutMs) return false;
    clients[k] = dial();
    heardAt[k] = Date.now();
    replacedConnections++;
    used.close();
    return true;
  };
  /** The body connection with the fewest streams open; counted until its stream ends. */
  const bodyClient = (): { k: number; done: () => void } => {
    let k = 0;
    for (let i = 1; i < clients.length; i++) if (openOn[i]! < openOn[k]!) k = i;
    openOn[k]!++;
    let ended = false;
    return {
      k,
      done: () => {
        if (!ended) openOn[k]!--;
        ended = true;
      },
    };
  };
  // The reason a dial fails (diagnoseDial), found at most once a minute: each probe is one
  // more connection attempt on a peer that may be refusing them.
  let diagnosis: { atMs: number; why: string } | undefined;
  const whyUnreachable = async (signal: AbortSignal): Promise<string> => {
    if (diagnosis && Date.now() - diagnosis.atMs < DIAGNOSIS_INTERVAL_MS) return diagnosis.why;
    const found = await diagnoseDial(target, options.tls, channel, 3000, signal);
    if (signal.aborted) return "stopped";
    diagnosis = { atMs: Date.now(), why: found ?? "TCP and mTLS succeed, the HTTP/2 connection did not become ready" };
    return diagnosis.why;
  };
  const requestWindow = new RequestWindow(options.requestWindowBytes);
  let inFlight = 0;
  let opened = 0;
  let peakInFlight = 0;
  let closed = false;

  /** A CLIENT span for one call and the metadata carrying its trace context. */
  function traced(method: string, parent: Context): { span: Span; metadata: grpc.Metadata } {
    const { span, ctx } = startSpan(`${ReplicationService.typeName}/${method}`, {
      kind: SpanKind.CLIENT,
      parent,
      attributes: { [ATTR.rpcSystem]: "grpc", [ATTR.rpcService]: ReplicationService.typeName, [ATTR.rpcMethod]: method, [ATTR.serverAddress]: target },
    });
    const metadata = new grpc.Metadata();
    for (const [k, v] of Object.entries(traceHeaders(ctx))) metadata.set(k, v);
    return { span, metadata };
  }

  function endCall(span: Span, err: unknown, aborted: boolean): void {
    const code = (err as Partial<grpc.ServiceError> | undefined)?.code;
    span.setAttribute(ATTR.rpcGrpcStatusCode, err === undefined ? grpc.status.OK : typeof code === "number" ? code : aborted ? grpc.status.CANCELLED : grpc.status.UNKNOWN);
    endSpan(span, aborted ? undefined : err);
  }

  /** `start` opens the call on connection `k` (chosen by `pick`, default the first). */
  function stream<T>(
    method: string,
    start: (c: GrpcClient, metadata: grpc.Metadata) => grpc.ClientReadableStream<T>,
    signal: AbortSignal,
    requestBytes = 0,
    pick: () => number = () => 0,
  ): AsyncIterable<T> {
    // The caller's context, taken when the call is made (not when the stream is first pulled).
    const parent = activeContext();
    return {
      async *[Symbol.asyncIterator]() {
        signal.throwIfAborted();
        // Request bytes the server has not taken yet stay under the window (request-window.ts):
        // held until the first answer shows the server read the request, or the call ends.
        const releaseRequest = requestBytes > 0 ? await requestWindow.acquire(requestBytes, signal) : () => {};
        let span: Span;
        let metadata: grpc.Metadata;
        let call: grpc.ClientReadableStream<T>;
        let k: number;
        let used: GrpcClient;
        try {
          ({ span, metadata } = traced(method, parent));
          k = pick();
          used = clients[k]!;
          call = start(used, metadata);
        } catch (e) {
          releaseRequest();
          throw e;
        }
        let failure: unknown;
        let messages = 0;
        inFlight++;
        opened++;
        peakInFlight = Math.max(peakInFlight, inFlight);
        const onAbort = (): void => call.cancel();
        signal.addEventListener("abort", onAbort, { once: true });
        try {
          for await (const m of idleTimeout(call as AsyncIterable<T>, options.idleTimeoutMs, () => call.cancel(), { signal })) {
            messages++;
            heardAt[k] = Date.now();
            if (messages === 1) releaseRequest();
            yield m;
          }
        } catch (e) {
          failure = e;
          if (signal.aborted) throw signal.reason;
          if (e instanceof IdleTimeoutError && replaceIfSilent(k, used)) {
            throw new PeerRpcError("IDLE_TIMEOUT", `${method} from ${address}: ${e.message}; nothing arrived on its connection either: later streams use a new one`, undefined, { cause: e });
          }
          throw toPeerError(address, method, e);
        } finally {
          signal.removeEventListener("abort", onAbort);
          releaseRequest();
          inFlight--;
          call.cancel();
          span.setAttribute(ATTR.messages, messages);
          endCall(span, failure, signal.aborted);
        }
      },
    };
  }

  return {
    address,
    async hello(req, signal) {
      // The connect timeout: TCP + TLS + HTTP/2 up within 5 s, or UNAVAILABLE. Streams opened
      // later on this channel fail fast if the connection is down (no waitForReady).
      try {
        await waitForChannelReady(clients[0]!, options.channel?.connectTimeoutMs ?? DEFAULT_PEER_CONNECT_TIMEOUT_MS, signal);
      } catch (e) {
        if (signal.aborted) throw signal.reason;
        const why = await whyUnreachable(signal);
        if (signal.aborted) throw signal.reason;
        throw new PeerRpcError("UNAVAILABLE", `cannot connect to ${address}: ${why}`, undefined, { cause: e });
      }
      return new Promise((resolve, reject) => {
        signal.throwIfAborted();
        const deadline = Date.now() + (options.helloTimeoutMs ?? 10_000);
        const { span, metadata } = traced("Hello", activeContext());
        const call = clients[0]!.hello(req, metadata, { deadline }, (err, res) => {
          signal.removeEventListener("abort", onAbort);
          endCall(span, err ?? undefined, signal.aborted);
          if (err || !res) reject(toPeerError(address, "Hello", err ?? new Error("empty answer")));
          else resolve(res);
        });
        const onAbort = (): void => call.cancel();
        signal.addEventListener("abort", onAbort, { once: true });
      });
    },
    follow: (req, signal) => stream("Follow", (c, md) => c.follow(req, md), signal),
    listManifests: (req, signal) => stream("ListManifests", (c, md) => c.listManifests(req, md), signal),
    readBodies: (req, signal) => {
      const bytes = readBodiesRequestBytes(req);
      if (clients.length === 1) return stream("ReadBodies", (c, md) => c.readBodies(req, md), signal, bytes);
      // The connection is chosen when the stream starts (lazily), and freed when it ends.
      let release = (): void => {};
      const s = stream("ReadBodies", (c, md) => c.readBodies(req, md), signal, bytes, () => {
        const chosen = bodyClient();
        release = chosen.done;
        return chosen.k;
      });
      return {
        async *[Symbol.asyncIterator]() {
          try {
            yield* s;
          } finally {
            release();
          }
        },
      };
    },
    counters(): PeerStreamCounters {
      return { inFlight, opened, peakInFlight, replacedConnections };
    },
    close() {
      if (closed) return;
      closed = true;
      for (const c of clients) c.close();
    },
  };
}

/** An upper estimate of a ReadBodies request's encoded size (tags, lengths, the strings). */
function readBodiesRequestBytes(req: MessageInitShape<typeof ReadBodiesRequestSchema>): number {
  let n = 16;
  for (const b of req.bodies ?? []) n += 32 + Buffer.byteLength(b.ref?.namespace ?? "") + Buffer.byteLength(b.ref?.key ?? "") + Buffer.byteLength(b.digest ?? "");
  return n;
}
