/**
 * The connect-node adapter for both listeners, gRPC protocol only, compression off (bulk
 * bodies are incompressible; connect-node's default gzip cost ~10x the CPU of the transfer).
 * Handlers get the raw HTTP/2 stream (to reset a stalled one) through context values.
 */
import type * as http2 from "node:http2";
import { createContextKey, createContextValues, type ConnectRouter, type ContextValues, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";

/** Largest message either listener accepts or sends: 4 MiB of body plus framing. */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024 + 64 * 1024;

export const kHttp2Stream = createContextKey<http2.ServerHttp2Stream | undefined>(undefined, { description: "raw http/2 stream" });

export interface ConnectHandlerOptions {
  readonly routes: (router: ConnectRouter) => void;
  readonly interceptors?: Interceptor[];
  /** Adds values (e.g. the peer identity) to each request's context. */
  readonly contextValues?: (req: http2.Http2ServerRequest, values: ContextValues) => ContextValues;
}

export type ConnectHandler = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void;

export function createConnectHandler(options: ConnectHandlerOptions): ConnectHandler {
  const adapter = connectNodeAdapter({
    grpc: true,
    connect: false,
    grpcWeb: false,
    acceptCompression: [],
    readMaxBytes: MAX_MESSAGE_BYTES,
    writeMaxBytes: MAX_MESSAGE_BYTES,
    interceptors: options.interceptors ?? [],
    contextValues: (req) => {
      const r = req as unknown as http2.Http2ServerRequest;
      const values = createContextValues().set(kHttp2Stream, r.stream);
      return options.contextValues ? options.contextValues(r, values) : values;
    },
    routes: options.routes,
  });
  return adapter as unknown as ConnectHandler;
}
