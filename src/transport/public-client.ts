/**
 * Client side of the public listener for tools (the CLI, tests): one HTTP/2 connection,
 * h2c or TLS, compression off (artifact bodies are usually incompressible, and gzip costs
 * ~10x the CPU of the transfer itself).
 */
import { readFileSync } from "node:fs";
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import { TunedSessionManager } from "./tuned-session-manager.js";

export interface PublicClientOptions {
  /** http://HOST:PORT (h2c) or https://HOST:PORT. A bare HOST:PORT means http://. */
  readonly server: string;
  /** PEM file of the CA that signed the server's certificate (https only). */
  readonly caFile?: string | undefined;
  /** TLS server name to verify when dialing an IP address. Default "localhost". */
  readonly serverName?: string | undefined;
}

export interface PublicConnection {
  readonly transport: Transport;
  client<S extends DescService>(service: S): Client<S>;
  close(): void;
}

/** Connection receive window of the public client: 8 streams' worth of the 8 MiB stream window. */
export const PUBLIC_CLIENT_CONNECTION_WINDOW_BYTES = 64 << 20;

export function normalizeServerUrl(server: string): string {
  return /^[a-z]+:\/\//i.test(server) ? server : `http://${server}`;
}

export function connectPublic(options: PublicClientOptions): PublicConnection {
  const baseUrl = normalizeServerUrl(options.server);
  const tls = baseUrl.startsWith("https:");
  const nodeOptions = tls
    ? {
        ...(options.caFile ? { ca: readFileSync(options.caFile) } : {}),
        servername: options.serverName ?? "localhost",
        settings: { initialWindowSize: 8 << 20, maxFrameSize: 1 << 20 },
      }
    : { settings: { initialWindowSize: 8 << 20, maxFrameSize: 1 << 20 } };
  // The stream window alone does nothing while the connection window stays at 64 KiB (it caps
  // every stream together at ~64 KiB per RTT): raise both, for downloads of large artifacts.
  const sessionManager = new TunedSessionManager(baseUrl, PUBLIC_CLIENT_CONNECTION_WINDOW_BYTES, { pingIntervalMs: 30_000, pingTimeoutMs: 15_000 }, nodeOptions);
  const transport = createGrpcTransport({
    baseUrl,
    sessionManager,
    acceptCompression: [],
    readMaxBytes: 8 << 20,
    writeMaxBytes: 8 << 20,
  });
  return {
    transport,
    client: (service) => createClient(service, transport),
    close: () => sessionManager.abort(),
  };
}
