/**
 * The store alone, in this process (openStore, no RPC, no HTTP/2): the same Put/Get work as
 * scenario A with the network taken out. Dividing A's figures by these splits the product's
 * cost into "store" and "everything above it" (connect-node, HTTP/2, the client).
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { openStore } from "../../src/store/store.js";
import { mbPerSecond, NAMESPACE, perSecond, pool } from "../lib/common.js";
import { body, mixedSizes, pooledDataset, type PooledDataset } from "../lib/data.js";
import { cpuSecondsSince } from "../lib/proc.js";
import type { TaskContext } from "./task-context.js";

export interface StoreDirectInput {
  readonly dir: string;
  readonly seed: number;
  readonly bulkBytes: number;
  readonly bulkMinBytes: number;
  readonly bulkMaxBytes: number;
  readonly bulkConcurrency: number;
  readonly smallCount: number;
  readonly smallBytes: number;
  readonly smallConcurrency: number;
  readonly smallPutMaxSeconds: number;
  readonly smallGetMaxSeconds: number;
}

const CHUNK = 1 << 20;

async function* chunks(b: Buffer): AsyncGenerator<Uint8Array> {
  for (let o = 0; o < b.length; o += CHUNK) yield b.subarray(o, o + CHUNK);
}

export async function storeDirect(input: StoreDirectInput, ctx: TaskContext): Promise<Record<string, number>> {
  const bulk = pooledDataset(input.seed, "a-bulk", mixedSizes(input.seed, "a-bulk", input.bulkBytes, input.bulkMinBytes, input.bulkMaxBytes));
  const small = pooledDataset(input.seed, "a-small", new Array<number>(input.smallCount).fill(input.smallBytes));
  const dataDir = join(input.dir, `store-direct-${process.pid}`);
  const store = await openStore({ dataDir, nodeId: "bench-store" });
  const out: Record<string, number> = {};
  const id = (ds: PooledDataset, i: number): { namespace: string; kind: "cas"; key: string } => ({ namespace: NAMESPACE, kind: "cas", key: ds.artifacts[i]!.digest });
  const phase = async (name: string, count: number, concurrency: number, fn: (i: number) => Promise<void>, bytes: (n: number) => number, maxSeconds = Infinity): Promise<number> => {
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const done = await pool(count, concurrency, fn, ctx.signal, t0 + maxSeconds * 1000);
    const ms = performance.now() - t0;
    out[`${name}Artifacts`] = done;
    out[`${name}Partial`] = done < count ? 1 : 0;
    out[`${name}MbPerSecond`] = mbPerSecond(bytes(done), ms);
    out[`${name}ArtifactsPerSecond`] = perSecond(done, ms);
    out[`${name}CpuMsPerArtifact`] = (cpuSecondsSince(cpu0) * 1000) / Math.max(1, done);
    out[`${name}CpuSecondsPerGb`] = cpuSecondsSince(cpu0) / Math.max(1e-9, bytes(done) / 1e9);
    ctx.log(`${name}: ${done} of ${count} in ${(ms / 1000).toFixed(2)} s`);
    return done;
  };
  const readAll = async (ds: PooledDataset, i: number): Promise<void> => {
    let n = 0;
    for await (const c of store.read(id(ds, i), { signal: ctx.signal }).chunks) n += c.length;
    if (n !== ds.artifacts[i]!.size) throw new Error(`store.read returned ${n} of ${ds.artifacts[i]!.size} bytes`);
  };
  try {
    const bulkBytes = (n: number): number => bulk.artifacts.slice(0, n).reduce((a, x) => a + x.size, 0);
    const smallBytes = (n: number): number => n * input.smallBytes;
    await phase(
      "putBulk",
      bulk.artifacts.length,
      input.bulkConcurrency,
      async (i) => void (await store.put({ namespace: NAMESPACE, kind: "cas", key: bulk.artifacts[i]!.digest, size: bulk.artifacts[i]!.size }, chunks(body(bulk, i)), ctx.signal)),
      bulkBytes,
    );
    await phase("getBulk", bulk.artifacts.length, input.bulkConcurrency, (i) => readAll(bulk, i), bulkBytes);
    const put = await phase(
      "putSmall",
      small.artifacts.length,
      input.smallConcurrency,
      async (i) => void (await store.put({ namespace: NAMESPACE, kind: "cas", key: small.artifacts[i]!.digest, size: input.smallBytes }, chunks(body(small, i)), ctx.signal)),
      smallBytes,
      input.smallPutMaxSeconds,
    );
    await phase("getSmall", put, input.smallConcurrency, (i) => readAll(small, i), smallBytes, input.smallGetMaxSeconds);
    return out;
  } finally {
    await store.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
