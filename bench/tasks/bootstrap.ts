/**
 * Scenario B (issue 3): fresh-node bootstrap over real mTLS on loopback.
 *
 * fill-source: a source node (child process) gets the dataset through its public Put; the
 * list of (digest, size) is written for the later tasks; the source is stopped cleanly.
 * bootstrap: the source is started again on its filled data dir (a child process, so this
 * process holds only the receiver), and a FRESH node (peers = [source]) is started in this
 * process. The clock runs from GranaryNode.start() until the receiver's change feed has shown
 * every digest (store.waitForFeed, no polling). Receiver CPU = process.cpuUsage() over that
 * window; source CPU from /proc; peak RSS = this process's maxRSS.
 */
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { resolveNodeConfig } from "../../src/node/config.js";
import { GranaryNode, type NodeHooks } from "../../src/node/granary-node.js";
import { createLogger } from "../../src/telemetry/logger.js";
import { createGrpcJsPeerClient } from "../../src/transport/peer-client-grpcjs.js";
import { openStore } from "../../src/store/store.js";
import { mbPerSecond, NAMESPACE, peakRssMib, perSecond, pool, waitForKeys } from "../lib/common.js";
import { body, mixedSizes, pooledDataset, type ArtifactSpec } from "../lib/data.js";
import { cpuSecondsOf, peakRssMibOf, startGranaryChild } from "../lib/proc.js";
import type { TaskContext } from "./task-context.js";

/** Teardown grace of every node here (the default 10 s would only make runs longer). */
export const SHUTDOWN_GRACE_MS = 2000;

export interface NodeCert {
  readonly name: string;
  readonly cert: string;
  readonly key: string;
}

export interface FillSourceInput {
  readonly dataDir: string;
  readonly ca: string;
  readonly source: NodeCert;
  readonly seed: number;
  readonly label: string;
  readonly sizes: { readonly totalBytes: number; readonly minBytes: number; readonly maxBytes: number } | { readonly count: number; readonly bytes: number };
  readonly concurrency: number;
  /** Where to write the dataset's [{digest, size}]. */
  readonly datasetFile: string;
}

function sourceArgs(dataDir: string, ca: string, source: NodeCert): string[] {
  return [
    "--data-dir", dataDir,
    "--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0",
    "--peer-listen", "127.0.0.1:0",
    "--tls-ca", ca,
    "--tls-cert", source.cert,
    "--tls-key", source.key,
    "--node-id", source.name,
    "--shutdown-grace-ms", String(SHUTDOWN_GRACE_MS),
  ];
}

/**
 * Fills the source's data dir through the store itself (openStore in this process), which is
 * several times faster than Puts over RPC and yields the same on-disk layout: how the source
 * got its data is not what scenario B measures.
 */
export async function fillSource(input: FillSourceInput, ctx: TaskContext): Promise<Record<string, number>> {
  const s = input.sizes;
  const sizes = "count" in s ? new Array<number>(s.count).fill(s.bytes) : mixedSizes(input.seed, input.label, s.totalBytes, s.minBytes, s.maxBytes);
  const ds = pooledDataset(input.seed, input.label, sizes);
  const store = await openStore({ dataDir: input.dataDir, nodeId: input.source.name });
  try {
    const t0 = performance.now();
    await pool(
      ds.artifacts.length,
      input.concurrency,
      async (i) => {
        const b = body(ds, i);
        await store.put({ namespace: NAMESPACE, kind: "cas", key: ds.artifacts[i]!.digest, size: b.length }, chunks(b), ctx.signal);
      },
      ctx.signal,
    );
    const ms = performance.now() - t0;
    const list: ArtifactSpec[] = ds.artifacts.map((a) => ({ digest: a.digest, size: a.size }));
    writeFileSync(input.datasetFile, JSON.stringify(list));
    return { artifacts: list.length, bytes: ds.totalBytes, fillSeconds: ms / 1000, fillMbPerSecond: mbPerSecond(ds.totalBytes, ms) };
  } finally {
    await store.close();
  }
}

async function* chunks(b: Buffer): AsyncGenerator<Uint8Array> {
  for (let o = 0; o < b.length; o += 1 << 20) yield b.subarray(o, o + (1 << 20));
}

export interface BootstrapInput {
  readonly sourceDataDir: string;
  readonly receiverDir: string;
  readonly ca: string;
  readonly source: NodeCert;
  readonly receiver: NodeCert;
  readonly datasetFile: string;
  /** fast: the node's defaults; serial: replication.streams = 1 and 65,535-byte HTTP/2 windows. */
  readonly mode: "fast" | "serial";
  /** Fixed peer port of the receiver, so the source's learned-peer list holds one live address, not one dead one per run. */
  readonly receiverPeerPort: number;
  /** Stop waiting after this long; the rates are then over what arrived (marked partial). */
  readonly maxSeconds: number;
  /** Experiments only: override replication.streams / the peer channel window of "fast". */
  readonly streams?: number;
  readonly windowBytes?: number;
  /** Log receive progress every this many ms (0 = off); outside the measurement. */
  readonly progressEveryMs?: number;
}

export async function bootstrap(input: BootstrapInput, ctx: TaskContext): Promise<Record<string, number>> {
  const dataset = JSON.parse(readFileSync(input.datasetFile, "utf8")) as ArtifactSpec[];
  const totalBytes = dataset.reduce((n, a) => n + a.size, 0);
  const source = await startGranaryChild(sourceArgs(input.sourceDataDir, input.ca, input.source), join(ctx.logDir, `${input.source.name}-${input.mode}-${process.pid}.log`), ctx.signal);
  const log = createLogger({ level: "warn", destination: 2, base: { node: input.receiver.name } });
  const tls = { ca: readFileSync(input.ca), cert: readFileSync(input.receiver.cert), key: readFileSync(input.receiver.key) };
  const config = resolveNodeConfig({
    dataDir: input.receiverDir,
    listen: "127.0.0.1:0",
    opsListen: "127.0.0.1:0",
    peerListen: `127.0.0.1:${input.receiverPeerPort}`,
    shutdownGraceMs: SHUTDOWN_GRACE_MS,
    tlsCa: input.ca,
    tlsCert: input.receiver.cert,
    tlsKey: input.receiver.key,
    nodeId: input.receiver.name,
    peers: [source.peerAddress!],
  });
  const hooks: NodeHooks =
    input.mode === "serial"
      ? {
          replication: { streams: 1 },
          peerClientFactory: (address, serverName) =>
            createGrpcJsPeerClient(address, { tls, idleTimeoutMs: config.idleTimeoutMs, channel: { flowControlWindowBytes: 65_535 } }, serverName),
        }
      : {
          ...(input.streams !== undefined ? { replication: { streams: input.streams } } : {}),
          ...(input.windowBytes !== undefined
            ? {
                peerClientFactory: (address: string, serverName?: string) =>
                  createGrpcJsPeerClient(address, { tls, idleTimeoutMs: config.idleTimeoutMs, channel: { flowControlWindowBytes: input.windowBytes! } }, serverName),
              }
            : {}),
        };
  let node: GranaryNode | undefined;
  try {
    const rss0 = peakRssMib();
    const src0 = cpuSecondsOf(source.pid);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    node = await GranaryNode.start(config, log, hooks);
    const started = node;
    let readyAt = NaN;
    if (started.readiness.isReady()) readyAt = performance.now();
    const off = started.readiness.onChange(() => {
      if (started.readiness.isReady() && Number.isNaN(readyAt)) readyAt = performance.now();
    });
    const cap = new AbortController();
    const capTimer = setTimeout(() => cap.abort(new Error(`time cap of ${input.maxSeconds} s`)), input.maxSeconds * 1000);
    const wait = waitForKeys(started.store, dataset.map((a) => a.digest), AbortSignal.any([ctx.signal, cap.signal]));
    const every = input.progressEveryMs ?? 0;
    const progress =
      every > 0
        ? setInterval(() => {
            const l = started.replication?.allLinks().find((x) => x.address === source.peerAddress);
            ctx.log(`t=${((performance.now() - t0) / 1000).toFixed(2)} s fetched=${l?.stats.bytesFetched ?? 0} applied=${l?.stats.artifactsFetched ?? 0} remaining=${wait.remaining()} streams=${JSON.stringify(l?.streamCounts())} staging=${started.replication?.staging ? JSON.stringify(started.replication.staging) : ""}`);
          }, every)
        : undefined;
    progress?.unref();
    let doneAt: number;
    try {
      doneAt = await wait.done;
    } catch (e) {
      if (!cap.signal.aborted || ctx.signal.aborted) throw e;
      doneAt = performance.now();
    } finally {
      clearInterval(progress);
      clearTimeout(capTimer);
    }
    const cpu = process.cpuUsage(cpu0);
    const sizeOf = new Map(dataset.map((a) => [a.digest, a.size]));
    const missing = wait.missing();
    const gotArtifacts = dataset.length - missing.size;
    const gotBytes = totalBytes - [...missing].reduce((n, d) => n + (sizeOf.get(d) ?? 0), 0);
    // Readiness may latch a little after the last artifact (the pass persists its cursor
    // first); wait for it, bounded, outside the measured window.
    if (Number.isNaN(readyAt) && missing.size === 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 60_000);
        const off2 = started.readiness.onChange(() => {
          if (started.readiness.isReady()) {
            clearTimeout(t);
            off2();
            resolve();
          }
        });
      });
    }
    off();
    const ms = doneAt - t0;
    const cpuSeconds = (cpu.user + cpu.system) / 1e6;
    const link = started.replication?.allLinks().find((l) => l.address === source.peerAddress);
    // Read before close(): stopping a link mid-pass counts every queued body as failed.
    const linkStats = {
      passes: link?.stats.passes ?? NaN,
      failedBodies: link?.stats.failedCount ?? NaN,
      fetchedBytes: link?.stats.bytesFetched ?? NaN,
      peakStreams: link?.clientCounters().peakInFlight ?? NaN,
    };
    const srcCpu = cpuSecondsOf(source.pid) - src0;
    const closeStarted = performance.now();
    await started.close();
    const closeSeconds = (performance.now() - closeStarted) / 1000;
    return {
      seconds: ms / 1000,
      partial: missing.size > 0 ? 1 : 0,
      mbPerSecond: mbPerSecond(gotBytes, ms),
      artifactsPerSecond: perSecond(gotArtifacts, ms),
      artifacts: gotArtifacts,
      datasetArtifacts: dataset.length,
      bytes: gotBytes,
      readySeconds: (readyAt - t0) / 1000,
      receiverCpuSeconds: cpuSeconds,
      receiverCpuSecondsPerGb: cpuSeconds / (gotBytes / 1e9),
      receiverCpuMsPerArtifact: (cpuSeconds * 1000) / Math.max(1, gotArtifacts),
      receiverCpuUserSeconds: cpu.user / 1e6,
      receiverPeakRssMib: peakRssMib(),
      receiverRssBeforeMib: rss0,
      sourceCpuSeconds: srcCpu,
      sourceCpuSecondsPerGb: srcCpu / (gotBytes / 1e9),
      receiverCloseSeconds: closeSeconds,
      sourcePeakRssMib: peakRssMibOf(source.pid),
      ...linkStats,
    };
  } finally {
    await node?.close();
    await source.stop();
    rmSync(input.receiverDir, { recursive: true, force: true });
  }
}
