/**
 * Shared definitions of the bare reference paths (no product code on them): node:http2
 * settings of the h2 ceiling, and the raw-Buffer gRPC method of the bare transport stream.
 */
import type * as http2 from "node:http2";

const MiB = 1 << 20;

/** Both ends of the h2 ceiling: 16 MiB stream window, 16 MiB frames, many streams. */
export const H2_BIG_SETTINGS: http2.Settings = { initialWindowSize: 16 * MiB, maxFrameSize: 16 * MiB - 1, maxConcurrentStreams: 1024 };
/** Connection receive window of the h2 ceiling (setLocalWindowSize on each session). */
export const H2_BIG_CONNECTION_WINDOW = 256 * MiB;

/** Server-streaming: the request lists body sizes (uint32 LE); the answer streams each body as <= 1 MiB messages. */
export const BARE_FETCH_PATH = "/granary.bench.Blob/Fetch";
export const BARE_MESSAGE_BYTES = MiB;

export function encodeSizes(sizes: readonly number[]): Buffer {
  const b = Buffer.allocUnsafe(sizes.length * 4);
  sizes.forEach((s, i) => b.writeUInt32LE(s, i * 4));
  return b;
}

export function decodeSizes(b: Buffer): number[] {
  const out: number[] = [];
  for (let o = 0; o + 4 <= b.length; o += 4) out.push(b.readUInt32LE(o));
  return out;
}

export const identity = (b: Buffer): Buffer => b;
