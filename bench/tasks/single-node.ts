/**
 * Scenario A (issue 2): one node as a child process (`granary serve`, h2c public listener,
 * no peers), driven by the product's public client over ONE HTTP/2 connection from this
 * process. Bulk: Put then Get of mixed 1–64 MiB artifacts; small: Put then Get of N x 4 KiB,
 * with many calls in flight. All data is generated (seeded) and hashed before the clock runs.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { ArtifactService } from "../../src/gen/granary/artifact/v1/artifact_pb.js";
import { connectPublic } from "../../src/transport/public-client.js";
import { getCas, mbPerSecond, perSecond, pool, putCas } from "../lib/common.js";
import { body, mixedSizes, pooledDataset } from "../lib/data.js";
import { cpuSecondsOf, cpuSecondsSince, peakRssMibOf, startGranaryChild } from "../lib/proc.js";
import type { TaskContext } from "./task-context.js";

export interface SingleNodeInput {
  readonly dir: string;
  readonly seed: number;
  readonly bulkBytes: number;
  readonly bulkMinBytes: number;
  readonly bulkMaxBytes: number;
  readonly bulkConcurrency: number;
  readonly smallCount: number;
  readonly smallBytes: number;
  readonly smallConcurrency: number;
}

export async function singleNode(input: SingleNodeInput, ctx: TaskContext): Promise<Record<string, number>> {
  const bulk = pooledDataset(input.seed, "a-bulk", mixedSizes(input.seed, "a-bulk", input.bulkBytes, input.bulkMinBytes, input.bulkMaxBytes));
  const small = pooledDataset(input.seed, "a-small", new Array<number>(input.smallCount).fill(input.smallBytes));
  const dataDir = join(input.dir, `a-node-${process.pid}`);
  const node = await startGranaryChild(
    ["--data-dir", dataDir, "--listen", "127.0.0.1:0", "--node-id", "bench-a"],
    join(ctx.logDir, `a-node-${process.pid}.log`),
    ctx.signal,
  );
  const conn = connectPublic({ server: `http://${node.publicAddress}` });
  const client = conn.client(ArtifactService);
  const out: Record<string, number> = {};
  try {
    // Warm the connection (and the node's first write) outside the clock.
    await putCas(client, undefined, Buffer.from("warm-up"), ctx.signal);

    const phase = async (name: string, count: number, concurrency: number, fn: (i: number) => Promise<void>, bytes: number): Promise<void> => {
      const cpu0 = process.cpuUsage();
      const srv0 = cpuSecondsOf(node.pid);
      const t0 = performance.now();
      await pool(count, concurrency, fn, ctx.signal);
      const ms = performance.now() - t0;
      out[`${name}Seconds`] = ms / 1000;
      out[`${name}MbPerSecond`] = mbPerSecond(bytes, ms);
      out[`${name}ArtifactsPerSecond`] = perSecond(count, ms);
      out[`${name}ServerCpuSeconds`] = cpuSecondsOf(node.pid) - srv0;
      out[`${name}ClientCpuSeconds`] = cpuSecondsSince(cpu0);
      ctx.log(`${name}: ${count} artifacts, ${bytes} bytes in ${(ms / 1000).toFixed(2)} s`);
    };

    await phase("putBulk", bulk.artifacts.length, input.bulkConcurrency, async (i) => void (await putCas(client, bulk.artifacts[i]!.digest, body(bulk, i), ctx.signal)), bulk.totalBytes);
    await phase("getBulk", bulk.artifacts.length, input.bulkConcurrency, (i) => getCas(client, bulk.artifacts[i]!.digest, bulk.artifacts[i]!.size, ctx.signal), bulk.totalBytes);
    await phase("putSmall", small.artifacts.length, input.smallConcurrency, async (i) => void (await putCas(client, small.artifacts[i]!.digest, body(small, i), ctx.signal)), small.totalBytes);
    await phase("getSmall", small.artifacts.length, input.smallConcurrency, (i) => getCas(client, small.artifacts[i]!.digest, small.artifacts[i]!.size, ctx.signal), small.totalBytes);

    out["bulkArtifacts"] = bulk.artifacts.length;
    out["bulkBytes"] = bulk.totalBytes;
    out["smallArtifacts"] = small.artifacts.length;
    out["serverPeakRssMib"] = peakRssMibOf(node.pid);
    return out;
  } finally {
    conn.close();
    await node.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
