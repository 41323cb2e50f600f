/**
 * Scenario C: live replication lag on a 3-node full mesh over mTLS on loopback.
 *
 * Node 1 is a child process (`granary serve`) taking paced Puts from this process through its
 * public h2c listener; nodes 2 and 3 run IN this process, so the instant an artifact becomes
 * present on them is observed exactly from their change feeds (store.waitForFeed, no polling),
 * on the same clock as the Put acknowledgement. Lag = first feed appearance on node N minus
 * the Put ack on the client; "both" = the later of nodes 2 and 3.
 * Puts are open-loop at a fixed rate (schedule t0 + i/rate); a Put that would exceed the
 * in-flight cap waits and is counted late.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { ArtifactService } from "../../src/gen/granary/artifact/v1/artifact_pb.js";
import { NodeService, PeerPhase } from "../../src/gen/granary/node/v1/node_pb.js";
import { resolveNodeConfig } from "../../src/node/config.js";
import { GranaryNode } from "../../src/node/granary-node.js";
import { createLogger } from "../../src/telemetry/logger.js";
import { connectPublic } from "../../src/transport/public-client.js";
import { putCas, waitForKeys, watchFeed } from "../lib/common.js";
import { body, pooledDataset } from "../lib/data.js";
import { cpuSecondsOf, startGranaryChild } from "../lib/proc.js";
import { percentile } from "../lib/stats.js";
import { SHUTDOWN_GRACE_MS, type NodeCert } from "./bootstrap.js";
import type { TaskContext } from "./task-context.js";

export interface LiveLagInput {
  readonly dir: string;
  readonly ca: string;
  readonly nodes: readonly [NodeCert, NodeCert, NodeCert];
  readonly seed: number;
  readonly rate: number;
  readonly seconds: number;
  readonly bytes: number;
  readonly maxInFlight: number;
}

/** Setup only (not a measurement): waits, re-checking every 100 ms, until `check` holds. */
async function until(what: string, check: () => Promise<boolean> | boolean, signal: AbortSignal, maxMs = 60_000): Promise<void> {
  const end = Date.now() + maxMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`setup: ${what} did not happen within ${maxMs} ms`);
    await sleep(100, undefined, { signal });
  }
}

export async function liveLag(input: LiveLagInput, ctx: TaskContext): Promise<Record<string, number>> {
  const [c1, c2, c3] = input.nodes;
  const start = (c: NodeCert, peers: string[]): Promise<GranaryNode> =>
    GranaryNode.start(
      resolveNodeConfig({
        dataDir: join(input.dir, c.name),
        listen: "127.0.0.1:0",
        opsListen: "127.0.0.1:0",
        shutdownGraceMs: SHUTDOWN_GRACE_MS,
        peerListen: "127.0.0.1:0",
        tlsCa: input.ca,
        tlsCert: c.cert,
        tlsKey: c.key,
        nodeId: c.name,
        peers,
      }),
      createLogger({ level: "warn", destination: 2, base: { node: c.name } }),
    );
  const n2 = await start(c2, []);
  const n3 = await start(c3, [n2.peerAddress]);
  const n1 = await startGranaryChild(
    ["--data-dir", join(input.dir, c1.name), "--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0", "--tls-ca", input.ca, "--tls-cert", c1.cert, "--tls-key", c1.key, "--node-id", c1.name, "--shutdown-grace-ms", String(SHUTDOWN_GRACE_MS), "--peers", `${n2.peerAddress},${n3.peerAddress}`],
    join(ctx.logDir, `${c1.name}-${process.pid}.log`),
    ctx.signal,
  );
  const conn = connectPublic({ server: `http://${n1.publicAddress}` });
  const watchers = new AbortController();
  try {
    const following = (n: GranaryNode): boolean => (n.replication?.allLinks() ?? []).filter((l) => l.stats.phase === "following").length >= 2;
    const status = conn.client(NodeService);
    await until(
      "full mesh (every node following both others)",
      async () => following(n2) && following(n3) && (await status.getStatus({})).status!.peers.filter((p) => p.phase === PeerPhase.FOLLOWING).length >= 2,
      ctx.signal,
    );
    const client = conn.client(ArtifactService);
    const seen = [new Map<string, number>(), new Map<string, number>()] as const;
    const watching = [n2, n3].map((n, k) =>
      watchFeed(
        n.store,
        (key, at) => {
          if (!seen[k]!.has(key)) seen[k]!.set(key, at);
        },
        watchers.signal,
      ),
    );

    // Warm-up outside the measurement: connections, first writes, first fetches.
    const warm = pooledDataset(input.seed, "c-warm", new Array<number>(10).fill(input.bytes));
    for (let i = 0; i < warm.artifacts.length; i++) await putCas(client, warm.artifacts[i]!.digest, body(warm, i), ctx.signal);
    const warmKeys = warm.artifacts.map((a) => a.digest);
    await Promise.all([n2, n3].map((n) => waitForKeys(n.store, warmKeys, AbortSignal.any([ctx.signal, AbortSignal.timeout(30_000)])).done));

    const count = Math.max(1, Math.round(input.rate * input.seconds));
    const ds = pooledDataset(input.seed, "c-live", new Array<number>(count).fill(input.bytes));
    const sentAt = new Float64Array(count);
    const ackAt = new Float64Array(count);
    const inFlight = new Set<Promise<void>>();
    let late = 0;
    let failure: unknown;
    const n1Cpu0 = cpuSecondsOf(n1.pid);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < count && failure === undefined; i++) {
      ctx.signal.throwIfAborted();
      const due = t0 + (i * 1000) / input.rate;
      const wait = due - performance.now();
      if (wait > 1) await sleep(wait);
      if (inFlight.size >= input.maxInFlight) {
        late++;
        await Promise.race(inFlight);
      }
      sentAt[i] = performance.now();
      const p: Promise<void> = putCas(client, ds.artifacts[i]!.digest, body(ds, i), ctx.signal).then(
        () => {
          ackAt[i] = performance.now();
          inFlight.delete(p);
        },
        (e: unknown) => {
          failure ??= e;
          inFlight.delete(p);
        },
      );
      inFlight.add(p);
    }
    await Promise.all(inFlight);
    if (failure !== undefined) throw failure;
    const putSpanMs = performance.now() - t0;
    const keys = ds.artifacts.map((a) => a.digest);
    await Promise.all([n2, n3].map((n) => waitForKeys(n.store, keys, AbortSignal.any([ctx.signal, AbortSignal.timeout(60_000)])).done));
    const cpu = process.cpuUsage(cpu0);
    const n1Cpu = cpuSecondsOf(n1.pid) - n1Cpu0;

    let early = 0;
    const lagOn = (k: 0 | 1): number[] =>
      keys.map((key, i) => {
        const d = seen[k].get(key)! - ackAt[i]!;
        if (d < 0) early++;
        return Math.max(0, d);
      });
    const l2 = lagOn(0);
    const l3 = lagOn(1);
    const both = l2.map((v, i) => Math.max(v, l3[i]!));
    const putMs = Array.from(ackAt, (a, i) => a - sentAt[i]!);
    watchers.abort();
    await Promise.all(watching);
    return {
      lagP50Ms: percentile(both, 50),
      lagP99Ms: percentile(both, 99),
      lagMaxMs: Math.max(...both),
      node2LagP99Ms: percentile(l2, 99),
      node3LagP99Ms: percentile(l3, 99),
      putP50Ms: percentile(putMs, 50),
      putP99Ms: percentile(putMs, 99),
      puts: count,
      achievedPutsPerSecond: count / (putSpanMs / 1000),
      latePuts: late,
      samplesBeforeAck: early,
      node1CpuSeconds: n1Cpu,
      nodes23AndClientCpuSeconds: (cpu.user + cpu.system) / 1e6,
    };
  } finally {
    watchers.abort();
    conn.close();
    await n1.stop();
    await Promise.all([n2.close(), n3.close()]);
    for (const c of input.nodes) rmSync(join(input.dir, c.name), { recursive: true, force: true });
  }
}
