/**
 * connect-node client transport to a peer, the alternative to peer-channel.ts (grpc-js); the
 * team benchmarks both and keeps the better. One transport = one TunedSessionManager = one
 * HTTP/2 connection carrying every stream to that peer.
 *
 * Windows (receiver settings, so they govern downloads from the peer): stream 16 MiB
 * (settings.initialWindowSize), connection 256 MiB (setLocalWindowSize, see
 * tuned-session-manager.ts), frames up to 1 MiB (settings.maxFrameSize; measured 184 -> 496
 * MB/s for 1 MiB messages). Keepalive: PING every 10 s, dead after 20 s without ACK. No
 * compression. Trust as in peer-channel.ts: mesh CA only, serverName check, node rule.
 *
 * Connect timeout: http2.connect has none, so the transport dials the TLS socket itself
 * (nodeOptions.createConnection) and destroys it with ConnectTimeoutError unless the TLS
 * handshake completes within connectTimeoutMs. The call that triggered the dial then fails
 * (Unavailable, cause ConnectTimeoutError) and the next call dials afresh.
 */
import type * as http2 from "node:http2";
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from "node:tls";
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { InvalidOptionError } from "./errors.js";
import { ConnectTimeoutError, DEFAULT_PEER_CONNECT_TIMEOUT_MS, DEFAULT_PEER_SERVER_NAME, peerServerIdentityCheck, type PeerTlsPem } from "./peer-channel.js";
import { TunedSessionManager } from "./tuned-session-manager.js";
import { clientTraceInterceptor } from "../telemetry/rpc-observe.js";

const MiB = 1024 * 1024;

export const DEFAULT_PEER_STREAM_WINDOW_BYTES = 16 * MiB;
export const DEFAULT_PEER_CONNECTION_WINDOW_BYTES = 256 * MiB;
export const DEFAULT_PEER_MAX_FRAME_SIZE_BYTES = 1 * MiB;
/** 10 s like the grpc-js peer channel (peer-channel.ts DEFAULT_PEER_KEEPALIVE_TIME_MS says why). */
export const DEFAULT_PEER_PING_INTERVAL_MS = 10_000;
export const DEFAULT_PEER_PING_TIMEOUT_MS = 20_000;
export const DEFAULT_PEER_READ_MAX_BYTES = 8 * MiB;

export interface PeerTransportOptions {
  /** https://HOST:PORT of the peer listener. */
  baseUrl: string;
  tls: PeerTlsPem;
  /** TLS name the peer's certificate must carry; default "localhost". */
  serverName?: string;
  /** Require the server to be this node; default any mesh node. */
  expectNodeName?: string;
  /** Per-stream receive window, bytes; default 16 MiB. */
  streamWindowBytes?: number;
  /** Connection receive window, bytes; default 256 MiB. */
  connectionWindowBytes?: number;
  /** Largest frame we accept, bytes; default 1 MiB. */
  maxFrameSizeBytes?: number;
  /** PING interval on a connection with open streams, ms; default 10 000. */
  pingIntervalMs?: number;
  /** Dead after this long without PING ACK, ms; default 20 000. */
  pingTimeoutMs?: number;
  /** TCP + TLS must complete within this, ms; default 5 000. */
  connectTimeoutMs?: number;
  /** Largest message accepted, bytes; default 8 MiB. */
  readMaxBytes?: number;
  interceptors?: Interceptor[];
}

export interface PeerTransport {
  readonly transport: Transport;
  readonly sessionManager: TunedSessionManager;
  /** Closes the connection and every stream on it. Idempotent. */
  close(): void;
}

/** Creates the connect-node transport to one peer (connects lazily, on the first call). */
export function createPeerConnectTransport(options: PeerTransportOptions): PeerTransport {
  const url = new URL(options.baseUrl);
  if (url.protocol !== "https:") throw new InvalidOptionError("baseUrl", `peers are reached over mTLS only: want https://HOST:PORT, got ${options.baseUrl}`);
  const serverName = options.serverName ?? DEFAULT_PEER_SERVER_NAME;
  const connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_PEER_CONNECT_TIMEOUT_MS;
  const streamWindow = options.streamWindowBytes ?? DEFAULT_PEER_STREAM_WINDOW_BYTES;
  const connectionWindow = options.connectionWindowBytes ?? DEFAULT_PEER_CONNECTION_WINDOW_BYTES;
  const maxFrame = options.maxFrameSizeBytes ?? DEFAULT_PEER_MAX_FRAME_SIZE_BYTES;
  checkInt("streamWindowBytes", streamWindow, 65_535, 2 ** 31 - 1);
  checkInt("connectionWindowBytes", connectionWindow, streamWindow, 2 ** 31 - 1);
  checkInt("maxFrameSizeBytes", maxFrame, 16_384, 2 ** 24 - 1);
  checkInt("connectTimeoutMs", connectTimeoutMs, 1, 600_000);

  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = Number(url.port === "" ? 443 : url.port);
  const tlsOptions: ConnectionOptions = {
    host,
    port,
    servername: serverName,
    ca: options.tls.ca,
    cert: options.tls.cert,
    key: options.tls.key,
    ALPNProtocols: ["h2"],
    minVersion: "TLSv1.2",
    checkServerIdentity: peerServerIdentityCheck(options.expectNodeName),
  };
  const createConnection = (): TLSSocket => {
    const socket = tlsConnect(tlsOptions);
    const timer = setTimeout(() => {
      socket.destroy(new ConnectTimeoutError(options.baseUrl, connectTimeoutMs));
    }, connectTimeoutMs);
    timer.unref();
    const done = (): void => clearTimeout(timer);
    socket.once("secureConnect", done);
    socket.once("close", done);
    return socket;
  };
  const nodeOptions: http2.SecureClientSessionOptions = {
    createConnection,
    settings: { initialWindowSize: streamWindow, maxFrameSize: maxFrame, enablePush: false },
  };
  const sessionManager = new TunedSessionManager(
    url,
    connectionWindow,
    {
      pingIntervalMs: options.pingIntervalMs ?? DEFAULT_PEER_PING_INTERVAL_MS,
      pingTimeoutMs: options.pingTimeoutMs ?? DEFAULT_PEER_PING_TIMEOUT_MS,
      pingIdleConnection: true,
    },
    nodeOptions,
  );
  const transport = createGrpcTransport({
    baseUrl: options.baseUrl,
    sessionManager,
    acceptCompression: [],
    readMaxBytes: options.readMaxBytes ?? DEFAULT_PEER_READ_MAX_BYTES,
    writeMaxBytes: 4 * MiB + 64 * 1024,
    // Trace context (traceparent) rides in the request headers, so the peer's server span
    // joins the caller's trace; then the caller's own interceptors.
    interceptors: [clientTraceInterceptor(), ...(options.interceptors ?? [])],
  });
  return { transport, sessionManager, close: () => sessionManager.abort() };
}

function checkInt(field: string, v: number, min: number, max: number): void {
  if (!Number.isInteger(v) || v < min || v > max) throw new InvalidOptionError(field, `want an integer in [${min}, ${max}], got ${String(v)}`);
}
