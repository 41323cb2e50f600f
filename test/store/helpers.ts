/**
 * Test helpers for the store: temp data dirs, deterministic bodies, body collection.
 */
import { createCipheriv, createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openStore } from "../../src/store/store.js";
import type { Store, StoreEvent, StoreOptions } from "../../src/store/types.js";

export async function tempDir(prefix = "granary-store-"): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

export interface OpenedStore {
  readonly store: Store;
  readonly events: StoreEvent[];
}

/** Opens a store recording its events; nodeId defaults to "node-a" (null: pass none). */
export async function open(
  dataDir: string,
  options: Partial<Omit<StoreOptions, "nodeId">> & { nodeId?: string | null } = {},
): Promise<OpenedStore> {
  const events: StoreEvent[] = [];
  const { nodeId = "node-a", ...rest } = options;
  const store = await openStore({
    dataDir,
    ...rest,
    ...(nodeId === null ? {} : { nodeId }),
    onEvent: (e) => events.push(e),
  });
  return { store, events };
}

export function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Deterministic pseudo-random bytes: AES-CTR keystream seeded from `seed`. */
export function bytes(seed: string, length: number): Buffer {
  const key = createHash("sha256").update(seed).digest();
  const cipher = createCipheriv("aes-256-ctr", key, Buffer.alloc(16));
  return cipher.update(Buffer.alloc(length));
}

/** A deterministic body of `total` bytes yielded in `chunk`-byte pieces, never held whole. */
export async function* streamBody(seed: string, total: number, chunk: number): AsyncGenerator<Uint8Array> {
  const key = createHash("sha256").update(seed).digest();
  const cipher = createCipheriv("aes-256-ctr", key, Buffer.alloc(16));
  const zeros = Buffer.alloc(chunk);
  for (let done = 0; done < total; done += chunk) {
    const n = Math.min(chunk, total - done);
    yield cipher.update(n === chunk ? zeros : zeros.subarray(0, n));
  }
}

export async function* once(body: Uint8Array): AsyncGenerator<Uint8Array> {
  yield body;
}

export async function* pieces(body: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < body.length; i += size) yield body.subarray(i, i + size);
}

export async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of chunks) parts.push(c);
  return Buffer.concat(parts);
}

/** A body that must never be read (for alreadyPresent / skipped paths). */
export function untouchable(): AsyncIterable<Uint8Array> & { readonly touched: boolean } {
  let touched = false;
  return {
    get touched() {
      return touched;
    },
    [Symbol.asyncIterator]() {
      touched = true;
      throw new Error("body must not be read");
    },
  };
}
