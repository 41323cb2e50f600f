/**
 * Wiring of one node: config -> store -> servers (-> replication, once peers are given);
 * lifecycle, readiness and graceful shutdown. Everything a node owns is closed by close().
 */
import { hostname } from "node:os";
import { create } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { NodeStatusSchema, StoreUsageSchema, type NodeStatus } from "../gen/granary/node/v1/node_pb.js";
import { errorInterceptor } from "../api/errors.js";
import { publicRoutes } from "../api/public-routes.js";
import { openStore } from "../store/store.js";
import type { Store } from "../store/types.js";
import { errFields, type Logger } from "../telemetry/logger.js";
import { createConnectHandler, kHttp2Stream } from "../transport/connect-handler.js";
import { withSendDeadline } from "../transport/deadlines.js";
import { createPublicServer, type ListeningServer } from "../transport/server.js";
import { formatHostPort, type HostPort, type NodeConfig } from "./config.js";
import { Readiness } from "./readiness.js";

export const GRANARY_VERSION = "0.1.0";

/** A client that stops reading a Get for this long has its stream reset. */
export const PUBLIC_SEND_DEADLINE_MS = 60_000;

export class GranaryNode {
  readonly readiness = new Readiness();
  private closing: Promise<void> | undefined;
  private readonly startedAtMs = Date.now();

  private constructor(
    readonly config: NodeConfig,
    readonly store: Store,
    private readonly log: Logger,
    private publicServer: ListeningServer | undefined,
  ) {}

  static async start(config: NodeConfig, log: Logger): Promise<GranaryNode> {
    const store = await openStore({
      dataDir: config.dataDir,
      nodeId: config.nodeId ?? hostname(),
      capacityBytes: config.capacityBytes,
      onEvent: (event) => {
        const level = event.type === "corrupt-record" ? "error" : "info";
        log[level]({ event: `store.${event.type}`, ...event }, `store: ${event.type}`);
      },
    });
    const node = new GranaryNode(config, store, log.child({ nodeId: store.nodeId }), undefined);
    try {
      await node.listen();
    } catch (e) {
      await store.close();
      throw e;
    }
    // A node with no peers has nothing to catch up with: ready as soon as it serves.
    if (config.peers.length === 0) node.readiness.markReady("no peers configured: ready once the store is open");
    node.log.info({ event: "readiness.changed", ready: node.readiness.isReady(), reason: node.readiness.reason() }, "readiness changed");
    return node;
  }

  private async listen(): Promise<void> {
    const log = this.log;
    const sendDeadline = <T>(ctx: HandlerContext, src: AsyncIterable<T>): AsyncIterable<T> =>
      withSendDeadline(src, PUBLIC_SEND_DEADLINE_MS, () => {
        log.warn({ event: "rpc.send_stalled", timeoutMs: PUBLIC_SEND_DEADLINE_MS }, "client stopped reading; resetting the stream");
        ctx.values.get(kHttp2Stream)?.close();
      });
    const handler = createConnectHandler({
      routes: publicRoutes({ store: this.store, readiness: this.readiness, status: this, sendDeadline }),
      interceptors: [errorInterceptor(log)],
    });
    this.publicServer = await createPublicServer({
      handler,
      listen: this.config.listen,
      ...(this.config.publicTls ? { tls: { certFile: this.config.tlsCert!, keyFile: this.config.tlsKey! } } : {}),
    });
    log.info(
      { event: "listening", publicAddress: formatHostPort(this.publicAddress), tls: this.config.publicTls, dataDir: this.config.dataDir, incarnation: this.store.incarnation },
      "listening",
    );
  }

  get publicAddress(): HostPort {
    if (!this.publicServer) throw new Error("node is not listening");
    return this.publicServer.address();
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
      version: GRANARY_VERSION,
      startedAtMs: BigInt(this.startedAtMs),
      publicAddress: this.publicServer ? formatHostPort(this.publicServer.address()) : "",
      peerAddress: "",
    });
  }

  /** Graceful: NOT_SERVING, drain in-flight streams (up to the grace), then close the store. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.readiness.drain();
      this.log.info({ event: "shutdown.started", graceMs: this.config.shutdownGraceMs }, "shutting down: draining in-flight streams");
      try {
        await this.publicServer?.close(this.config.shutdownGraceMs);
      } catch (e) {
        this.log.warn({ event: "shutdown.server_close_failed", ...errFields(e) }, "closing the public listener failed");
      }
      await this.store.close();
      this.log.info({ event: "shutdown.done" }, "stopped");
    })();
    return this.closing;
  }
}
