/**
 * The two listeners of a node, with their limits (limits.ts) applied and their lifecycle
 * handled: listen, graceful close, certificate rotation.
 *
 * - Public listener: h2c, or TLS when a certificate is given. Build clients, optional bearer
 *   auth above this layer.
 * - Peer listener: mTLS only. The handshake demands a client certificate chaining to the mesh
 *   CA (ca = the mesh CA only, requestCert, rejectUnauthorized, TLS >= 1.2); then, on the new
 *   HTTP/2 session and before any stream can be read, the trust rule of identity.ts runs and a
 *   session whose peer is not a mesh node (or not on the allow-list) is destroyed and reported
 *   through onRejected. The request handler is wrapped with the same check as a second line:
 *   a stream on a session that was not admitted is refused, never handed to the routes.
 *
 * Both listeners start a stream's handler only once its request has a byte or has ended
 * (startOnRequest): every gRPC client sends its request message (or the first one) right after
 * the HEADERS, so legitimate calls lose one tick, while a connection that opens streams and
 * sends nothing on them costs a listener each, not a connect-node handler start (~0.3 ms each:
 * 256 of them blocked the event loop ~150 ms for every client, chaos scenario 9).
 *
 * Rotation: reloadTls() re-reads the PEM files, proves the pair usable, and swaps the secure
 * context with setSecureContext (new handshakes use it, established connections keep theirs).
 * With watchTls the files' directories are watched and reloads happen by themselves.
 */
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import type { SecureContextOptions, TLSSocket } from "node:tls";
import type { ConnectHandler } from "./connect-handler.js";
import { causeChain } from "../util/cause-chain.js";
import { InvalidOptionError, TransportError } from "./errors.js";
import { peerIdentityFromSocket, rememberSessionIdentity, sessionIdentity } from "./identity.js";
import { DEFAULT_PEER_LIMITS, DEFAULT_PUBLIC_LIMITS, http2ServerOptions, resolveServerLimits, type ServerLimits } from "./limits.js";
import { SessionTracker } from "./session-tracker.js";
import { assertUsableTls, readTlsFiles, watchTlsFiles, type TlsFiles, type TlsWatcher } from "./tls-files.js";
import { releaseUnreadRequest } from "./unread-request.js";

/** Oldest TLS version either listener speaks. */
export const MIN_TLS_VERSION = "TLSv1.2";
/** Quiet period after a file change before a watched listener reloads, ms. */
export const DEFAULT_TLS_WATCH_DEBOUNCE_MS = 250;

export interface ListenAddress {
  host: string;
  port: number;
}

interface CommonServerOptions {
  /** The request handler (createConnectHandler). */
  handler: ConnectHandler;
  /** Where to listen; port 0 picks a free port (see address()). */
  listen: ListenAddress;
  /** Overrides of the listener's DEFAULT_*_LIMITS. */
  limits?: Partial<ServerLimits>;
  /** Watch the TLS files and reload on change; default false. */
  watchTls?: boolean;
  /** Debounce of watchTls, ms; default DEFAULT_TLS_WATCH_DEBOUNCE_MS. */
  tlsWatchDebounceMs?: number;
  /** Told after every automatic reload: undefined on success, the error otherwise (old context kept). */
  onTlsReload?: (err: Error | undefined) => void;
  /** Told when a session is destroyed for not answering a keepalive PING. */
  onKeepaliveTimeout?: (remoteAddress: string | undefined) => void;
}

export interface PublicServerOptions extends CommonServerOptions {
  /** Serve TLS with this certificate; h2c (cleartext HTTP/2) when absent. */
  tls?: { certFile: string; keyFile: string };
}

export interface PeerServerOptions extends CommonServerOptions {
  /** The node certificate and key, and the mesh CA that client certificates must chain to. */
  tls: { caFile: string; certFile: string; keyFile: string };
  /** Only these node names are admitted (default: any mesh node). */
  allow?: ReadonlySet<string>;
  /** Told about every refused peer: failed handshakes and sessions failing the trust rule. */
  onRejected?: (reason: string, remoteAddress: string | undefined) => void;
}

export interface ListeningServer {
  readonly server: http2.Http2Server | http2.Http2SecureServer;
  /** The limits in force. */
  readonly limits: Readonly<ServerLimits>;
  /** The bound address (the real port when listen.port was 0). */
  address(): ListenAddress;
  /** Open HTTP/2 sessions (connections) now. */
  sessionCount(): number;
  /** Re-reads the TLS files and swaps the secure context; rejects (keeping the old one) if unusable. */
  reloadTls(): Promise<void>;
  /**
   * Stops accepting, sends GOAWAY to every session, waits for in-flight streams up to
   * `graceMs`, then destroys what remains. Idempotent: later calls return the same promise.
   */
  close(graceMs: number): Promise<void>;
}

/** Starts the public listener. */
export async function createPublicServer(options: PublicServerOptions): Promise<ListeningServer> {
  const limits = resolveServerLimits(DEFAULT_PUBLIC_LIMITS, options.limits);
  const base = { ...http2ServerOptions(limits) };
  if (options.tls === undefined) {
    if (options.watchTls === true) throw new InvalidOptionError("watchTls", "needs tls");
    const server = http2.createServer(base, startOnRequest(options.handler));
    return start(server, limits, options, undefined);
  }
  const files: TlsFiles = { certFile: options.tls.certFile, keyFile: options.tls.keyFile };
  const secure = { minVersion: MIN_TLS_VERSION } as const;
  const material = await readTlsFiles(files);
  assertUsableTls({ ...secure, ...material }, "public listener TLS");
  const server = http2.createSecureServer({ ...base, ...secure, ...material, allowHTTP1: false }, startOnRequest(options.handler));
  return start(server, limits, options, { files, secure });
}

/** Starts the mTLS peer listener. */
export async function createPeerServer(options: PeerServerOptions): Promise<ListeningServer> {
  const limits = resolveServerLimits(DEFAULT_PEER_LIMITS, options.limits);
  const files: TlsFiles = { caFile: options.tls.caFile, certFile: options.tls.certFile, keyFile: options.tls.keyFile };
  const secure = { minVersion: MIN_TLS_VERSION } as const;
  const material = await readTlsFiles(files);
  assertUsableTls({ ...secure, ...material }, "peer listener TLS");
  const inner = startOnRequest(options.handler);
  const guarded: ConnectHandler = (req, res) => {
    if (sessionIdentity(req.stream.session) === undefined) {
      req.stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    inner(req, res);
  };
  const server = http2.createSecureServer(
    {
      ...http2ServerOptions(limits),
      ...secure,
      ...material,
      requestCert: true,
      rejectUnauthorized: true,
      allowHTTP1: false,
    },
    guarded,
  );
  const onRejected = options.onRejected;
  server.on("tlsClientError", (err, socket) => {
    // When Node rejects an unverifiable client certificate it destroys the socket without an
    // error ("socket hang up"); the verification result is kept in authorizationError.
    const verify = socket.authorizationError as unknown;
    const why = verify !== undefined && verify !== null ? `client certificate rejected (${String(verify)})` : causeChain(err);
    onRejected?.(`TLS handshake failed: ${why}`, remoteAddressOf(socket));
  });
  server.on("secureConnection", (socket) => {
    // HTTP/2 forbids renegotiation (RFC 9113 §9.2.1); it would also let a peer swap certificates.
    socket.disableRenegotiation();
  });
  const admit = (session: http2.ServerHttp2Session): boolean => {
    const socket = session.socket as TLSSocket;
    const id = peerIdentityFromSocket(socket, options.allow);
    if (id.ok) {
      rememberSessionIdentity(session, { nodeName: id.nodeName, fingerprint256: id.fingerprint256 });
      return true;
    }
    onRejected?.(id.reason, socket.remoteAddress);
    return false;
  };
  return start(server, limits, options, { files, secure }, admit);
}

/**
 * Defers `handler` until the request has bytes to read or has ended; a stream closed before
 * that (reset, session destroyed) never starts one. The wait is on the compat request's
 * 'readable', the same Readable contract the handler's own reader (an async iterator) uses,
 * and the buffered bytes stay for it.
 */
export function startOnRequest(handler: ConnectHandler): ConnectHandler {
  return (req, res) => {
    releaseUnreadRequest(req.stream);
    if (req.readableLength > 0 || req.readableEnded || req.stream.endAfterHeaders) {
      handler(req, res);
      return;
    }
    const start = (): void => {
      req.off("readable", start);
      req.stream.off("close", forget);
      // The compat layer ends the request (so 'readable' fires) as the stream closes.
      if (req.stream.closed || req.stream.destroyed) return;
      handler(req, res);
    };
    const forget = (): void => {
      req.off("readable", start);
    };
    req.on("readable", start);
    req.stream.once("close", forget);
  };
}

/**
 * The peer address of a TLS socket, even after it was destroyed (the TLS wrapper forgets it;
 * the TCP socket underneath, `_parent`, still knows). Used for logging only.
 */
function remoteAddressOf(socket: TLSSocket): string | undefined {
  return socket.remoteAddress ?? (socket as unknown as { _parent?: { remoteAddress?: string } })._parent?.remoteAddress;
}

interface TlsState {
  files: TlsFiles;
  secure: Pick<SecureContextOptions, "minVersion">;
}

async function start(
  server: http2.Http2Server | http2.Http2SecureServer,
  limits: ServerLimits,
  options: CommonServerOptions,
  tls: TlsState | undefined,
  admit?: (session: http2.ServerHttp2Session) => boolean,
): Promise<ListeningServer> {
  const tracker = new SessionTracker(server, {
    connectionWindowBytes: limits.connectionWindowBytes,
    keepaliveIntervalMs: limits.keepaliveIntervalMs,
    keepaliveTimeoutMs: limits.keepaliveTimeoutMs,
    streamResetBurst: limits.streamResetBurst,
    streamResetRatePerSecond: limits.streamResetRatePerSecond,
    ...(options.onKeepaliveTimeout !== undefined ? { onKeepaliveTimeout: options.onKeepaliveTimeout } : {}),
  });
  // 'session' is emitted synchronously while Node sets the session up on the socket, before
  // any frame from the peer has been read: destroying here means no stream ever starts.
  server.on("session", (session: http2.ServerHttp2Session) => {
    if (admit !== undefined && !admit(session)) {
      session.destroy();
      return;
    }
    tracker.adopt(session);
  });

  let reloading: Promise<void> = Promise.resolve();
  const reloadTls = (): Promise<void> => {
    if (tls === undefined) return Promise.reject(new TransportError("TLS_FILES", "this listener serves cleartext h2c; there is no TLS to reload"));
    const run = async (): Promise<void> => {
      const material = await readTlsFiles(tls.files);
      const next = { ...tls.secure, ...material };
      assertUsableTls(next, "new TLS material");
      (server as http2.Http2SecureServer).setSecureContext(next);
    };
    // One reload at a time, in call order; a failed one does not poison the next.
    const p = reloading.then(run, run);
    reloading = p.catch(() => undefined);
    return p;
  };

  let watcher: TlsWatcher | undefined;
  if (options.watchTls === true && tls !== undefined) {
    watcher = watchTlsFiles(
      tls.files,
      () => {
        reloadTls().then(
          () => options.onTlsReload?.(undefined),
          (e: unknown) => options.onTlsReload?.(e instanceof Error ? e : new Error(String(e))),
        );
      },
      options.tlsWatchDebounceMs ?? DEFAULT_TLS_WATCH_DEBOUNCE_MS,
    );
  }

  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.listen.port, options.listen.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (e) {
    watcher?.close();
    throw new TransportError("LISTEN_FAILED", `cannot listen on ${options.listen.host}:${options.listen.port}`, { cause: e });
  }

  let closing: Promise<void> | undefined;
  return {
    server,
    limits,
    address(): ListenAddress {
      const a = server.address() as AddressInfo | null;
      if (a === null) throw new TransportError("CLOSED", "listener is closed");
      return { host: a.address, port: a.port };
    },
    sessionCount: () => tracker.size,
    reloadTls,
    close(graceMs: number): Promise<void> {
      closing ??= (async () => {
        watcher?.close();
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        await tracker.drain(graceMs);
        await closed;
      })();
      return closing;
    },
  };
}
