import { createHash } from "node:crypto";

/**
 * Deterministic pseudo-random bytes (xorshift32), generated chunk by chunk so a test can
 * stream 100 MiB+ without holding it.
 */
export function* deterministicChunks(seed: number, totalBytes: number, chunkBytes = 1 << 20): Generator<Uint8Array> {
  let x = seed >>> 0 || 0x9e3779b9;
  for (let done = 0; done < totalBytes; ) {
    const n = Math.min(chunkBytes, totalBytes - done);
    const buf = new Uint8Array(n);
    const words = new Uint32Array(buf.buffer, 0, n >>> 2);
    for (let i = 0; i < words.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      words[i] = x >>> 0;
    }
    for (let i = words.length * 4; i < n; i++) buf[i] = i & 0xff;
    done += n;
    yield buf;
  }
}

export function sha256Hex(chunks: Iterable<Uint8Array>): string {
  const h = createHash("sha256");
  for (const c of chunks) h.update(c);
  return h.digest("hex");
}

export function bytes(seed: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  let off = 0;
  for (const c of deterministicChunks(seed, n)) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}
