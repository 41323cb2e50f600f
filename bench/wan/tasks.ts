/**
 * Measurement tasks of the WAN lab. Each runs in a fresh process INSIDE the receiving host's
 * namespace (bench/wan/task.ts, started by bench/wan/main.ts with `ip netns exec`), and starts
 * its sender in the source host's namespace, so every byte crosses the router: delay line,
 * tbf bottleneck, optional loss.
 *
 * - wan-bootstrap: a fresh node (in this process, so its CPU and peak RSS are this process's)
 *   bootstraps from a source node (child, source namespace) holding a dataset filled by
 *   bench/tasks/bootstrap.ts fillSource. Bytes received are sampled every sampleMs from the
 *   link's counter (the figure /status.json shows as the peer's bytes fetched) for the chart.
 * - wan-walk: the product's peer client walks ListManifests of a source node (no bodies).
 * - wan-bare: the bare grpc-js transport (no store, raw Buffers) with the product's channel
 *   options, over the same path.
 */
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import * as grpc from "@grpc/grpc-js";
import { resolveNodeConfig } from "../../src/node/config.js";
import { GranaryNode, type NodeHooks } from "../../src/node/granary-node.js";
import { DEFAULT_PEER_LINK_OPTIONS } from "../../src/replication/peer-link.js";
import { createLogger } from "../../src/telemetry/logger.js";
import { peerChannelCredentials, peerChannelOptions, resolvePeerChannelOptions } from "../../src/transport/peer-channel.js";
import { createGrpcJsPeerClient } from "../../src/transport/peer-client-grpcjs.js";
import { capSignal } from "../lib/cap-signal.js";
import { mbPerSecond, peakRssMib, perSecond, pool, waitForKeys } from "../lib/common.js";
import type { ArtifactSpec } from "../lib/data.js";
import { cpuSecondsOf, cpuSecondsSince } from "../lib/proc.js";
import { BARE_FETCH_PATH, encodeSizes, identity } from "../lib/refs.js";
import type { NodeCert } from "../tasks/bootstrap.js";
import type { TaskContext } from "../tasks/task-context.js";
import { startGranaryInNs, startServerInNs } from "./ns-proc.js";

const PEER_PORT = 7443;

/** Bytes received on this namespace's link (the task runs inside the receiving host's namespace). */
function rxBytes(): number {
  try {
    return Number(readFileSync("/sys/class/net/eth0/statistics/rx_bytes", "utf8").trim());
  } catch {
    return NaN;
  }
}
const SHUTDOWN_GRACE_MS = 2000;

export interface WanSource {
  /** Namespace and address of the source host. */
  readonly ns: string;
  readonly address: string;
  readonly dataDir: string;
  readonly cert: NodeCert;
}

export interface WanBootstrapInput {
  readonly source: WanSource;
  /** This (receiving) host's address. */
  readonly address: string;
  readonly receiverDir: string;
  readonly ca: string;
  readonly receiver: NodeCert;
  readonly datasetFile: string;
  /** fast: the node's defaults; serial: 1 stream and 65,535-byte HTTP/2 windows. */
  readonly mode: "fast" | "serial";
  readonly maxSeconds: number;
  readonly sampleMs: number;
  /** Experiments: override link streams / the peer channel window of "fast". */
  readonly streams?: number;
  readonly windowBytes?: number;
  /** TCP connections per peer (the peer client's `connections`; default 1). */
  readonly connections?: number;
}

function sourceArgs(s: WanSource, ca: string): string[] {
  return [
    "--data-dir", s.dataDir,
    "--listen", "127.0.0.1:0",
    "--ops-listen", "off",
    "--peer-listen", `${s.address}:${PEER_PORT}`,
    "--advertise-address", `https://${s.address}:${PEER_PORT}`,
    "--tls-ca", ca,
    "--tls-cert", s.cert.cert,
    "--tls-key", s.cert.key,
    "--node-id", s.cert.name,
    "--shutdown-grace-ms", String(SHUTDOWN_GRACE_MS),
  ];
}

export async function wanBootstrap(input: WanBootstrapInput, ctx: TaskContext): Promise<Record<string, unknown>> {
  const dataset = JSON.parse(readFileSync(input.datasetFile, "utf8")) as ArtifactSpec[];
  const totalBytes = dataset.reduce((n, a) => n + a.size, 0);
  const source = await startGranaryInNs(input.source.ns, sourceArgs(input.source, input.ca), join(ctx.logDir, `${input.source.cert.name}-${input.mode}-${process.pid}.log`), ctx.signal);
  const peerAddress = `https://${input.source.address}:${PEER_PORT}`;
  const log = createLogger({ level: "warn", destination: 2, base: { node: input.receiver.name } });
  const tls = { ca: readFileSync(input.ca), cert: readFileSync(input.receiver.cert), key: readFileSync(input.receiver.key) };
  const config = resolveNodeConfig({
    dataDir: input.receiverDir,
    listen: "127.0.0.1:0",
    opsListen: "off",
    peerListen: `${input.address}:${PEER_PORT}`,
    advertiseAddress: `https://${input.address}:${PEER_PORT}`,
    shutdownGraceMs: SHUTDOWN_GRACE_MS,
    tlsCa: input.ca,
    tlsCert: input.receiver.cert,
    tlsKey: input.receiver.key,
    nodeId: input.receiver.name,
    peers: [peerAddress],
  });
  const window = input.mode === "serial" ? 65_535 : input.windowBytes;
  const streams = input.mode === "serial" ? 1 : input.streams;
  const connections = input.connections;
  const hooks: NodeHooks = {
    ...(streams !== undefined ? { replication: { streams } } : {}),
    ...(window !== undefined || connections !== undefined
      ? {
          peerClientFactory: (address: string, serverName?: string) =>
            createGrpcJsPeerClient(address, { tls, idleTimeoutMs: config.idleTimeoutMs, channel: { flowControlWindowBytes: window ?? config.peerWindowBytes }, ...(connections !== undefined ? { connections } : {}) }, serverName),
        }
      : {}),
  };
  let node: GranaryNode | undefined;
  try {
    const src0 = cpuSecondsOf(source.pid);
    const rx0 = rxBytes();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    node = await GranaryNode.start(config, log, hooks);
    const started = node;
    const cap = new AbortController();
    const capTimer = setTimeout(() => cap.abort(new Error(`time cap of ${input.maxSeconds} s`)), input.maxSeconds * 1000);
    const wait = waitForKeys(started.store, dataset.map((a) => a.digest), AbortSignal.any([ctx.signal, cap.signal]));
    const fetched = (): number => started.replication?.allLinks().find((l) => l.address === peerAddress)?.stats.bytesFetched ?? 0;
    const samples: Array<[number, number]> = [[0, 0]];
    const wireSamples: Array<[number, number]> = [[0, 0]];
    const sample = (): void => {
      const at = Math.round(performance.now() - t0);
      samples.push([at, fetched()]);
      wireSamples.push([at, rxBytes() - rx0]);
    };
    const sampler = setInterval(sample, input.sampleMs);
    let doneAt: number;
    try {
      doneAt = await wait.done;
    } catch (e) {
      if (!cap.signal.aborted || ctx.signal.aborted) throw e;
      doneAt = performance.now();
    } finally {
      clearInterval(sampler);
      clearTimeout(capTimer);
    }
    sample();
    const wireBytes = rxBytes() - rx0;
    const cpu = process.cpuUsage(cpu0);
    const sizeOf = new Map(dataset.map((a) => [a.digest, a.size]));
    const missing = wait.missing();
    const gotArtifacts = dataset.length - missing.size;
    const gotBytes = totalBytes - [...missing].reduce((n, d) => n + (sizeOf.get(d) ?? 0), 0);
    const ms = doneAt - t0;
    const cpuSeconds = (cpu.user + cpu.system) / 1e6;
    const link = started.replication?.allLinks().find((l) => l.address === peerAddress);
    const srcCpu = cpuSecondsOf(source.pid) - src0;
    return {
      seconds: ms / 1000,
      partial: missing.size > 0 ? 1 : 0,
      mbPerSecond: mbPerSecond(gotBytes, ms),
      mbitPerSecond: mbPerSecond(gotBytes, ms) * 8,
      // Bytes received by the link (bodies whole or not): the rate of a capped run, where
      // 16 streams sharing a slow link may not have finished any body yet.
      receivedMbPerSecond: mbPerSecond(fetched(), ms),
      // What crossed the link into this namespace (eth0 rx_bytes, IP headers included): the
      // link's view, whatever the node did with it yet (bodies wait in grpc-js buffers for a
      // store write lane, so the store's count lags the wire).
      wireMbPerSecond: mbPerSecond(wireBytes, ms),
      wireBytes,
      artifactsPerSecond: perSecond(gotArtifacts, ms),
      artifacts: gotArtifacts,
      datasetArtifacts: dataset.length,
      bytes: gotBytes,
      receiverCpuSeconds: cpuSeconds,
      receiverCpuSecondsPerGb: cpuSeconds / (gotBytes / 1e9),
      receiverCpuMsPerArtifact: (cpuSeconds * 1000) / Math.max(1, gotArtifacts),
      sourceCpuMsPerArtifact: (srcCpu * 1000) / Math.max(1, gotArtifacts),
      receiverPeakRssMib: peakRssMib(),
      sourceCpuSecondsPerGb: srcCpu / (gotBytes / 1e9),
      passes: link?.stats.passes ?? NaN,
      failedBodies: link?.stats.failedCount ?? NaN,
      fetchedBytes: link?.stats.bytesFetched ?? NaN,
      peakStreams: link?.clientCounters().peakInFlight ?? NaN,
      samples,
      wireSamples,
    };
  } finally {
    await node?.close();
    await source.stop();
    rmSync(input.receiverDir, { recursive: true, force: true });
  }
}

export interface WanWalkInput {
  readonly source: WanSource;
  readonly ca: string;
  readonly receiver: NodeCert;
  /** Manifests the source holds (the walk must see them all). */
  readonly expect: number;
  readonly maxSeconds: number;
  readonly pageItems?: number;
}

/** The bootstrap's manifest walk alone: ListManifests pages, streamed, counted, not applied. */
export async function wanWalk(input: WanWalkInput, ctx: TaskContext): Promise<Record<string, unknown>> {
  const source = await startGranaryInNs(input.source.ns, sourceArgs(input.source, input.ca), join(ctx.logDir, `${input.source.cert.name}-walk-${process.pid}.log`), ctx.signal);
  const tls = { ca: readFileSync(input.ca), cert: readFileSync(input.receiver.cert), key: readFileSync(input.receiver.key) };
  const client = createGrpcJsPeerClient(`https://${input.source.address}:${PEER_PORT}`, { tls, idleTimeoutMs: 30_000 });
  const cap = capSignal(ctx.signal, input.maxSeconds * 1000);
  const signal = cap.signal;
  try {
    const h0 = performance.now();
    await client.hello({ nodeId: input.receiver.name, incarnation: "wan-walk", advertiseAddress: "" }, signal);
    const helloMs = performance.now() - h0;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let manifests = 0;
    let pages = 0;
    let firstPageMs = NaN;
    let partial = 0;
    try {
      for await (const page of client.listManifests({ cursor: new Uint8Array(), pageItems: input.pageItems ?? DEFAULT_PEER_LINK_OPTIONS.listPageItems, pageBytes: 4n << 20n }, signal)) {
        if (pages === 0) firstPageMs = performance.now() - t0;
        pages++;
        manifests += page.manifests.length;
      }
    } catch (e) {
      if (!signal.aborted || ctx.signal.aborted) throw e;
      partial = 1;
    }
    const ms = performance.now() - t0;
    if (partial === 0 && manifests !== input.expect) throw new Error(`walk saw ${manifests} manifests, the source holds ${input.expect}`);
    return {
      seconds: ms / 1000,
      partial,
      manifests,
      pages,
      manifestsPerSecond: perSecond(manifests, ms),
      msPerPage: ms / Math.max(1, pages),
      firstPageMs,
      helloMs,
      receiverCpuSeconds: cpuSecondsSince(cpu0),
      sourceCpuSeconds: cpuSecondsOf(source.pid),
    };
  } finally {
    cap.clear();
    client.close();
    await source.stop();
  }
}

export interface WanBareInput {
  readonly sourceNs: string;
  readonly sourceAddress: string;
  readonly ca: string;
  readonly serverCert: NodeCert;
  readonly clientCert: NodeCert;
  readonly groups: ReadonlyArray<readonly number[]>;
  readonly streams: number;
  readonly maxSeconds: number;
}

/** bench/tasks/references.ts bareGrpc, with the server in the source namespace. */
export async function wanBare(input: WanBareInput, ctx: TaskContext): Promise<Record<string, unknown>> {
  const server = await startServerInNs(input.sourceNs, "bare-server", { ca: input.ca, cert: input.serverCert.cert, key: input.serverCert.key, host: input.sourceAddress }, ctx.signal);
  const tls = { ca: readFileSync(input.ca), cert: readFileSync(input.clientCert.cert), key: readFileSync(input.clientCert.key) };
  // The product's channel settings, except the keepalive timeout: under 1 % loss this reference
  // server's PING ACKs queue behind seconds of DATA, and the 20 s timeout dropped the connection
  // in 3 of 3 rounds (~50 s in) while the product's own connection held for 150 s on the same
  // path (PERFORMANCE.md §8.3). A ceiling of bytes moved does not need liveness checks.
  const options = resolvePeerChannelOptions({ keepaliveTimeoutMs: 3_600_000 });
  const client = new grpc.Client(`${input.sourceAddress}:${server.port}`, peerChannelCredentials(tls), peerChannelOptions(options));
  const cap = capSignal(ctx.signal, input.maxSeconds * 1000);
  const signal = cap.signal;
  // Whatever a call is doing when the cap comes, the measurement ends there (client.close()
  // then cancels what is left).
  const capped = new Promise<never>((_, reject) => signal.addEventListener("abort", () => reject(signal.reason instanceof Error ? signal.reason : new Error("cap")), { once: true }));
  capped.catch(() => {});
  let got = 0;
  const fetch = (sizes: readonly number[]): Promise<void> =>
    new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(signal.reason instanceof Error ? signal.reason : new Error("cap"));
        return;
      }
      const call = client.makeServerStreamRequest<Buffer, Buffer>(BARE_FETCH_PATH, identity, identity, encodeSizes(sizes));
      call.on("data", (b: Buffer) => {
        got += b.length;
      });
      const onAbort = (): void => call.cancel();
      signal.addEventListener("abort", onAbort, { once: true });
      call.on("end", () => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      });
      call.on("error", (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      });
    });
  try {
    await new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + 10_000, (e) => (e ? reject(e) : resolve())));
    await Promise.race([fetch([1]), capped]);
    got = 0;
    const want = input.groups.reduce((n, g) => n + g.reduce((m, s) => m + s, 0), 0);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let partial = 0;
    try {
      await Promise.race([pool(input.groups.length, input.streams, (i) => fetch(input.groups[i]!), signal), capped]);
    } catch (e) {
      if (!signal.aborted || ctx.signal.aborted) throw e;
      partial = 1;
    }
    const ms = performance.now() - t0;
    if (partial === 0 && got !== want) throw new Error(`bare transport moved ${got} of ${want} bytes`);
    return {
      mbPerSecond: mbPerSecond(got, ms),
      mbitPerSecond: mbPerSecond(got, ms) * 8,
      seconds: ms / 1000,
      bytes: got,
      partial,
      receiverCpuSecondsPerGb: cpuSecondsSince(cpu0) / (got / 1e9),
    };
  } finally {
    cap.clear();
    client.close();
    await server.stop();
  }
}
