/**
 * connect-node's Http2SessionManager with a raised CONNECTION receive window. connect-node
 * exposes the stream window (SETTINGS_INITIAL_WINDOW_SIZE via nodeOptions.settings) but not
 * the connection window, which stays at HTTP/2's 65,535 bytes and caps every stream of the
 * connection together at ~64 KiB per RTT (measured: 0.8 MB/s at 50 ms whatever the stream
 * window). This subclass calls setLocalWindowSize once on each new session, on its first
 * request (the manager opens sessions lazily, and request() is the hook it exposes).
 *
 * It also lifts Node's per-session memory credit (maxSessionMemory, 10 MB by default) unless the
 * caller sets one. Node counts every request-body byte queued for sending against it, and past
 * it the session refuses new streams and even the response HEADERS of its own open ones (it
 * resets them with ENHANCE_YOUR_CALM). An upload queues up to one ~1 MiB message per stream, so
 * 64 concurrent uploads on one connection passed the default: every call failed with
 * ENHANCE_YOUR_CALM and some waited forever for a response (chaos 12 at seed 4;
 * test/reliability/concurrent-uploads.test.ts). The bytes are already in our memory; the
 * credit only has to stay out of the way, as in grpc-js, which disables it on its clients.
 */
import type * as http2 from "node:http2";
import { Http2SessionManager, type Http2SessionOptions } from "@connectrpc/connect-node";

/** maxSessionMemory of client sessions, MB (Node's unit): far above what our own queues hold. */
export const CLIENT_SESSION_MEMORY_MB = 4096;

export class TunedSessionManager extends Http2SessionManager {
  private readonly tuned = new WeakSet<http2.ClientHttp2Session>();

  constructor(
    url: URL | string,
    private readonly connectionWindowBytes: number,
    pingOptions?: Http2SessionOptions,
    nodeOptions?: http2.ClientSessionOptions | http2.SecureClientSessionOptions,
  ) {
    super(url, pingOptions, { maxSessionMemory: CLIENT_SESSION_MEMORY_MB, ...nodeOptions });
  }

  override async request(
    method: string,
    path: string,
    headers: http2.OutgoingHttpHeaders,
    options: Omit<http2.ClientSessionRequestOptions, "signal">,
  ): Promise<http2.ClientHttp2Stream> {
    const stream = await super.request(method, path, headers, options);
    const session = stream.session as http2.ClientHttp2Session | undefined;
    if (session !== undefined && !this.tuned.has(session)) {
      this.tuned.add(session);
      try {
        session.setLocalWindowSize(this.connectionWindowBytes);
      } catch {
        // The session is already closing; the next one gets tuned.
      }
    }
    return stream;
  }
}
