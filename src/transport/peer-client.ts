/**
 * What the replication engine needs of a connection to one peer: the four peer RPCs over
 * ONE HTTP/2 connection, every server stream guarded by a per-message idle timeout, and
 * failures as PeerRpcError with a stable code. The implementation (grpc-js, see
 * peer-client-grpcjs.ts) is chosen by the node wiring; replication sees only this interface.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type {
  FollowRequestSchema,
  FollowResponse,
  HelloRequestSchema,
  HelloResponse,
  ListManifestsRequestSchema,
  ListManifestsResponse,
  ReadBodiesRequestSchema,
  ReadBodiesResponse,
} from "../gen/granary/replication/v1/replication_pb.js";

export type PeerRpcCode =
  | "UNAVAILABLE"
  | "DEADLINE_EXCEEDED"
  | "IDLE_TIMEOUT"
  | "FAILED_PRECONDITION"
  | "PERMISSION_DENIED"
  | "UNAUTHENTICATED"
  | "NOT_FOUND"
  | "INVALID_ARGUMENT"
  | "RESOURCE_EXHAUSTED"
  | "CANCELLED"
  | "UNIMPLEMENTED"
  | "INTERNAL"
  | "UNKNOWN";

export class PeerRpcError extends Error {
  constructor(
    readonly code: PeerRpcCode,
    message: string,
    /** Machine-readable reason a Follow cursor was refused (trailer granary-refusal). */
    readonly refusal?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "PeerRpcError";
  }
}

export interface PeerStreamCounters {
  /** Streams open now on this peer's connection. */
  readonly inFlight: number;
  /** Streams opened since the client was created. */
  readonly opened: number;
  /** Most streams open at once since the client was created. */
  readonly peakInFlight: number;
  /** Connections given up because a stream's idle deadline fired while nothing arrived on them at all. */
  readonly replacedConnections: number;
}

export interface PeerClient {
  readonly address: string;
  hello(req: MessageInitShape<typeof HelloRequestSchema>, signal: AbortSignal): Promise<HelloResponse>;
  follow(req: MessageInitShape<typeof FollowRequestSchema>, signal: AbortSignal): AsyncIterable<FollowResponse>;
  listManifests(req: MessageInitShape<typeof ListManifestsRequestSchema>, signal: AbortSignal): AsyncIterable<ListManifestsResponse>;
  readBodies(req: MessageInitShape<typeof ReadBodiesRequestSchema>, signal: AbortSignal): AsyncIterable<ReadBodiesResponse>;
  counters(): PeerStreamCounters;
  /** Closes the connection; idempotent. */
  close(): void;
}

/** `serverName`: the TLS name to verify when `address` is an IP a DNS name resolved to. */
export type PeerClientFactory = (address: string, serverName?: string) => PeerClient;
