/**
 * Wiring of one node: config -> store -> peer listener -> public listener -> replicator;
 * lifecycle, readiness and graceful shutdown. Everything a node owns is closed by close().
 *
 * The peer listener starts before anything waits on peers and serves whether or not the node
 * is ready, so a mesh restarted all at once can catch up from itself.
 */
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { create } from "@bufbuild/protobuf";
import type { HandlerContext, Interceptor } from "@connectrpc/connect";
import { NodeStatusSchema, PeerPhase, PeerStatusSchema, StoreUsageSchema, type NodeStatus, type PeerStatus } from "../gen/granary/node/v1/node_pb.js";
import { errorInterceptor } from "../api/errors.js";
import { publicRoutes } from "../api/public-routes.js";
import { replicationService } from "../api/replication-service.js";
import { ReplicationService } from "../gen/granary/replication/v1/replication_pb.js";
import { nodeNameFromUri } from "../certs/node-id.js";
import type { PeerLink } from "../replication/peer-link.js";
import { Replicator } from "../replication/replicator.js";
import { openStore } from "../store/store.js";
import type { Manifest, Store, StoreEvent } from "../store/types.js";
import { errFields, type Logger } from "../telemetry/logger.js";
import { createConnectHandler, kPeerIdentity, resetStream } from "../transport/connect-handler.js";
import { withSendDeadline } from "../transport/deadlines.js";
import type { Failpoints } from "../util/failpoints.js";
import { createNodeMetrics, type NodeMetrics } from "../ops/metrics.js";
import { startOpsServer, type OpsServer } from "../ops/ops-server.js";
import type { RecentEvents } from "../telemetry/recent-events.js";
import { observeInterceptor } from "../telemetry/rpc-observe.js";
import { createGrpcJsPeerClient } from "../transport/peer-client-grpcjs.js";
import type { PeerClientFactory } from "../transport/peer-client.js";
import type { ServerLimits } from "../transport/limits.js";
import { createPeerServer, createPublicServer, type ListeningServer } from "../transport/server.js";
import { formatHostPort, type HostPort, type NodeConfig } from "./config.js";
import { Readiness } from "./readiness.js";

export const GRANARY_VERSION = "0.1.0";

/** A client that stops reading a public Get for this long has its stream reset. */
export const PUBLIC_SEND_DEADLINE_MS = 60_000;

/** Hooks for tests and benchmarks: swap the peer client, tune the replication engine. */
export interface NodeHooks {
  readonly peerClientFactory?: PeerClientFactory;
  readonly replication?: ConstructorParameters<typeof Replicator>[0]["linkOptions"];
  /** Failpoints of the store ("store.*") and of the serving side of the peer plane ("peer.*"; "peer.rpc" before every peer handler). */
  readonly failpoints?: Failpoints;
  /** The logger's ring of recent warnings/errors (createLogger's `recent`), shown on the status page. */
  readonly recentEvents?: RecentEvents;
  /** Export process_* / nodejs_* metrics too. Default true. */
  readonly processMetrics?: boolean;
  /** Overrides of the peer listener's limits (transport/limits.ts DEFAULT_PEER_LIMITS). */
  readonly peerLimits?: Partial<ServerLimits>;
}

/** The node name in a certificate's identity URI SAN, if any. */
function certNodeName(certFile: string): string | undefined {
  const cert = new X509Certificate(readFileSync(certFile));
  for (const part of (cert.subjectAltName ?? "").split(/,\s*/)) {
    if (part.startsWith("URI:")) {
      const name = nodeNameFromUri(part.slice(4));
      if (name) return name;
    }
  }
  return undefined;
}

/** Innermost interceptor: "peer.rpc" is hit once per call that reached the handlers (tests count them). */
function failpointInterceptors(fp: Failpoints | undefined): Interceptor[] {
  if (!fp) return [];
  return [
    (next) => async (req) => {
      await fp.hit("peer.rpc", { procedure: `${req.service.typeName}/${req.method.name}` });
      return next(req);
    },
  ];
}

/** Lost bodies kept for repair before replication starts (the repairer's own bound applies after). */
const MAX_LOST_AT_OPEN = 10_000;

export class GranaryNode {
  readonly readiness = new Readiness();
  private closing: Promise<void> | undefined;
  private readonly startedAtMs = Date.now();
  private publicServer: ListeningServer | undefined;
  private peerServer: ListeningServer | undefined;
  private replicator: Replicator | undefined;
  /** Lost bodies reported before the replicator ran (handed to its repairer when it starts). */
  private readonly lostBeforeReplication: Manifest[] = [];
  private advertise = "";
  private readonly log: Logger;
  /** Aborted at shutdown: ends Follow streams so the peer listener drains without waiting the grace. */
  private readonly stopping = new AbortController();
  private readonly metrics: NodeMetrics;
  private opsServer: OpsServer | undefined;

  private constructor(
    readonly config: NodeConfig,
    readonly store: Store,
    log: Logger,
    private readonly hooks: NodeHooks,
  ) {
    this.log = log.child({ nodeId: store.nodeId });
    this.metrics = createNodeMetrics(this, hooks.processMetrics === undefined ? {} : { processMetrics: hooks.processMetrics });
    this.readiness.onChange(() => {
      const ready = this.readiness.isReady();
      this.log.info({ event: "readiness.changed", ready, reason: this.readiness.reason() }, `${ready ? "ready" : "not ready"}: ${this.readiness.reason()}`);
    });
  }

  static async start(config: NodeConfig, log: Logger, hooks: NodeHooks = {}): Promise<GranaryNode> {
    const nodeId = config.nodeId ?? (config.tlsCert ? certNodeName(config.tlsCert) : undefined) ?? hostname();
    // Bodies the store lost (records that failed a check) are fetched again from a peer once
    // replication runs; those found by the recovery scan at open wait for it here.
    let node: GranaryNode | undefined;
    const lostAtOpen: Manifest[] = [];
    const store = await openStore({
      dataDir: config.dataDir,
      nodeId,
      capacityBytes: config.capacityBytes,
      ...(hooks.failpoints ? { failpoints: hooks.failpoints } : {}),
      onEvent: (event: StoreEvent) => {
        if (event.type !== "corrupt-record") {
          log.info({ event: `store.${event.type}`, ...event }, `store: ${event.type}`);
          return;
        }
        const { manifest, ...rest } = event;
        log.error({ event: "store.corrupt-record", ...rest, ...(manifest ? { digest: manifest.digest, size: manifest.size } : {}) }, `store: corrupt-record${manifest ? " (dropped from the index; to be fetched again from a peer)" : ""}`);
        if (!manifest) return;
        if (node) node.lostBody(manifest);
        else if (lostAtOpen.length < MAX_LOST_AT_OPEN) lostAtOpen.push(manifest);
      },
    });
    node = new GranaryNode(config, store, log, hooks);
    for (const m of lostAtOpen) node.lostBody(m);
    try {
      await node.startOps();
      await node.listen();
      await node.startReplication();
    } catch (e) {
      await node.close();
      throw e;
    }
    return node;
  }

  private sendDeadline = <T>(ctx: HandlerContext, src: AsyncIterable<T>, ms: number): AsyncIterable<T> =>
    withSendDeadline(
      src,
      ms,
      (err) => {
        this.log.warn({ event: "rpc.send_stalled", ...errFields(err) }, "receiver stopped reading; resetting the stream");
        resetStream(ctx.values);
      },
      ctx.signal,
    );

  /** The ops listener first, so /livez and /readyz answer while the node starts. */
  private async startOps(): Promise<void> {
    const at = this.config.opsListen;
    if (!at) return;
    try {
      this.opsServer = await startOpsServer({
        host: at.host,
        port: at.port,
        metrics: this.metrics,
        source: this,
        readiness: this.readiness,
        ...(this.hooks.recentEvents ? { recentEvents: () => this.hooks.recentEvents!.list() } : {}),
        onError: (err, path) => this.log.warn({ event: "ops.request_failed", path, ...errFields(err) }, `ops listener: ${path} failed`),
      });
    } catch (e) {
      if (this.config.opsListenRequired) throw e;
      this.log.warn({ event: "ops.disabled", address: formatHostPort(at), ...errFields(e) }, "ops listener not started (default port busy): no /metrics, /readyz or status page; set --ops-listen");
    }
  }

  /** Bound address of the ops listener (undefined when off). */
  get opsAddress(): HostPort | undefined {
    return this.opsServer?.address();
  }

  private async listen(): Promise<void> {
    const { config, log } = this;
    const observe = (listener: "public" | "peer") =>
      observeInterceptor({
        observer: this.metrics.rpcObserver(listener),
        traced: { listener, callerName: (values) => (values as HandlerContext["values"]).get(kPeerIdentity)?.nodeName },
      });
    // Outermost first: the span and the latency cover the whole call, and see the codes the
    // error interceptor mapped.
    const interceptors = [observe("peer"), errorInterceptor(log), ...failpointInterceptors(this.hooks.failpoints)];
    if (config.tlsCa && config.tlsCert && config.tlsKey) {
      const handler = createConnectHandler({
        routes: (router) =>
          router.service(
            ReplicationService,
            replicationService({
              store: this.store,
              advertiseAddress: () => this.advertise,
              knownPeers: () => this.replicator?.knownPeers() ?? [],
              onHello: (from) => this.replicator?.learn(from.advertiseAddress, from.nodeId),
              callerName: (ctx) => ctx.values.get(kPeerIdentity)?.nodeName,
              // Heartbeats keep a quiet Follow inside the follower's idle timeout.
              heartbeatIntervalMs: Math.max(50, Math.floor(config.idleTimeoutMs / 3)),
              sendDeadline: (ctx, src) => this.sendDeadline(ctx, src, config.idleTimeoutMs),
              ...(this.hooks.failpoints ? { failpoints: this.hooks.failpoints } : {}),
              stopping: this.stopping.signal,
              onBodyCut: (cut) => log.warn({ event: "peer.body_cut", ...cut }, `body stream of ${cut.key} cut at byte ${cut.offset} of ${cut.length}`),
            }),
          ),
        interceptors,
      });
      this.peerServer = await createPeerServer({
        handler,
        listen: config.peerListen,
        tls: { caFile: config.tlsCa, certFile: config.tlsCert, keyFile: config.tlsKey },
        watchTls: true,
        ...(config.peerAllow.length > 0 ? { allow: new Set(config.peerAllow) } : {}),
        onRejected: (reason, remoteAddress) => log.warn({ event: "peer.rejected", reason, remoteAddress }, `refused a peer connection: ${reason}`),
        // A dead connection (peer gone without a FIN we saw, or one Node did not report) found
        // by the keepalive; its streams' handlers end with it.
        onKeepaliveTimeout: (remoteAddress) =>
          log.warn({ event: "peer.keepalive_timeout", remoteAddress }, `closed a peer connection from ${remoteAddress ?? "an unknown address"}: no answer to PING`),
        ...(this.hooks.peerLimits !== undefined ? { limits: this.hooks.peerLimits } : {}),
        onTlsReload: (err) =>
          err
            ? log.error({ event: "tls.reload_failed", ...errFields(err) }, "certificate reload failed; keeping the old one")
            : log.info({ event: "tls.reloaded" }, "certificates reloaded"),
      });
      const bound = this.peerServer.address();
      const host = bound.host === "0.0.0.0" || bound.host === "::" ? hostname() : bound.host;
      this.advertise = config.advertiseAddress ?? `https://${formatHostPort({ host, port: bound.port })}`;
    } else {
      log.warn({ event: "peer.disabled" }, "peer plane off: no --tls-ca/--tls-cert/--tls-key given (single node)");
    }
    const handler = createConnectHandler({
      routes: publicRoutes({
        store: this.store,
        readiness: this.readiness,
        status: this,
        sendDeadline: (ctx, src) => this.sendDeadline(ctx, src, PUBLIC_SEND_DEADLINE_MS),
      }),
      interceptors: [observe("public"), errorInterceptor(log)],
    });
    this.publicServer = await createPublicServer({
      handler,
      listen: config.listen,
      ...(config.publicTls ? { tls: { certFile: config.tlsCert!, keyFile: config.tlsKey! } } : {}),
    });
    log.info(
      {
        event: "listening",
        publicAddress: formatHostPort(this.publicAddress),
        peerAddress: this.advertise || undefined,
        tls: config.publicTls,
        dataDir: config.dataDir,
        incarnation: this.store.incarnation,
        opsAddress: this.opsServer ? formatHostPort(this.opsServer.address()) : undefined,
      },
      "listening",
    );
  }

  private async startReplication(): Promise<void> {
    const { config, log } = this;
    // readiness.changed is logged by the onChange subscription (constructor).
    const ready = (reason: string): void => void this.readiness.markReady(reason);
    if (!this.peerServer || !config.tlsCa || !config.tlsCert || !config.tlsKey) {
      ready("no peer plane: ready once the store is open");
      return;
    }
    const tls = { ca: readFileSync(config.tlsCa), cert: readFileSync(config.tlsCert), key: readFileSync(config.tlsKey) };
    const factory: PeerClientFactory =
      this.hooks.peerClientFactory ?? ((address, serverName) => createGrpcJsPeerClient(address, { tls, idleTimeoutMs: config.idleTimeoutMs, channel: { flowControlWindowBytes: config.peerWindowBytes }, connections: config.peerConnections }, serverName));
    this.readiness.pending("catching up with peers");
    this.replicator = new Replicator({
      store: this.store,
      log,
      clientFactory: factory,
      advertiseAddress: this.advertise,
      peers: config.peers,
      stagingBudgetBytes: config.stagingBudgetBytes,
      bandwidthBytesPerSecond: config.replicationBandwidthBytesPerSecond,
      ...(this.hooks.replication ? { linkOptions: this.hooks.replication } : {}),
      peerDropAfterMs: config.peerDropAfterMs,
      onInitialSyncDone: ready,
    });
    await this.replicator.start();
    for (const m of this.lostBeforeReplication.splice(0)) this.replicator.repairer.enqueue(m);
  }

  /** The store dropped a record that failed a check: fetch its body again from a peer. */
  private lostBody(m: Manifest): void {
    if (this.replicator) this.replicator.repairer.enqueue(m);
    else if (this.lostBeforeReplication.length < MAX_LOST_AT_OPEN) this.lostBeforeReplication.push(m);
  }

  get publicAddress(): HostPort {
    if (!this.publicServer) throw new Error("node is not listening");
    return this.publicServer.address();
  }

  /** https://HOST:PORT of the peer listener ("" when the peer plane is off). */
  get peerAddress(): string {
    return this.advertise;
  }

  /** The peer listener (tests count its sessions). */
  get peerListener(): ListeningServer | undefined {
    return this.peerServer;
  }

  get replication(): Replicator | undefined {
    return this.replicator;
  }

  private peerStatus(link: PeerLink): PeerStatus {
    const s = link.stats;
    const lag = Math.max(0, s.headSeq - s.cursorSeq);
    const rate = s.rate.rate();
    const b = s.bootstrap;
    const eta = b && rate > 0 && b.totalBytes > b.doneBytes ? (b.totalBytes - b.doneBytes) / rate : 0;
    const phase: Record<string, PeerPhase> = {
      connecting: PeerPhase.CONNECTING,
      bootstrapping: PeerPhase.BOOTSTRAPPING,
      following: PeerPhase.FOLLOWING,
      backoff: PeerPhase.BACKOFF,
      unreachable: PeerPhase.UNREACHABLE,
      stopped: PeerPhase.UNSPECIFIED,
    };
    return create(PeerStatusSchema, {
      nodeId: s.nodeId,
      address: link.address,
      phase: phase[s.phase] ?? PeerPhase.UNSPECIFIED,
      incarnation: s.incarnation,
      cursorSeq: BigInt(s.cursorSeq),
      headSeq: BigInt(s.headSeq),
      lagChanges: BigInt(lag),
      lagSeconds: lag > 0 && s.lagSince !== undefined ? (Date.now() - s.lagSince) / 1000 : 0,
      bytesFetched: BigInt(s.bytesFetched),
      artifactsFetched: BigInt(s.artifactsFetched),
      rateBytesPerSecond: rate,
      etaSeconds: eta,
      failedCount: BigInt(s.failedCount),
      lastError: s.lastError,
      bootstrapTotalBytes: BigInt(b?.totalBytes ?? 0),
      bootstrapDoneBytes: BigInt(b?.doneBytes ?? 0),
      bootstrapTotalArtifacts: BigInt(b?.totalArtifacts ?? 0),
      bootstrapDoneArtifacts: BigInt(b?.doneArtifacts ?? 0),
      // Stalled, not slow: streams are open but nothing arrived for half the idle timeout
      // (a quiet Follow gets a heartbeat every third of it).
      stalled: link.clientCounters().inFlight > 0 && s.lastProgressMs > 0 && Date.now() - s.lastProgressMs > this.config.idleTimeoutMs / 2,
      streamsInFlight: link.streamCounts().active,
      lastContactMs: BigInt(s.lastContactMs),
    });
  }

  status(): NodeStatus {
    const u = this.store.usage();
    return create(NodeStatusSchema, {
      nodeId: this.store.nodeId,
      incarnation: this.store.incarnation,
      store: create(StoreUsageSchema, {
        liveBytes: BigInt(u.liveBytes),
        diskBytes: BigInt(u.diskBytes),
        capacityBytes: BigInt(u.capacityBytes),
        artifactCount: BigInt(u.artifactCount),
        segmentCount: u.segmentCount,
        evictedCount: BigInt(u.evictedCount),
      }),
      feedHead: BigInt(this.store.feedHead()),
      feedFloor: BigInt(this.store.feedFloor()),
      ready: this.readiness.isReady(),
      readinessReason: this.readiness.reason(),
      peers: (this.replicator?.allLinks() ?? []).map((l) => this.peerStatus(l)),
      version: GRANARY_VERSION,
      startedAtMs: BigInt(this.startedAtMs),
      publicAddress: this.publicServer ? formatHostPort(this.publicServer.address()) : "",
      peerAddress: this.advertise,
    });
  }

  /** Graceful: NOT_SERVING, stop replication, drain in-flight streams (up to the grace), close the store. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.readiness.drain();
      this.stopping.abort();
      this.log.info({ event: "shutdown.started", graceMs: this.config.shutdownGraceMs }, "shutting down: draining in-flight streams");
      await this.replicator?.close();
      const servers = [this.publicServer, this.peerServer].filter((s): s is ListeningServer => s !== undefined);
      await Promise.all(
        servers.map((s) =>
          s.close(this.config.shutdownGraceMs).catch((e: unknown) => this.log.warn({ event: "shutdown.server_close_failed", ...errFields(e) }, "closing a listener failed")),
        ),
      );
      // Scrapes read the store: stop them before it closes.
      await this.opsServer?.close();
      await this.store.close();
      this.log.info({ event: "shutdown.done" }, "stopped");
    })();
    return this.closing;
  }
}
