/**
 * Per-listener bookkeeping of HTTP/2 sessions and their sockets, for three jobs Node does not
 * do by itself:
 * - the connection-level receive window (SETTINGS only carry the stream window; the
 *   connection window must be raised on each session with setLocalWindowSize);
 * - server keepalive: a session with no frames for keepaliveIntervalMs gets a PING; no ACK
 *   within keepaliveTimeoutMs destroys it, so a dead peer under a silent long stream is found
 *   (Node re-arms a session timeout on traffic but not after it fired, so we re-arm on ACK);
 * - a Rapid Reset budget per session (client stream resets; see resetBudget);
 * - graceful shutdown: GOAWAY to every session, wait for in-flight streams up to a grace
 *   period, then destroy what is left, including sockets still in their TLS handshake.
 */
import type { Socket } from "node:net";
import { constants, type Http2SecureServer, type Http2Server, type ServerHttp2Session } from "node:http2";

export interface SessionTrackerOptions {
  /** Connection-level receive window to set on each session, bytes. */
  connectionWindowBytes: number;
  keepaliveIntervalMs: number;
  keepaliveTimeoutMs: number;
  /** Told when a session is destroyed for not answering a keepalive PING. */
  onKeepaliveTimeout?: (remoteAddress: string | undefined) => void;
  /** Rapid Reset budget per session: client resets in a burst, and the refill rate. */
  streamResetBurst: number;
  streamResetRatePerSecond: number;
  /** Told when a session is destroyed for resetting too many streams. */
  onResetFlood?: (remoteAddress: string | undefined) => void;
}

export class SessionTracker {
  private readonly sessions = new Set<ServerHttp2Session>();
  private readonly sockets = new Set<Socket>();
  private readonly emptyWaiters: (() => void)[] = [];
  private draining = false;
  private opened = 0;

  constructor(
    server: Http2Server | Http2SecureServer,
    private readonly options: SessionTrackerOptions,
  ) {
    server.on("connection", (socket: Socket) => {
      // Reading remoteAddress now makes net.Socket cache it: rejection logs need it after the
      // socket is destroyed, when a fresh lookup returns undefined.
      void socket.remoteAddress;
      this.sockets.add(socket);
      socket.once("close", () => this.sockets.delete(socket));
    });
  }

  /** Sessions open now. */
  get size(): number {
    return this.sessions.size;
  }

  /** Sessions adopted since the listener started. */
  get openedTotal(): number {
    return this.opened;
  }

  /** Takes charge of an admitted session: window, keepalive, shutdown. */
  adopt(session: ServerHttp2Session): void {
    this.sessions.add(session);
    this.opened++;
    session.once("close", () => this.forget(session));
    try {
      session.setLocalWindowSize(this.options.connectionWindowBytes);
    } catch {
      // The session died between creation and now; 'close' cleans up.
    }
    this.keepalive(session);
    this.resetBudget(session);
    if (this.draining) session.close();
  }

  private forget(session: ServerHttp2Session): void {
    if (!this.sessions.delete(session)) return;
    if (this.sessions.size === 0) for (const w of this.emptyWaiters.splice(0)) w();
  }

  /**
   * Rapid Reset (CVE-2023-44487): a token bucket of client stream resets per session. Every
   * stream the client resets before we finished it costs a handler start; past the budget the
   * session gets GOAWAY ENHANCE_YOUR_CALM and is destroyed, dropping the frames still queued.
   */
  private resetBudget(session: ServerHttp2Session): void {
    const { streamResetBurst: burst, streamResetRatePerSecond: rate } = this.options;
    let tokens = burst;
    let last = performance.now();
    session.on("stream", (stream) => {
      stream.once("aborted", () => {
        const now = performance.now();
        tokens = Math.min(burst, tokens + ((now - last) / 1000) * rate);
        last = now;
        tokens -= 1;
        if (tokens >= 0 || session.destroyed) return;
        this.options.onResetFlood?.(session.socket?.remoteAddress);
        try {
          session.goaway(constants.NGHTTP2_ENHANCE_YOUR_CALM);
        } catch {
          // already closing
        }
        session.destroy();
      });
    });
  }

  /**
   * GOAWAY to every session (no new streams; in-flight ones continue), wait until all have
   * closed or `graceMs` passed, then destroy sessions and sockets that remain.
   */
  async drain(graceMs: number): Promise<void> {
    this.draining = true;
    for (const s of this.sessions) s.close();
    if (this.sessions.size > 0 && graceMs > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.emptyWaiters.push(resolve)),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs))),
      ]);
      clearTimeout(timer);
    }
    for (const s of this.sessions) s.destroy();
    for (const socket of this.sockets) socket.destroy();
  }

  private keepalive(session: ServerHttp2Session): void {
    const { keepaliveIntervalMs, keepaliveTimeoutMs } = this.options;
    const onIdle = (): void => {
      if (session.closed || session.destroyed) return;
      const deadline = setTimeout(() => {
        if (session.destroyed) return;
        this.options.onKeepaliveTimeout?.(session.socket?.remoteAddress);
        session.destroy();
        // A session whose connection Node never reported closed may not emit 'close' after
        // destroy() either (its socket's close does not complete): it is gone all the same.
        this.forget(session);
      }, keepaliveTimeoutMs);
      deadline.unref();
      let sent = false;
      try {
        sent = session.ping((err) => {
          clearTimeout(deadline);
          if (err === null) arm();
        });
      } catch {
        // ping() throws once the session is closing; nothing to keep alive.
      }
      if (!sent) {
        clearTimeout(deadline);
        arm();
      }
    };
    // setTimeout on a session fires after that much inactivity and is refreshed by traffic.
    const arm = (): void => {
      if (!session.closed && !session.destroyed) session.setTimeout(keepaliveIntervalMs, onIdle);
    };
    arm();
  }
}
