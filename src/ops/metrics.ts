/**
 * The node's Prometheus metrics (prom-client, one registry per node so several nodes can live
 * in one process). Almost everything is read from existing state at scrape time — node
 * status, peer link stats, the staging budget, the bandwidth limiter, store usage — rather
 * than counted a second time on hot paths; only RPC latency is observed as calls end.
 *
 * Names are constants in telemetry/names.ts; docs/OPERATIONS.md documents each.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { PeerPhase, type NodeStatus } from "../gen/granary/node/v1/node_pb.js";
import type { Replicator } from "../replication/replicator.js";
import { METRIC, REPLICATION_OUTCOMES } from "../telemetry/names.js";
import { grpcCodeName, type CallObserver } from "../telemetry/rpc-observe.js";

/** What the metrics read at scrape time. */
export interface MetricsSource {
  status(): NodeStatus;
  /** The replication engine (undefined when the peer plane is off). */
  readonly replication: Replicator | undefined;
}

export interface NodeMetricsOptions {
  /** Also export process_* and nodejs_* metrics (CPU, memory, event loop lag, GC). Default true. */
  readonly processMetrics?: boolean;
  /** Bucket upper bounds of the RPC latency histogram, seconds. Default DEFAULT_RPC_BUCKETS_SECONDS. */
  readonly rpcBucketsSeconds?: readonly number[];
}

/** From 1 ms (a Stat) to 10 min (a large Get or a bootstrap's body stream). */
export const DEFAULT_RPC_BUCKETS_SECONDS: readonly number[] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 600];

/** Phase label values, in the order of the proto enum. */
export const PHASE_LABELS: Readonly<Record<number, string>> = {
  [PeerPhase.UNSPECIFIED]: "stopped",
  [PeerPhase.CONNECTING]: "connecting",
  [PeerPhase.BOOTSTRAPPING]: "bootstrapping",
  [PeerPhase.FOLLOWING]: "following",
  [PeerPhase.BACKOFF]: "backoff",
  [PeerPhase.UNREACHABLE]: "unreachable",
};

export interface NodeMetrics {
  readonly registry: Registry;
  /** Observer for the RPC latency histogram, per listener ("public", "peer"). */
  rpcObserver(listener: string): CallObserver;
  /** Prometheus text exposition of every metric, read now. */
  render(): Promise<string>;
  readonly contentType: string;
}

type Labels = Record<string, string>;

export function createNodeMetrics(source: MetricsSource, options: NodeMetricsOptions = {}): NodeMetrics {
  const registry = new Registry();
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry });
  const reg = { registers: [registry] };
  const peer = ["peer", "peer_node_id"] as const;
  const gauge = (name: string, help: string, labelNames: readonly string[] = []): Gauge => new Gauge({ name, help, labelNames, ...reg });
  const counter = (name: string, help: string, labelNames: readonly string[] = []): Counter => new Counter({ name, help, labelNames, ...reg });

  const info = gauge(METRIC.info, "Always 1; labels carry the node's identity and version.", ["node_id", "incarnation", "version"]);
  const ready = gauge(METRIC.ready, "1 when the node reports SERVING on grpc.health.v1, else 0.");
  const phase = gauge(METRIC.peerPhase, "1 for the phase each peer link is in now, 0 for the others.", [...peer, "phase"]);
  const lastContact = gauge(METRIC.peerLastContact, "Unix time of the last message from the peer (0 = never).", peer);
  const lagChanges = gauge(METRIC.lagChanges, "Changes of the peer's feed not yet applied here (peer head - cursor).", peer);
  const lagSeconds = gauge(METRIC.lagSeconds, "How long this node has been behind the peer's feed (0 when caught up).", peer);
  const cursor = gauge(METRIC.cursorSeq, "Last change of the peer's feed applied here.", peer);
  const head = gauge(METRIC.peerHeadSeq, "Newest change the peer has announced.", peer);
  const received = counter(METRIC.receivedBytes, "Body bytes received from the peer (including bodies that later failed).", peer);
  const artifacts = counter(METRIC.artifacts, "Artifacts the peer offered, by outcome: applied, skipped (already here), missing (gone on the peer), failed.", [...peer, "outcome"]);
  const bytes = counter(METRIC.bytes, "Bytes of the artifacts the peer offered, by outcome (manifest sizes).", [...peer, "outcome"]);
  const failures = counter(METRIC.failures, "Failed bodies plus unusable manifests from the peer.", peer);
  const resumedBodies = counter(METRIC.resumedBodies, "Large bodies whose stream was cut after byte 0 and resumed at their offset on a new stream.", peer);
  const resumedBytes = counter(METRIC.resumedBytes, "Bytes of resumed bodies that did not have to be fetched again (the offsets resumed from).", peer);
  const rate = gauge(METRIC.rate, "Receive rate from the peer over the last few seconds.", peer);
  const passes = counter(METRIC.bootstrapPasses, "Bootstrap passes started against the peer.", peer);
  const bootTotalBytes = gauge(METRIC.bootstrapTotalBytes, "Bytes the peer held when the current bootstrap pass started (0 when not bootstrapping).", peer);
  const bootDoneBytes = gauge(METRIC.bootstrapDoneBytes, "Bytes received in the current bootstrap pass.", peer);
  const bootTotalArtifacts = gauge(METRIC.bootstrapTotalArtifacts, "Artifacts the peer held when the current bootstrap pass started.", peer);
  const bootDoneArtifacts = gauge(METRIC.bootstrapDoneArtifacts, "Artifacts handled (applied, skipped or missing) in the current pass.", peer);
  const bootEta = gauge(METRIC.bootstrapEta, "Estimated seconds to the end of the current bootstrap pass (0 = unknown).", peer);
  const inFlight = gauge(METRIC.streamsInFlight, "Body streams running on the peer's connection now.", peer);
  const pending = gauge(METRIC.streamsPending, "Body streams queued for the peer's connection (limit: 16 at once).", peer);
  const opened = counter(METRIC.streamsOpened, "Streams opened on the peer's connection (all RPCs).", peer);
  const stagingBudget = gauge(METRIC.stagingBudget, "Configured staging budget (bytes of bodies in flight).");
  const stagingReserved = gauge(METRIC.stagingReserved, "Staging bytes reserved by bodies in flight now.");
  const stagingPeak = gauge(METRIC.stagingPeak, "Most staging bytes reserved at once since start.");
  const stagingWaiting = gauge(METRIC.stagingWaiting, "Body fetches waiting for staging budget now.");
  const stagingWaits = counter(METRIC.stagingWaits, "Body fetches that had to wait for staging budget.");
  const bwLimit = gauge(METRIC.bandwidthLimit, "Configured shared replication bandwidth limit (0 = unlimited).");
  const throttled = counter(METRIC.throttled, "Time replication transfers spent waiting for the bandwidth limiter.");
  const repairs = counter(METRIC.repairs, "Bodies this node lost (a record that failed a check, dropped from the index) by outcome: repaired (held again), gave_up (no peer had it), refused (too many pending).", ["outcome"]);
  const repairsPending = gauge(METRIC.repairsPending, "Lost bodies waiting to be fetched again from a peer.");
  const liveBytes = gauge(METRIC.storeLiveBytes, "Bytes of live artifact bodies.");
  const diskBytes = gauge(METRIC.storeDiskBytes, "Bytes the segment files take on disk.");
  const capacity = gauge(METRIC.storeCapacityBytes, "Configured store capacity (0 = unbounded).");
  const storeArtifacts = gauge(METRIC.storeArtifacts, "Artifacts stored.");
  const segments = gauge(METRIC.storeSegments, "Segment files.");
  const evicted = counter(METRIC.storeEvicted, "Artifacts dropped by local eviction since the data dir was created.");
  const feedHead = gauge(METRIC.feedHead, "Newest sequence number of this node's change feed.");
  const feedFloor = gauge(METRIC.feedFloor, "Change-feed entries at or below this were trimmed.");
  const rpc = new Histogram({
    name: METRIC.rpcDuration,
    help: "Server-side RPC duration until the last response message, by listener, service, method and gRPC code.",
    labelNames: ["listener", "service", "method", "code"],
    buckets: [...(options.rpcBucketsSeconds ?? DEFAULT_RPC_BUCKETS_SECONDS)],
    ...reg,
  });

  const perPeer = [phase, lastContact, lagChanges, lagSeconds, cursor, head, received, artifacts, bytes, failures, resumedBodies, resumedBytes, rate, passes, bootTotalBytes, bootDoneBytes, bootTotalArtifacts, bootDoneArtifacts, bootEta, inFlight, pending, opened];

  /** Reads every source once and sets the metrics from that one snapshot. */
  function update(): void {
    const s = source.status();
    info.reset();
    info.set({ node_id: s.nodeId, incarnation: s.incarnation, version: s.version }, 1);
    ready.set(s.ready ? 1 : 0);
    const u = s.store;
    if (u) {
      liveBytes.set(Number(u.liveBytes));
      diskBytes.set(Number(u.diskBytes));
      capacity.set(Number(u.capacityBytes));
      storeArtifacts.set(Number(u.artifactCount));
      segments.set(u.segmentCount);
      evicted.reset();
      evicted.inc(Number(u.evictedCount));
    }
    feedHead.set(Number(s.feedHead));
    feedFloor.set(Number(s.feedFloor));

    for (const m of perPeer) m.reset();
    const links = new Map((source.replication?.allLinks() ?? []).map((l) => [l.address, l]));
    for (const p of s.peers) {
      const l: Labels = { peer: p.address, peer_node_id: p.nodeId };
      for (const [value, name] of Object.entries(PHASE_LABELS)) phase.set({ ...l, phase: name }, Number(value) === p.phase ? 1 : 0);
      lastContact.set(l, Number(p.lastContactMs) / 1000);
      lagChanges.set(l, Number(p.lagChanges));
      lagSeconds.set(l, p.lagSeconds);
      cursor.set(l, Number(p.cursorSeq));
      head.set(l, Number(p.headSeq));
      received.inc(l, Number(p.bytesFetched));
      rate.set(l, p.rateBytesPerSecond);
      bootTotalBytes.set(l, Number(p.bootstrapTotalBytes));
      bootDoneBytes.set(l, Number(p.bootstrapDoneBytes));
      bootTotalArtifacts.set(l, Number(p.bootstrapTotalArtifacts));
      bootDoneArtifacts.set(l, Number(p.bootstrapDoneArtifacts));
      bootEta.set(l, p.etaSeconds);
      inFlight.set(l, p.streamsInFlight);
      failures.inc(l, Number(p.failedCount));
      const link = links.get(p.address);
      if (link) {
        const st = link.stats;
        passes.inc(l, st.passes);
        resumedBodies.inc(l, st.resumedCount);
        resumedBytes.inc(l, st.resumedBytes);
        pending.set(l, link.streamCounts().pending);
        opened.inc(l, link.clientCounters().opened);
        for (const o of REPLICATION_OUTCOMES) {
          artifacts.inc({ ...l, outcome: o }, st.outcomes[o].artifacts);
          bytes.inc({ ...l, outcome: o }, st.outcomes[o].bytes);
        }
      }
    }
    const r = source.replication;
    if (r) {
      const st = r.staging.stats();
      stagingBudget.set(st.budgetBytes);
      stagingReserved.set(st.reservedBytes);
      stagingPeak.set(st.peakReservedBytes);
      stagingWaiting.set(st.waiting);
      stagingWaits.reset();
      stagingWaits.inc(st.waits);
      bwLimit.set(r.bandwidth.bytesPerSecond);
      throttled.reset();
      throttled.inc(r.bandwidth.throttledTimeMs() / 1000);
      const rp = r.repairer.stats();
      repairsPending.set(rp.pending);
      repairs.reset();
      repairs.inc({ outcome: "repaired" }, rp.repaired);
      repairs.inc({ outcome: "gave_up" }, rp.gaveUp);
      repairs.inc({ outcome: "refused" }, rp.refused);
    }
  }

  return {
    registry,
    contentType: registry.contentType,
    rpcObserver(listener) {
      return {
        start(call) {
          const t0 = process.hrtime.bigint();
          return (code) => {
            const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
            rpc.observe({ listener, service: call.service, method: call.method, code: grpcCodeName(code) }, seconds);
          };
        },
      };
    },
    async render() {
      update();
      return registry.metrics();
    },
  };
}
