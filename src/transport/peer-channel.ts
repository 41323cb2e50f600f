/**
 * grpc-js channels to peers: one client object = one channel = one HTTP/2 connection, tuned
 * for the peer plane's bandwidth-delay product and kept alive with PINGs.
 *
 * - Trust: ChannelCredentials.createSsl(meshCa, key, cert). The server certificate must chain
 *   to the mesh CA, match `serverName` (default "localhost", which dev certificates carry;
 *   set via grpc.ssl_target_name_override, so dialling an IP works without the RFC 6066
 *   warning), and satisfy the node trust rule in the server role (identity.ts: one node URI,
 *   not a CA, serverAuth EKU; `expectNodeName` pins which node).
 * - Windows: grpc-node.flow_control_window sets the stream AND connection receive window. It
 *   is the knob for downloads (bodies flow server -> client): 2 x (1 Gbit/s x 100 ms) = 25 MB,
 *   rounded to 32 MiB.
 * - One connection per peer: grpc.use_local_subchannel_pool gives every client its own
 *   subchannel, so two clients to one peer never share (or fight over) one connection.
 * - No retries inside grpc-js (grpc.enable_retries 0): retry is the replication layer's
 *   policy. No compression: bodies are incompressible.
 *
 * Connect timeout. grpc-js has none of its own: a TCP connect into a black hole waits for the
 * OS (minutes). The timeout is enforced as a readiness gate: connectPeerGrpcClient() creates
 * the client, kicks the channel out of IDLE and waits (client.waitForReady, i.e.
 * getConnectivityState(true) + watchConnectivityState) for READY with a connectTimeoutMs
 * deadline. On expiry the client is closed, abandoning the stuck attempt, and
 * ConnectTimeoutError is thrown; the replication layer backs off and dials again. Calls are
 * made without waitForReady, so on a channel that later breaks they fail fast (UNAVAILABLE)
 * instead of queueing; before opening streams after a failure the caller gates again with
 * waitForChannelReady (free when the channel is READY). grpc.initial/max_reconnect_backoff_ms
 * bound grpc-js's own reconnect pacing in between.
 */
import { X509Certificate } from "node:crypto";
import { checkServerIdentity, connect as tlsConnect, type PeerCertificate } from "node:tls";
import type { DescService } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { InvalidOptionError, TransportError } from "./errors.js";
import { createGrpcJsClient, type GrpcJsClient } from "./grpc-js-adapter.js";
import { checkNodeCertificate } from "./identity.js";

const MiB = 1024 * 1024;

/** PEM material of this node for dialling peers. */
export interface PeerTlsPem {
  /** The mesh CA: the only trust anchor for peer servers. */
  ca: Buffer | string;
  cert: Buffer | string;
  key: Buffer | string;
}

export const DEFAULT_PEER_SERVER_NAME = "localhost";
export const DEFAULT_PEER_FLOW_CONTROL_WINDOW_BYTES = 32 * MiB;
/**
 * A PING every 10 s (gRPC's floor for client keepalive): Node does not always report a TLS
 * connection whose TCP connection was closed under it (FIN or RST while no write is pending;
 * docs/RELIABILITY.md §5), so the keepalive is what finds it, and every stream opened on it
 * in the meantime stalls to its idle deadline. The 20 s timeout stays: PING ACKs queue behind
 * DATA on a lossy WAN (docs/PERFORMANCE.md, W9).
 */
export const DEFAULT_PEER_KEEPALIVE_TIME_MS = 10_000;
export const DEFAULT_PEER_KEEPALIVE_TIMEOUT_MS = 20_000;
export const DEFAULT_PEER_CONNECT_TIMEOUT_MS = 5_000;
export const DEFAULT_PEER_MAX_RECEIVE_MESSAGE_BYTES = 8 * MiB;
/** What a peer listener accepts (connect-handler.ts MAX_MESSAGE_BYTES); sending more is futile. */
export const DEFAULT_PEER_MAX_SEND_MESSAGE_BYTES = 4 * MiB + 64 * 1024;
export const DEFAULT_PEER_INITIAL_RECONNECT_BACKOFF_MS = 1_000;
export const DEFAULT_PEER_MAX_RECONNECT_BACKOFF_MS = 60_000;

export interface PeerChannelOptions {
  /** TLS name the peer's certificate must carry; default DEFAULT_PEER_SERVER_NAME. */
  serverName?: string;
  /** Require the server to be this node (its identity URI); default: any mesh node. */
  expectNodeName?: string;
  /** Stream and connection receive window, bytes; default 32 MiB. */
  flowControlWindowBytes?: number;
  /** PING this often, ms; default 10 000. */
  keepaliveTimeMs?: number;
  /** Connection is dead when a PING is unanswered this long, ms; default 20 000. */
  keepaliveTimeoutMs?: number;
  /** READY must be reached within this, ms (connectPeerGrpcClient); default 5 000. */
  connectTimeoutMs?: number;
  /** Largest message accepted, bytes; default 8 MiB. */
  maxReceiveMessageBytes?: number;
  /** Largest message sent, bytes; default 4 MiB + 64 KiB. */
  maxSendMessageBytes?: number;
  /** grpc-js reconnect backoff bounds, ms; defaults 1 000 and 60 000. */
  initialReconnectBackoffMs?: number;
  maxReconnectBackoffMs?: number;
}

export type ResolvedPeerChannelOptions = Required<Omit<PeerChannelOptions, "expectNodeName">> & Pick<PeerChannelOptions, "expectNodeName">;

/** Merges defaults and validates, naming the bad field. */
export function resolvePeerChannelOptions(o: PeerChannelOptions = {}): ResolvedPeerChannelOptions {
  const r: ResolvedPeerChannelOptions = {
    serverName: o.serverName ?? DEFAULT_PEER_SERVER_NAME,
    flowControlWindowBytes: o.flowControlWindowBytes ?? DEFAULT_PEER_FLOW_CONTROL_WINDOW_BYTES,
    keepaliveTimeMs: o.keepaliveTimeMs ?? DEFAULT_PEER_KEEPALIVE_TIME_MS,
    keepaliveTimeoutMs: o.keepaliveTimeoutMs ?? DEFAULT_PEER_KEEPALIVE_TIMEOUT_MS,
    connectTimeoutMs: o.connectTimeoutMs ?? DEFAULT_PEER_CONNECT_TIMEOUT_MS,
    maxReceiveMessageBytes: o.maxReceiveMessageBytes ?? DEFAULT_PEER_MAX_RECEIVE_MESSAGE_BYTES,
    maxSendMessageBytes: o.maxSendMessageBytes ?? DEFAULT_PEER_MAX_SEND_MESSAGE_BYTES,
    initialReconnectBackoffMs: o.initialReconnectBackoffMs ?? DEFAULT_PEER_INITIAL_RECONNECT_BACKOFF_MS,
    maxReconnectBackoffMs: o.maxReconnectBackoffMs ?? DEFAULT_PEER_MAX_RECONNECT_BACKOFF_MS,
    ...(o.expectNodeName !== undefined ? { expectNodeName: o.expectNodeName } : {}),
  };
  if (r.serverName === "" || /[\s/]/.test(r.serverName)) throw new InvalidOptionError("serverName", `not a DNS name: ${JSON.stringify(r.serverName)}`);
  const ints: [keyof ResolvedPeerChannelOptions, number, number][] = [
    ["flowControlWindowBytes", 65_535, 2 ** 31 - 1],
    ["keepaliveTimeMs", 10, 24 * 3600_000],
    ["keepaliveTimeoutMs", 10, 3600_000],
    ["connectTimeoutMs", 1, 600_000],
    ["maxReceiveMessageBytes", 1024, 2 ** 31 - 1],
    ["maxSendMessageBytes", 1024, 2 ** 31 - 1],
    ["initialReconnectBackoffMs", 1, 3600_000],
    ["maxReconnectBackoffMs", 1, 3600_000],
  ];
  for (const [k, min, max] of ints) {
    const v = r[k] as number;
    if (!Number.isInteger(v) || v < min || v > max) throw new InvalidOptionError(k, `want an integer in [${min}, ${max}], got ${String(v)}`);
  }
  return r;
}

/**
 * Verifies a peer SERVER certificate: the usual hostname check against `serverName`, then the
 * node trust rule in the server role. Returns an Error to fail the handshake, as Node expects.
 */
export function peerServerIdentityCheck(expectNodeName?: string): (host: string, cert: PeerCertificate) => Error | undefined {
  const allow = expectNodeName !== undefined ? new Set([expectNodeName]) : undefined;
  return (host, cert) => {
    const hostErr = checkServerIdentity(host, cert);
    if (hostErr !== undefined) return hostErr;
    let x509: X509Certificate;
    try {
      x509 = new X509Certificate(cert.raw);
    } catch (e) {
      return new Error("peer certificate could not be parsed", { cause: e });
    }
    const id = checkNodeCertificate(x509, allow, "server");
    return id.ok ? undefined : new Error(`peer is not an acceptable mesh node: ${id.reason}`);
  };
}

/** mTLS credentials for dialling peers. */
export function peerChannelCredentials(tls: PeerTlsPem, expectNodeName?: string): grpc.ChannelCredentials {
  const buf = (v: Buffer | string): Buffer => (typeof v === "string" ? Buffer.from(v) : v);
  return grpc.credentials.createSsl(buf(tls.ca), buf(tls.key), buf(tls.cert), {
    checkServerIdentity: peerServerIdentityCheck(expectNodeName),
  });
}

/** The grpc-js channel options of a peer connection. */
export function peerChannelOptions(o: ResolvedPeerChannelOptions): grpc.ChannelOptions {
  return {
    "grpc.ssl_target_name_override": o.serverName,
    "grpc.default_authority": o.serverName,
    "grpc-node.flow_control_window": o.flowControlWindowBytes,
    "grpc.keepalive_time_ms": o.keepaliveTimeMs,
    "grpc.keepalive_timeout_ms": o.keepaliveTimeoutMs,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.max_receive_message_length": o.maxReceiveMessageBytes,
    "grpc.max_send_message_length": o.maxSendMessageBytes,
    "grpc.enable_retries": 0,
    "grpc.use_local_subchannel_pool": 1,
    "grpc.initial_reconnect_backoff_ms": o.initialReconnectBackoffMs,
    "grpc.max_reconnect_backoff_ms": o.maxReconnectBackoffMs,
    "grpc.default_compression_algorithm": grpc.compressionAlgorithms.identity,
  };
}

/** A peer client on its own channel (not yet connected: channels connect lazily). */
export function createPeerGrpcClient<S extends DescService>(service: S, target: string, tls: PeerTlsPem, options: PeerChannelOptions = {}): GrpcJsClient<S> {
  const o = resolvePeerChannelOptions(options);
  return createGrpcJsClient(service, target, peerChannelCredentials(tls, o.expectNodeName), peerChannelOptions(o));
}

/** The peer did not become reachable (TCP + TLS + HTTP/2) within the connect timeout. */
export class ConnectTimeoutError extends TransportError {
  constructor(readonly target: string, readonly timeoutMs: number, options?: { cause?: unknown }) {
    super("CONNECT_TIMEOUT", `could not connect to ${target} within ${timeoutMs} ms`, options);
  }
}

/**
 * Why a dial to `target` ("host:port") fails, found with one TLS handshake of our own: grpc-js
 * reports every failed connect as "Failed to connect before the deadline", whether the port
 * refused, the peer's certificate is not signed by the mesh CA, or the peer refused ours, and an
 * operator must be told which. Resolves with the reason, or undefined when TCP, TLS (both ways)
 * and ALPN h2 all succeed (the failure lies above TLS). Never rejects.
 */
export function diagnoseDial(target: string, tls: PeerTlsPem, options: PeerChannelOptions = {}, timeoutMs = 3000, signal?: AbortSignal): Promise<string | undefined> {
  const o = resolvePeerChannelOptions(options);
  const m = /^(?:dns:)?(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(target);
  if (!m) return Promise.resolve(`cannot parse ${target} as host:port`);
  const host = m[1] ?? m[2]!;
  const port = Number(m[3]);
  return new Promise((resolve) => {
    let settled = false;
    const socket = tlsConnect({
      host,
      port,
      ca: tls.ca,
      cert: tls.cert,
      key: tls.key,
      servername: o.serverName,
      ALPNProtocols: ["h2"],
      checkServerIdentity: peerServerIdentityCheck(o.expectNodeName),
    });
    const done = (why: string | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      socket.destroy();
      resolve(why);
    };
    const onAbort = (): void => done("the probe was stopped");
    signal?.addEventListener("abort", onAbort, { once: true });
    const timer = setTimeout(() => done(`no TLS handshake within ${timeoutMs} ms`), timeoutMs);
    socket.once("error", (e: NodeJS.ErrnoException) => done(`${e.code && !e.message.includes(e.code) ? `${e.code}: ` : ""}${e.message}`));
    let handshaken = false;
    socket.once("secureConnect", () => {
      handshaken = true;
      if (socket.alpnProtocol !== "h2") return done("the peer did not agree to HTTP/2 (ALPN)");
      // With TLS 1.3 the server checks our certificate after our side of the handshake is done:
      // its refusal (an alert, or Node closing the socket) arrives just after. Give it time.
      setTimeout(() => done(undefined), Math.min(500, timeoutMs)).unref();
    });
    socket.once("close", () =>
      done(
        handshaken
          ? "the peer closed the connection right after the TLS handshake: it refused our certificate (not signed by a CA it trusts, or expired)"
          : "the peer closed the connection during the TLS handshake",
      ),
    );
  });
}

/**
 * Resolves once the client's channel is READY; rejects with ConnectTimeoutError after
 * `timeoutMs`, or with the signal's reason when aborted. The channel is left as is.
 */
export function waitForChannelReady(client: grpc.Client, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const target = client.getChannel().getTarget();
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted === true) {
      reject(signal.reason);
      return;
    }
    let settled = false;
    const onAbort = (): void => finish(signal?.reason);
    const finish = (err: unknown): void => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener("abort", onAbort);
      if (err === undefined) resolve();
      else reject(err);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    client.waitForReady(Date.now() + timeoutMs, (err) => {
      finish(err ? new ConnectTimeoutError(target, timeoutMs, { cause: err }) : undefined);
    });
  });
}

/**
 * Creates a peer client and waits until it is connected (see "Connect timeout" above). On
 * failure the client is closed before the error is thrown.
 */
export async function connectPeerGrpcClient<S extends DescService>(
  service: S,
  target: string,
  tls: PeerTlsPem,
  options: PeerChannelOptions & { signal?: AbortSignal } = {},
): Promise<GrpcJsClient<S>> {
  const { signal, ...channel } = options;
  const o = resolvePeerChannelOptions(channel);
  const client = createGrpcJsClient(service, target, peerChannelCredentials(tls, o.expectNodeName), peerChannelOptions(o));
  try {
    await waitForChannelReady(client, o.connectTimeoutMs, signal);
    return client;
  } catch (e) {
    client.close();
    throw e;
  }
}
