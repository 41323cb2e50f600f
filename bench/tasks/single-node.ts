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
  /** Time caps of the small Put and Get phases, s: the rate is taken over what finished (marked partial). */
  readonly smallPutMaxSeconds: number;
  readonly smallGetMaxSeconds: number;
}

export async function singleNode(input: SingleNodeInput, ctx: TaskContext): Promise<Record<string, number>> {
  const bulk = pooledDataset(input.seed, "a-bulk", mixedSizes(input.seed, "a-bulk", input.bulkBytes, input.bulkMinBytes, input.bulkMaxBytes));
  const small = pooledDataset(input.seed, "a-small", new Array<number>(input.smallCount).fill(input.smallBytes));
  const dataDir = join(input.dir, `a-node-${process.pid}`);
  const node = await startGranaryChild(
    ["--data-dir", dataDir, "--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0", "--node-id", "bench-a", "--shutdown-grace-ms", "2000"],
    join(ctx.logDir, `a-node-${process.pid}.log`),
    ctx.signal,
  );
  const conn = connectPublic({ server: `http://${node.publicAddress}` });
  const client = conn.client(ArtifactService);
  const out: Record<string, number> = {};
  try {
    // Warm the connection (and the node's first write) outside the clock.
    await putCas(client, undefined, Buffer.from("warm-up"), ctx.signal);

    const phase = async (name: string, count: number, concurrency: number, fn: (i: number) => Promise<void>, bytesOf: (n: number) => number, maxSeconds = Infinity): Promise<number> => {
      const cpu0 = process.cpuUsage();
      const srv0 = cpuSecondsOf(node.pid);
      const t0 = performance.now();
      const done = await pool(count, concurrency, fn, ctx.signal, t0 + maxSeconds * 1000);
      const ms = performance.now() - t0;
      out[`${name}Seconds`] = ms / 1000;
      out[`${name}Artifacts`] = done;
      out[`${name}Partial`] = done < count ? 1 : 0;
      out[`${name}MbPerSecond`] = mbPerSecond(bytesOf(done), ms);
      out[`${name}ArtifactsPerSecond`] = perSecond(done, ms);
      const serverCpu = cpuSecondsOf(node.pid) - srv0;
      const clientCpu = cpuSecondsSince(cpu0);
      out[`${name}ServerCpuSeconds`] = serverCpu;
      out[`${name}ClientCpuSeconds`] = clientCpu;
      out[`${name}ServerCpuMsPerArtifact`] = (serverCpu * 1000) / Math.max(1, done);
      out[`${name}ClientCpuMsPerArtifact`] = (clientCpu * 1000) / Math.max(1, done);
      out[`${name}ServerCpuSecondsPerGb`] = serverCpu / Math.max(1e-9, bytesOf(done) / 1e9);
      ctx.log(`${name}: ${done} of ${count} artifacts, ${bytesOf(done)} bytes in ${(ms / 1000).toFixed(2)} s`);
      return done;
    };
    const bulkBytes = (n: number): number => bulk.artifacts.slice(0, n).reduce((a, x) => a + x.size, 0);
    const smallBytes = (n: number): number => n * input.smallBytes;

    await phase("putBulk", bulk.artifacts.length, input.bulkConcurrency, async (i) => void (await putCas(client, bulk.artifacts[i]!.digest, body(bulk, i), ctx.signal)), bulkBytes);
    await phase("getBulk", bulk.artifacts.length, input.bulkConcurrency, (i) => getCas(client, bulk.artifacts[i]!.digest, bulk.artifacts[i]!.size, ctx.signal), bulkBytes);
    const put = await phase(
      "putSmall",
      small.artifacts.length,
      input.smallConcurrency,
      async (i) => void (await putCas(client, small.artifacts[i]!.digest, body(small, i), ctx.signal)),
      smallBytes,
      input.smallPutMaxSeconds,
    );
    // Only what was put can be read back: the first `put` artifacts (the pool goes in order).
    await phase("getSmall", put, input.smallConcurrency, (i) => getCas(client, small.artifacts[i]!.digest, small.artifacts[i]!.size, ctx.signal), smallBytes, input.smallGetMaxSeconds);

    out["bulkArtifacts"] = bulk.artifacts.length;
    out["bulkBytes"] = bulk.totalBytes;
    out["smallArtifacts"] = small.artifacts.length;
    out["smallPutMaxSeconds"] = input.smallPutMaxSeconds;
    out["serverPeakRssMib"] = peakRssMibOf(node.pid);
    return out;
  } finally {
    conn.close();
    await node.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
