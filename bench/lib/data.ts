/**
 * Deterministic benchmark data: sizes from a seeded PRNG, bytes from an AES-128-CTR keystream
 * keyed by (seed, label). The keystream is incompressible, costs ~0.25 ms/MB to make (AES-NI),
 * and is identical for the same seed on every machine, so two runs move the same artifacts.
 */
import { createCipheriv, createHash } from "node:crypto";

const MiB = 1 << 20;

/** mulberry32: a small seeded PRNG for sizes and orderings (not for bytes). */
export function prng(seed: number, label: string): () => number {
  let a = (seed ^ createHash("sha256").update(label).digest().readUInt32LE(0)) >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Sizes drawn uniformly in [minBytes, maxBytes] until they add up to totalBytes; the last one
 * is clipped to what is left (never below minBytes), so the total is >= totalBytes.
 */
export function mixedSizes(seed: number, label: string, totalBytes: number, minBytes: number, maxBytes: number): number[] {
  if (minBytes <= 0 || maxBytes < minBytes) throw new Error(`bad size range [${minBytes}, ${maxBytes}]`);
  const rnd = prng(seed, label);
  const sizes: number[] = [];
  let sum = 0;
  while (sum < totalBytes) {
    let s = minBytes + Math.floor(rnd() * (maxBytes - minBytes + 1));
    if (sum + s > totalBytes) s = Math.max(minBytes, totalBytes - sum);
    sizes.push(s);
    sum += s;
  }
  return sizes;
}

/** `bytes` of keystream for (seed, label), starting at keystream offset 0. */
export function keystream(seed: number, label: string, bytes: number): Buffer {
  const key = createHash("sha256").update(`granary-bench:${seed}:${label}`).digest().subarray(0, 16);
  const cipher = createCipheriv("aes-128-ctr", key, Buffer.alloc(16));
  const out = Buffer.allocUnsafe(bytes);
  const zeros = Buffer.alloc(Math.min(bytes, 64 * MiB));
  for (let off = 0; off < bytes; ) {
    const n = Math.min(zeros.length, bytes - off);
    const enc = cipher.update(zeros.subarray(0, n));
    enc.copy(out, off);
    off += enc.length;
  }
  return out;
}

/** Streams the keystream of (seed, label) in chunks, without holding it whole. */
export function* keystreamChunks(seed: number, label: string, bytes: number, chunkBytes = MiB): Generator<Buffer> {
  const key = createHash("sha256").update(`granary-bench:${seed}:${label}`).digest().subarray(0, 16);
  const cipher = createCipheriv("aes-128-ctr", key, Buffer.alloc(16));
  const zeros = Buffer.alloc(chunkBytes);
  for (let off = 0; off < bytes; ) {
    const n = Math.min(chunkBytes, bytes - off);
    yield cipher.update(zeros.subarray(0, n));
    off += n;
  }
}

export function sha256Hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** One artifact of a dataset: its digest (the CAS key) and size. */
export interface ArtifactSpec {
  readonly digest: string;
  readonly size: number;
}

/**
 * A dataset held in memory: one keystream pool, artifact i is the slice
 * [offsets[i], offsets[i] + sizes[i]). Slices never overlap, so every digest is distinct.
 */
export interface PooledDataset {
  readonly pool: Buffer;
  readonly artifacts: ReadonlyArray<ArtifactSpec & { readonly offset: number }>;
  readonly totalBytes: number;
}

export function pooledDataset(seed: number, label: string, sizes: readonly number[]): PooledDataset {
  const totalBytes = sizes.reduce((n, s) => n + s, 0);
  const pool = keystream(seed, label, totalBytes);
  let offset = 0;
  const artifacts = sizes.map((size) => {
    const a = { offset, size, digest: sha256Hex(pool.subarray(offset, offset + size)) };
    offset += size;
    return a;
  });
  return { pool, artifacts, totalBytes };
}

export function body(ds: PooledDataset, i: number): Buffer {
  const a = ds.artifacts[i]!;
  return ds.pool.subarray(a.offset, a.offset + a.size);
}
