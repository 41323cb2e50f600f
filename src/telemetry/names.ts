/**
 * Names of spans, span attributes and metrics, in one place: dashboards, alerts, tests and
 * docs/OPERATIONS.md refer to these strings, so they are constants and never built ad hoc.
 */

/** Instrumentation scope of every span Granary makes. */
export const TRACER_NAME = "granary";

/** Span names. RPC spans are named `<package>.<Service>/<Method>` (OTel RPC conventions). */
export const SPAN = {
  /** One bootstrap pass over a peer's index (root of the pass's trace). */
  bootstrapPass: "replication.bootstrap_pass",
  /** One ListManifests page of a bootstrap pass, until every body it lists was handled. */
  manifestPage: "replication.manifest_page",
  /** One ReadBodies stream: a large body alone or a batch of small ones. */
  bodyFetch: "replication.body_fetch",
  /** One Follow stream from a cursor until it ends. */
  followSession: "replication.follow_session",
  /** One Follow page: its bodies fetched and applied, the cursor persisted. */
  followPage: "replication.follow_page",
  /** A replicated body written to the store. */
  storeApply: "store.apply",
  /** A client's body written to the store. */
  storePut: "store.put",
} as const;

/** Span attribute keys (OTel semantic conventions where one exists, else `granary.*`). */
export const ATTR = {
  rpcSystem: "rpc.system",
  rpcService: "rpc.service",
  rpcMethod: "rpc.method",
  rpcGrpcStatusCode: "rpc.grpc.status_code",
  serverAddress: "server.address",
  listener: "granary.listener",
  nodeId: "granary.node.id",
  incarnation: "granary.node.incarnation",
  peerAddress: "granary.peer.address",
  peerNodeId: "granary.peer.node_id",
  callerNode: "granary.caller.node",
  pass: "granary.pass",
  resume: "granary.pass.resume",
  items: "granary.items",
  bodies: "granary.bodies",
  bytes: "granary.bytes",
  messages: "granary.messages",
  applied: "granary.applied",
  skipped: "granary.skipped",
  missing: "granary.missing",
  failed: "granary.failed",
  abandoned: "granary.abandoned",
  outcome: "granary.outcome",
  fromSeq: "granary.from_seq",
  toSeq: "granary.to_seq",
  namespace: "granary.namespace",
  kind: "granary.kind",
  key: "granary.key",
} as const;

/** Resource attribute keys for the node's identity on every span. */
export const RESOURCE_ATTR = {
  serviceName: "service.name",
  serviceVersion: "service.version",
  serviceInstanceId: "service.instance.id",
  nodeId: "granary.node.id",
  incarnation: "granary.node.incarnation",
} as const;

/** Prometheus metric names (see docs/OPERATIONS.md for types, labels and meaning). */
export const METRIC = {
  info: "granary_node_info",
  ready: "granary_ready",
  peerPhase: "granary_peer_phase",
  peerLastContact: "granary_peer_last_contact_timestamp_seconds",
  lagChanges: "granary_replication_lag_changes",
  lagSeconds: "granary_replication_lag_seconds",
  cursorSeq: "granary_replication_cursor_seq",
  peerHeadSeq: "granary_replication_peer_head_seq",
  receivedBytes: "granary_replication_received_bytes_total",
  artifacts: "granary_replication_artifacts_total",
  bytes: "granary_replication_bytes_total",
  failures: "granary_replication_failures_total",
  resumedBodies: "granary_replication_resumed_bodies_total",
  resumedBytes: "granary_replication_resumed_bytes_total",
  rate: "granary_replication_rate_bytes_per_second",
  bootstrapPasses: "granary_bootstrap_passes_total",
  bootstrapTotalBytes: "granary_bootstrap_total_bytes",
  bootstrapDoneBytes: "granary_bootstrap_done_bytes",
  bootstrapTotalArtifacts: "granary_bootstrap_total_artifacts",
  bootstrapDoneArtifacts: "granary_bootstrap_done_artifacts",
  bootstrapEta: "granary_bootstrap_eta_seconds",
  streamsInFlight: "granary_peer_streams_in_flight",
  streamsPending: "granary_peer_streams_pending",
  streamsOpened: "granary_peer_streams_opened_total",
  stagingBudget: "granary_staging_budget_bytes",
  stagingReserved: "granary_staging_reserved_bytes",
  stagingPeak: "granary_staging_peak_reserved_bytes",
  stagingWaiting: "granary_staging_waiting",
  stagingWaits: "granary_staging_waits_total",
  bandwidthLimit: "granary_replication_bandwidth_limit_bytes_per_second",
  throttled: "granary_replication_throttled_seconds_total",
  repairs: "granary_repairs_total",
  repairsPending: "granary_repairs_pending",
  storeLiveBytes: "granary_store_live_bytes",
  storeDiskBytes: "granary_store_disk_bytes",
  storeCapacityBytes: "granary_store_capacity_bytes",
  storeArtifacts: "granary_store_artifacts",
  storeSegments: "granary_store_segments",
  storeEvicted: "granary_store_evicted_artifacts_total",
  feedHead: "granary_store_feed_head_seq",
  feedFloor: "granary_store_feed_floor_seq",
  rpcDuration: "granary_rpc_server_duration_seconds",
} as const;

/** Outcomes of a replicated artifact (label `outcome`). */
export type ReplicationOutcome = "applied" | "skipped" | "missing" | "failed";
export const REPLICATION_OUTCOMES: readonly ReplicationOutcome[] = ["applied", "skipped", "missing", "failed"];
