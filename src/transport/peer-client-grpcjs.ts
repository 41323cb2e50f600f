/**
 * PeerClient over one grpc-js channel (one HTTP/2 connection, see peer-channel.ts): every
 * server stream goes through idleTimeout() — reset on each message, never a total deadline —
 * and every failure becomes a PeerRpcError with a stable code and the refusal trailer.
 * Hello, which carries no body, is the one call with a total deadline (connect timeout plus a
 * margin).
 */
import * as grpc from "@grpc/grpc-js";
import { ReplicationService } from "../gen/granary/replication/v1/replication_pb.js";
import { idleTimeout, IdleTimeoutError } from "./deadlines.js";
import { createPeerGrpcClient, type PeerChannelOptions, type PeerTlsPem } from "./peer-channel.js";
import { PeerRpcError, type PeerClient, type PeerRpcCode, type PeerStreamCounters } from "./peer-client.js";

export interface GrpcJsPeerClientOptions {
  readonly tls: PeerTlsPem;
  /** Per-message idle timeout on every server stream. */
  readonly idleTimeoutMs: number;
  readonly channel?: PeerChannelOptions;
  /** Total deadline of Hello (no body). Default 10 s. */
  readonly helloTimeoutMs?: number;
}

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
    return new PeerRpcError(CODES[se.code] ?? "UNKNOWN", `${method} from ${address}: ${se.details ?? se.message ?? "failed"}`, typeof refusal === "string" ? refusal : undefined, { cause: e });
  }
  return new PeerRpcError("UNKNOWN", `${method} from ${address} failed`, undefined, { cause: e });
}

export function createGrpcJsPeerClient(address: string, options: GrpcJsPeerClientOptions, serverName?: string): PeerClient {
  const url = new URL(address);
  const target = url.host;
  const channel: PeerChannelOptions = { ...options.channel, ...(serverName ? { serverName } : {}) };
  const client = createPeerGrpcClient(ReplicationService, target, options.tls, channel);
  let inFlight = 0;
  let opened = 0;
  let peakInFlight = 0;
  let closed = false;

  function stream<T>(method: string, start: () => grpc.ClientReadableStream<T>, signal: AbortSignal): AsyncIterable<T> {
    return {
      async *[Symbol.asyncIterator]() {
        signal.throwIfAborted();
        const call = start();
        inFlight++;
        opened++;
        peakInFlight = Math.max(peakInFlight, inFlight);
        const onAbort = (): void => call.cancel();
        signal.addEventListener("abort", onAbort, { once: true });
        try {
          yield* idleTimeout(call as AsyncIterable<T>, options.idleTimeoutMs, () => call.cancel(), { signal });
        } catch (e) {
          if (signal.aborted) throw signal.reason;
          throw toPeerError(address, method, e);
        } finally {
          signal.removeEventListener("abort", onAbort);
          inFlight--;
          call.cancel();
        }
      },
    };
  }

  return {
    address,
    hello(req, signal) {
      return new Promise((resolve, reject) => {
        signal.throwIfAborted();
        const deadline = Date.now() + (options.helloTimeoutMs ?? 10_000);
        const call = client.hello(req, new grpc.Metadata(), { deadline }, (err, res) => {
          signal.removeEventListener("abort", onAbort);
          if (err || !res) reject(toPeerError(address, "Hello", err ?? new Error("empty answer")));
          else resolve(res);
        });
        const onAbort = (): void => call.cancel();
        signal.addEventListener("abort", onAbort, { once: true });
      });
    },
    follow: (req, signal) => stream("Follow", () => client.follow(req), signal),
    listManifests: (req, signal) => stream("ListManifests", () => client.listManifests(req), signal),
    readBodies: (req, signal) => stream("ReadBodies", () => client.readBodies(req), signal),
    counters(): PeerStreamCounters {
      return { inFlight, opened, peakInFlight };
    },
    close() {
      if (closed) return;
      closed = true;
      client.close();
    },
  };
}
