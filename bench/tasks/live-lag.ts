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
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { ArtifactService } from "../../src/gen/granary/artifact/v1/artifact_pb.js";
import { NodeService, PeerPhase } from "../../src/gen/granary/node/v1/node_pb.js";
import { DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_PEER_WINDOW_BYTES, resolveNodeConfig } from "../../src/node/config.js";
import { GranaryNode } from "../../src/node/granary-node.js";
import { createLogger } from "../../src/telemetry/logger.js";
import { createGrpcJsPeerClient } from "../../src/transport/peer-client-grpcjs.js";
import type { PeerClientFactory } from "../../src/transport/peer-client.js";
import { connectPublic } from "../../src/transport/public-client.js";
import { capSignal } from "../lib/cap-signal.js";
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
  /** Puts before the measurement, paced at <= 50/s (JIT, connections). */
  readonly warmupPuts: number;
  /** After the last Put, wait at most this long for the replicas; what is missing then counts as arriving at the cap (lag = lower bound, run marked partial). */
  readonly drainMaxSeconds: number;
  /** In-process replicas observed (2 = the 3-node mesh of the scenario; 1 = a 2-node mesh, for comparison). */
  readonly replicas?: 1 | 2;
  /** Write [sent, ack, seen on each replica] per Put (ms, relative to the first Put) here. */
  readonly traceFile?: string;
  /** Wrap the replicas' peer clients to count Follow pages and ReadBodies calls (explanations only). */
  readonly instrument?: boolean;
}

interface PeerCallStats {
  followPages: number;
  followEntries: number;
  heartbeats: number;
  readBodiesCalls: number;
  readBodiesBodies: number;
  readBodiesMs: number[];
}

/** A peer client factory that counts what the replication engine asks of each peer. */
function instrumentedFactory(tls: { ca: Buffer; cert: Buffer; key: Buffer }, stats: PeerCallStats): PeerClientFactory {
  return (address, serverName) => {
    const inner = createGrpcJsPeerClient(address, { tls, idleTimeoutMs: DEFAULT_IDLE_TIMEOUT_MS, channel: { flowControlWindowBytes: DEFAULT_PEER_WINDOW_BYTES } }, serverName);
    return {
      ...inner,
      address: inner.address,
      hello: (req, signal) => inner.hello(req, signal),
      listManifests: (req, signal) => inner.listManifests(req, signal),
      counters: () => inner.counters(),
      close: () => inner.close(),
      follow: (req, signal) => ({
        async *[Symbol.asyncIterator]() {
          for await (const f of inner.follow(req, signal)) {
            if (f.frame.case === "page") {
              stats.followPages++;
              stats.followEntries += f.frame.value.entries.length;
            } else if (f.frame.case === "heartbeat") stats.heartbeats++;
            yield f;
          }
        },
      }),
      readBodies: (req, signal) => ({
        async *[Symbol.asyncIterator]() {
          const t0 = performance.now();
          stats.readBodiesCalls++;
          stats.readBodiesBodies += req.bodies?.length ?? 0;
          try {
            yield* inner.readBodies(req, signal);
          } finally {
            stats.readBodiesMs.push(performance.now() - t0);
          }
        },
      }),
    };
  };
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
  const stats: PeerCallStats = { followPages: 0, followEntries: 0, heartbeats: 0, readBodiesCalls: 0, readBodiesBodies: 0, readBodiesMs: [] };
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
      input.instrument === true ? { peerClientFactory: instrumentedFactory({ ca: readFileSync(input.ca), cert: readFileSync(c.cert), key: readFileSync(c.key) }, stats) } : {},
    );
  const replicas: GranaryNode[] = [await start(c2, [])];
  if ((input.replicas ?? 2) === 2) replicas.push(await start(c3, [replicas[0]!.peerAddress]));
  const want = replicas.length;
  const n1 = await startGranaryChild(
    ["--data-dir", join(input.dir, c1.name), "--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0", "--tls-ca", input.ca, "--tls-cert", c1.cert, "--tls-key", c1.key, "--node-id", c1.name, "--shutdown-grace-ms", String(SHUTDOWN_GRACE_MS), "--peers", replicas.map((n) => n.peerAddress).join(",")],
    join(ctx.logDir, `${c1.name}-${process.pid}.log`),
    ctx.signal,
  );
  const conn = connectPublic({ server: `http://${n1.publicAddress}` });
  const watchers = new AbortController();
  try {
    const following = (n: GranaryNode): boolean => (n.replication?.allLinks() ?? []).filter((l) => l.stats.phase === "following").length >= want;
    const status = conn.client(NodeService);
    await until(
      "full mesh (every node following both others)",
      async () => replicas.every(following) && (await status.getStatus({})).status!.peers.filter((p) => p.phase === PeerPhase.FOLLOWING).length >= want,
      ctx.signal,
    );
    const client = conn.client(ArtifactService);
    const seen = replicas.map(() => new Map<string, number>());
    const watching = replicas.map((n, k) =>
      watchFeed(
        n.store,
        (key, at) => {
          if (!seen[k]!.has(key)) seen[k]!.set(key, at);
        },
        watchers.signal,
      ),
    );

    // Warm-up outside the measurement (connections, JIT, first writes and fetches): `warmupPuts`
    // paced at <= 50/s, a rate the mesh keeps up with, then wait until every replica has them.
    const warm = pooledDataset(input.seed, "c-warm", new Array<number>(input.warmupPuts).fill(input.bytes));
    const warmGapMs = 1000 / Math.min(50, input.rate);
    for (let i = 0; i < warm.artifacts.length; i++) {
      await sleep(warmGapMs, undefined, { signal: ctx.signal });
      await putCas(client, warm.artifacts[i]!.digest, body(warm, i), ctx.signal);
    }
    const warmKeys = warm.artifacts.map((a) => a.digest);
    const warmCap = capSignal(ctx.signal, 30_000);
    await Promise.all(replicas.map((n) => waitForKeys(n.store, warmKeys, warmCap.signal).done)).finally(warmCap.clear);

    const count = Math.max(1, Math.round(input.rate * input.seconds));
    const ds = pooledDataset(input.seed, "c-live", new Array<number>(count).fill(input.bytes));
    const sentAt = new Float64Array(count);
    const ackAt = new Float64Array(count);
    const inFlight = new Set<Promise<void>>();
    let late = 0;
    let failure: unknown;
    const stats0 = { ...stats, readBodiesMs: [] as number[] };
    stats.readBodiesMs = [];
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
    // Bounded: a mesh that cannot keep up drains its backlog after the Puts stop. What is still
    // missing at the cap gets the cap's instant as its arrival: its lag is then a lower bound,
    // and the run is marked partial.
    const drainCap = AbortSignal.timeout(input.drainMaxSeconds * 1000);
    let unreplicated = 0;
    await Promise.all(
      replicas.map(async (n) => {
        const w = waitForKeys(n.store, keys, AbortSignal.any([ctx.signal, drainCap]));
        try {
          await w.done;
        } catch (e) {
          if (ctx.signal.aborted || !drainCap.aborted) throw e;
          unreplicated += w.remaining();
        }
      }),
    );
    const drainEnd = performance.now();
    const cpu = process.cpuUsage(cpu0);
    const n1Cpu = cpuSecondsOf(n1.pid) - n1Cpu0;

    let early = 0;
    const lagOn = (k: number): number[] =>
      keys.map((key, i) => {
        const d = (seen[k]!.get(key) ?? drainEnd) - ackAt[i]!;
        if (d < 0) early++;
        return Math.max(0, d);
      });
    const lags = replicas.map((_, k) => lagOn(k));
    const both = keys.map((_, i) => Math.max(...lags.map((l) => l[i]!)));
    if (input.traceFile !== undefined) {
      writeFileSync(input.traceFile, JSON.stringify(keys.map((key, i) => [sentAt[i]! - t0, ackAt[i]! - t0, ...seen.map((m) => m.get(key)! - t0)])));
    }
    const putMs = Array.from(ackAt, (a, i) => a - sentAt[i]!);
    watchers.abort();
    await Promise.all(watching);
    return {
      partial: unreplicated > 0 ? 1 : 0,
      unreplicatedAtDrainCap: unreplicated,
      lagP50Ms: percentile(both, 50),
      lagP99Ms: percentile(both, 99),
      lagMaxMs: both.reduce((a, b) => Math.max(a, b), 0),
      node2LagP99Ms: percentile(lags[0]!, 99),
      node3LagP99Ms: lags[1] ? percentile(lags[1], 99) : NaN,
      putP50Ms: percentile(putMs, 50),
      putP99Ms: percentile(putMs, 99),
      puts: count,
      achievedPutsPerSecond: count / (putSpanMs / 1000),
      latePuts: late,
      samplesBeforeAck: early,
      node1CpuSeconds: n1Cpu,
      nodes23AndClientCpuSeconds: (cpu.user + cpu.system) / 1e6,
      ...(input.instrument === true
        ? {
            followPages: stats.followPages - stats0.followPages,
            followEntriesPerPage: (stats.followEntries - stats0.followEntries) / Math.max(1, stats.followPages - stats0.followPages),
            readBodiesCalls: stats.readBodiesCalls - stats0.readBodiesCalls,
            readBodiesBodiesPerCall: (stats.readBodiesBodies - stats0.readBodiesBodies) / Math.max(1, stats.readBodiesCalls - stats0.readBodiesCalls),
            readBodiesP50Ms: percentile(stats.readBodiesMs, 50),
            readBodiesP99Ms: percentile(stats.readBodiesMs, 99),
          }
        : {}),
    };
  } finally {
    watchers.abort();
    conn.close();
    await n1.stop();
    await Promise.all(replicas.map((n) => n.close()));
    for (const c of input.nodes) rmSync(join(input.dir, c.name), { recursive: true, force: true });
  }
}
