/**
 * Explicit HTTP/2 limits and timers for the two listeners. Node's defaults are not a policy
 * (2^32-1 concurrent streams, 64 KiB windows, a 120 s TLS handshake allowance), so every knob
 * below is set on purpose; the reason sits beside each field and in README.md.
 *
 * The bandwidth-delay product the peer plane is sized for: 1 Gbit/s x 100 ms RTT
 * = 12.5 MB (~11.9 MiB). HTTP/2 flow control is a receiver setting, so these windows govern
 * what a client may send TO this server (uploads: Put on the public listener, nothing large on
 * the peer listener today, where bodies flow server->client and the client's windows rule; see
 * peer-channel.ts / peer-transport.ts).
 */
import type { SecureServerOptions, ServerOptions } from "node:http2";
import { InvalidOptionError } from "./errors.js";

const KiB = 1024;
const MiB = 1024 * KiB;

export interface ServerLimits {
  /** SETTINGS_MAX_CONCURRENT_STREAMS: streams one connection may have open at once. */
  maxConcurrentStreams: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE in bytes (decoded); bounds HPACK bombs. */
  maxHeaderListSizeBytes: number;
  /** Header fields per request; gRPC metadata is small. */
  maxHeaderListPairs: number;
  /** Node's per-session nghttp2 memory cap, in MB (Node's unit). */
  maxSessionMemoryMb: number;
  /** SETTINGS_INITIAL_WINDOW_SIZE: per-stream receive window, bytes. */
  streamWindowBytes: number;
  /** Connection-level receive window, bytes (set with setLocalWindowSize on each session). */
  connectionWindowBytes: number;
  /** SETTINGS_MAX_FRAME_SIZE: largest frame we accept, bytes (16 KiB .. 16 MiB - 1). */
  maxFrameSizeBytes: number;
  /** Our own PINGs that may be unacknowledged at once. */
  maxOutstandingPings: number;
  /** Invalid frames tolerated per session before it is closed. */
  maxSessionInvalidFrames: number;
  /** Streams refused at creation tolerated per session before it is closed. */
  maxSessionRejectedStreams: number;
  /** A session with no frames for this long gets a PING. */
  keepaliveIntervalMs: number;
  /** A PING not acknowledged within this destroys the session (dead peer / half-open TCP). */
  keepaliveTimeoutMs: number;
  /** TLS handshake must complete within this (Node's default is 120 s: a slowloris gift). */
  tlsHandshakeTimeoutMs: number;
  /** A TLS connection that did not negotiate h2 is dropped after this. */
  unknownProtocolTimeoutMs: number;
  /**
   * Rapid Reset budget: streams the client may reset (RST_STREAM before the response ended) in
   * a burst, refilled at streamResetRatePerSecond; past it the session gets GOAWAY
   * ENHANCE_YOUR_CALM and is destroyed. nghttp2's own bucket (1000 / 33 per s, not settable on
   * Node 20) lets one connection start 1000 handlers first: measured ~0.9 s of event loop.
   */
  streamResetBurst: number;
  streamResetRatePerSecond: number;
}

/** Limits of the public (client-facing) listener. */
export const DEFAULT_PUBLIC_LIMITS: Readonly<ServerLimits> = Object.freeze({
  // Build clients fan out (Bazel: hundreds of concurrent Stat/Get); Go's default is 250.
  maxConcurrentStreams: 256,
  maxHeaderListSizeBytes: 16 * KiB,
  maxHeaderListPairs: 64,
  maxSessionMemoryMb: 64,
  // Uploads from CI runners across a WAN: 4 MiB/stream is ~40 MB/s at 100 ms; the connection
  // window caps what one anonymous client may have in flight toward us at 32 MiB.
  streamWindowBytes: 4 * MiB,
  connectionWindowBytes: 32 * MiB,
  // Bigger frames cut per-frame CPU for 1 MiB chunks; 256 KiB keeps head-of-line blocking
  // between a client's own streams short on slow links.
  maxFrameSizeBytes: 256 * KiB,
  maxOutstandingPings: 2,
  maxSessionInvalidFrames: 32,
  maxSessionRejectedStreams: 64,
  keepaliveIntervalMs: 30_000,
  keepaliveTimeoutMs: 20_000,
  tlsHandshakeTimeoutMs: 10_000,
  unknownProtocolTimeoutMs: 5_000,
  streamResetBurst: 100,
  streamResetRatePerSecond: 33,
});

/** Limits of the mTLS peer listener. */
export const DEFAULT_PEER_LIMITS: Readonly<ServerLimits> = Object.freeze({
  // 16 bootstrap body streams + Follow + ListManifests + headroom; peers are few and known,
  // and 64 is what Cloudflare fell back to under Rapid Reset.
  maxConcurrentStreams: 64,
  maxHeaderListSizeBytes: 16 * KiB,
  maxHeaderListPairs: 64,
  maxSessionMemoryMb: 64,
  // 1 Gbit/s x 100 ms = 12.5 MB: a 16 MiB stream window lets one stream fill the pipe, a
  // 32 MiB connection window (~2.7 BDP) lets several share it without stalling on updates.
  streamWindowBytes: 16 * MiB,
  connectionWindowBytes: 32 * MiB,
  // Peers move 1 MiB body chunks: one frame per chunk (measured: 184 -> 496 MB/s for 1 MiB
  // messages when the receiver allowed 1 MiB frames).
  maxFrameSizeBytes: 1 * MiB,
  maxOutstandingPings: 2,
  maxSessionInvalidFrames: 32,
  maxSessionRejectedStreams: 64,
  // 10 s, not 30 s: Node does not always close a session whose TCP connection went away while
  // its streams waited for flow control (docs/RELIABILITY.md §5); until the keepalive finds it,
  // its handlers hold open body readers.
  keepaliveIntervalMs: 10_000,
  keepaliveTimeoutMs: 20_000,
  tlsHandshakeTimeoutMs: 10_000,
  unknownProtocolTimeoutMs: 5_000,
  streamResetBurst: 100,
  streamResetRatePerSecond: 33,
});

type Range = readonly [min: number, max: number];
const RANGES: Record<keyof ServerLimits, Range> = {
  maxConcurrentStreams: [1, 10_000],
  maxHeaderListSizeBytes: [1 * KiB, 1 * MiB],
  maxHeaderListPairs: [8, 1024],
  maxSessionMemoryMb: [1, 4096],
  streamWindowBytes: [65_535, 2 ** 31 - 1],
  connectionWindowBytes: [65_535, 2 ** 31 - 1],
  maxFrameSizeBytes: [16_384, 2 ** 24 - 1],
  maxOutstandingPings: [1, 1000],
  maxSessionInvalidFrames: [0, 100_000],
  maxSessionRejectedStreams: [0, 100_000],
  keepaliveIntervalMs: [10, 24 * 3600_000],
  keepaliveTimeoutMs: [10, 3600_000],
  tlsHandshakeTimeoutMs: [100, 600_000],
  unknownProtocolTimeoutMs: [100, 600_000],
  streamResetBurst: [1, 100_000],
  streamResetRatePerSecond: [1, 100_000],
};

/** Merges overrides into defaults and validates every field, naming the bad one. */
export function resolveServerLimits(defaults: Readonly<ServerLimits>, overrides: Partial<ServerLimits> = {}): ServerLimits {
  const out: ServerLimits = { ...defaults };
  for (const [k, v] of Object.entries(overrides) as [keyof ServerLimits, number | undefined][]) {
    if (!(k in RANGES)) throw new InvalidOptionError(`limits.${k}`, "unknown limit");
    if (v !== undefined) out[k] = v;
  }
  for (const k of Object.keys(RANGES) as (keyof ServerLimits)[]) {
    const [min, max] = RANGES[k];
    const v = out[k];
    if (!Number.isInteger(v) || v < min || v > max) {
      throw new InvalidOptionError(`limits.${k}`, `want an integer in [${min}, ${max}], got ${String(v)}`);
    }
  }
  if (out.connectionWindowBytes < out.streamWindowBytes) {
    throw new InvalidOptionError("limits.connectionWindowBytes", `must be >= streamWindowBytes (${out.streamWindowBytes}), got ${out.connectionWindowBytes}`);
  }
  return out;
}

/** The node:http2 server options that carry the limits (the connection window is set per session). */
export function http2ServerOptions(l: ServerLimits): ServerOptions & Pick<SecureServerOptions, "handshakeTimeout"> {
  return {
    maxSessionMemory: l.maxSessionMemoryMb,
    maxHeaderListPairs: l.maxHeaderListPairs,
    maxOutstandingPings: l.maxOutstandingPings,
    maxSessionInvalidFrames: l.maxSessionInvalidFrames,
    maxSessionRejectedStreams: l.maxSessionRejectedStreams,
    unknownProtocolTimeout: l.unknownProtocolTimeoutMs,
    handshakeTimeout: l.tlsHandshakeTimeoutMs,
    settings: {
      maxConcurrentStreams: l.maxConcurrentStreams,
      maxHeaderListSize: l.maxHeaderListSizeBytes,
      initialWindowSize: l.streamWindowBytes,
      maxFrameSize: l.maxFrameSizeBytes,
      enablePush: false,
    },
  };
}
