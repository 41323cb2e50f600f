/**
 * Releases a server stream whose response is complete but whose request was not read to its end.
 *
 * A handler may answer before it has read the whole request: a length prefix above the message
 * limit, a unary call carrying a second message, an upload refused on its header. The rest of
 * the request then sits in the stream's receive buffer, and Node destroys an Http2Stream only
 * once that buffer has been read, so the stream keeps its slot in the session's stream table for
 * as long as the connection lives. After `maxConcurrentStreams` such calls, every new stream on
 * that connection is refused with ENHANCE_YOUR_CALM (found by chaos scenario 10 at full size:
 * a peer connection stopped answering after ~230 hostile calls).
 *
 * RFC 9113 §8.1 lets a server that has sent a complete response reset the stream with NO_ERROR
 * so the client stops sending. We do that once our END_STREAM has actually left (nghttp2 marks
 * the stream half-closed local): resetting earlier would drop the response still queued in
 * nghttp2. Frames the client still has in flight for the stream are then ignored by nghttp2.
 */
import type { ServerHttp2Stream } from "node:http2";

/** setImmediate turns to wait for our END_STREAM to be written before falling back to a timer. */
const FAST_TURNS = 8;
/** Poll period once the response is waiting on flow control (a slow reader); stops at close. */
const SLOW_POLL_MS = 50;

export function releaseUnreadRequest(stream: ServerHttp2Stream): void {
  stream.once("finish", () => {
    let turns = 0;
    const check = (): void => {
      if (stream.destroyed || stream.readableEnded) return;
      if (stream.closed || stream.state.localClose === 1) {
        stream.destroy();
        return;
      }
      turns++;
      if (turns <= FAST_TURNS) setImmediate(check);
      else setTimeout(check, SLOW_POLL_MS).unref();
    };
    check();
  });
}
