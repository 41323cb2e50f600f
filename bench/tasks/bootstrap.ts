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
import { ArtifactService } from "../../src/gen/granary/artifact/v1/artifact_pb.js";
import { resolveNodeConfig } from "../../src/node/config.js";
import { GranaryNode, type NodeHooks } from "../../src/node/granary-node.js";
import { createLogger } from "../../src/telemetry/logger.js";
import { createGrpcJsPeerClient } from "../../src/transport/peer-client-grpcjs.js";
import { connectPublic } from "../../src/transport/public-client.js";
import { mbPerSecond, peakRssMib, perSecond, pool, putCas, waitForKeys } from "../lib/common.js";
import { body, mixedSizes, pooledDataset, type ArtifactSpec } from "../lib/data.js";
import { cpuSecondsOf, peakRssMibOf, startGranaryChild } from "../lib/proc.js";
import type { TaskContext } from "./task-context.js";

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
    "--listen", "127.0.0.1:0",
    "--peer-listen", "127.0.0.1:0",
    "--tls-ca", ca,
    "--tls-cert", source.cert,
    "--tls-key", source.key,
    "--node-id", source.name,
  ];
}

export async function fillSource(input: FillSourceInput, ctx: TaskContext): Promise<Record<string, number>> {
  const s = input.sizes;
  const sizes = "count" in s ? new Array<number>(s.count).fill(s.bytes) : mixedSizes(input.seed, input.label, s.totalBytes, s.minBytes, s.maxBytes);
  const ds = pooledDataset(input.seed, input.label, sizes);
  const node = await startGranaryChild(sourceArgs(input.dataDir, input.ca, input.source), join(ctx.logDir, `${input.source.name}.log`), ctx.signal);
  const conn = connectPublic({ server: `http://${node.publicAddress}` });
  try {
    const client = conn.client(ArtifactService);
    const t0 = performance.now();
    await pool(ds.artifacts.length, input.concurrency, async (i) => void (await putCas(client, ds.artifacts[i]!.digest, body(ds, i), ctx.signal)), ctx.signal);
    const ms = performance.now() - t0;
    const list: ArtifactSpec[] = ds.artifacts.map((a) => ({ digest: a.digest, size: a.size }));
    writeFileSync(input.datasetFile, JSON.stringify(list));
    return { artifacts: list.length, bytes: ds.totalBytes, fillSeconds: ms / 1000, fillMbPerSecond: mbPerSecond(ds.totalBytes, ms) };
  } finally {
    conn.close();
    await node.stop();
  }
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
    peerListen: "127.0.0.1:0",
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
      : {};
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
    const wait = waitForKeys(started.store, dataset.map((a) => a.digest), ctx.signal);
    const doneAt = await wait.done;
    const cpu = process.cpuUsage(cpu0);
    // Readiness may latch a little after the last artifact (the pass persists its cursor
    // first); wait for it, bounded, outside the measured window.
    if (Number.isNaN(readyAt)) {
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
    const srcCpu = cpuSecondsOf(source.pid) - src0;
    return {
      seconds: ms / 1000,
      mbPerSecond: mbPerSecond(totalBytes, ms),
      artifactsPerSecond: perSecond(dataset.length, ms),
      artifacts: dataset.length,
      bytes: totalBytes,
      readySeconds: (readyAt - t0) / 1000,
      receiverCpuSeconds: cpuSeconds,
      receiverCpuSecondsPerGb: cpuSeconds / (totalBytes / 1e9),
      receiverCpuUserSeconds: cpu.user / 1e6,
      receiverPeakRssMib: peakRssMib(),
      receiverRssBeforeMib: rss0,
      sourceCpuSeconds: srcCpu,
      sourceCpuSecondsPerGb: srcCpu / (totalBytes / 1e9),
      sourcePeakRssMib: peakRssMibOf(source.pid),
      passes: link?.stats.passes ?? NaN,
      failedBodies: link?.stats.failedCount ?? NaN,
      fetchedBytes: link?.stats.bytesFetched ?? NaN,
      peakStreams: link?.clientCounters().peakInFlight ?? NaN,
    };
  } finally {
    await node?.close();
    await source.stop();
    rmSync(input.receiverDir, { recursive: true, force: true });
  }
}
