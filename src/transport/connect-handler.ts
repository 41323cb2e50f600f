/**
 * The connect-node adapter for both listeners: gRPC protocol only (no Connect, no gRPC-Web),
 * compression off (artifact bodies are incompressible; connect-node's default gzip costs ~10x
 * the CPU of the transfer and made benchmarks lie), explicit per-message size limits.
 *
 * Handlers reach two things through context values:
 * - kHttp2Stream: the raw server stream, so a handler can RST a stream whose consumer stopped
 *   reading (see resetStream and deadlines.ts withSendDeadline);
 * - kPeerIdentity: the node identity the peer listener admitted the connection with
 *   (identity.ts); undefined on the public listener.
 * The routes themselves (api layer) never import connect-node or node:http2.
 */
import * as http2 from "node:http2";
import {
  createContextKey,
  createContextValues,
  type ConnectRouter,
  type ContextValues,
  type Interceptor,
} from "@connectrpc/connect";
import { connectNodeAdapter, type ConnectNodeAdapterOptions } from "@connectrpc/connect-node";
import { sessionIdentity } from "./identity.js";

/**
 * Largest message either listener accepts or sends: a 4 MiB body chunk plus framing slack
 * (gRPC's customary 4 MiB receive limit; body chunks are 1-2 MiB, so never near it).
 */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024 + 64 * 1024;

/** The raw HTTP/2 stream of the current call. */
export const kHttp2Stream = createContextKey<http2.ServerHttp2Stream | undefined>(undefined, { description: "granary.http2-stream" });

/** The mesh node identity of the caller (peer listener only). */
export const kPeerIdentity = createContextKey<{ nodeName: string; fingerprint256: string } | undefined>(undefined, {
  description: "granary.peer-identity",
});

/** The adapter options both listeners share (everything but routes and interceptors). */
export type CommonHandlerOptions = Required<
  Pick<ConnectNodeAdapterOptions, "grpc" | "connect" | "grpcWeb" | "acceptCompression" | "readMaxBytes" | "writeMaxBytes" | "contextValues">
>;

/** Puts the raw stream and the admitted peer identity (if any) into a request's context. */
export function contextValues(req: { stream?: http2.ServerHttp2Stream }): ContextValues {
  const values = createContextValues();
  const stream = req.stream;
  if (stream !== undefined) {
    values.set(kHttp2Stream, stream);
    const id = sessionIdentity(stream.session);
    if (id !== undefined) values.set(kPeerIdentity, id);
  }
  return values;
}

/** The common connect-node adapter options; spread them into connectNodeAdapter. */
export function connectHandlerOptions(): CommonHandlerOptions {
  return {
    grpc: true,
    connect: false,
    grpcWeb: false,
    acceptCompression: [],
    readMaxBytes: MAX_MESSAGE_BYTES,
    writeMaxBytes: MAX_MESSAGE_BYTES,
    contextValues: (req) => contextValues(req as { stream?: http2.ServerHttp2Stream }),
  };
}

export interface ConnectHandlerOptions {
  readonly routes: (router: ConnectRouter) => void;
  readonly interceptors?: Interceptor[];
  /** Adds values to each request's context, after kHttp2Stream and kPeerIdentity are set. */
  readonly contextValues?: (req: http2.Http2ServerRequest, values: ContextValues) => ContextValues;
}

/** What http2.createServer / createSecureServer take as the request listener. */
export type ConnectHandler = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void;

/** Builds the request handler for a listener from routes and interceptors. */
export function createConnectHandler(options: ConnectHandlerOptions): ConnectHandler {
  const common = connectHandlerOptions();
  const extra = options.contextValues;
  const adapter = connectNodeAdapter({
    ...common,
    interceptors: options.interceptors ?? [],
    contextValues: (req) => {
      const values = common.contextValues(req);
      return extra !== undefined ? extra(req as http2.Http2ServerRequest, values) : values;
    },
    routes: options.routes,
  });
  return adapter as ConnectHandler;
}

/**
 * RSTs the current call's stream with CANCEL (the client sees Canceled at once, even with
 * data still buffered), e.g. from withSendDeadline's onStall. A no-op when already closed.
 */
export function resetStream(values: ContextValues): void {
  const stream = values.get(kHttp2Stream);
  if (stream !== undefined && !stream.closed && !stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
}
