/**
 * The status page's data: the node status (proto JSON: 64-bit numbers as strings, enums as
 * names) plus what only this process knows — recent warnings/errors, the staging budget, the
 * bandwidth limiter and the repairs of lost bodies.
 */
import { toJson, type JsonValue } from "@bufbuild/protobuf";
import { NodeStatusSchema } from "../gen/granary/node/v1/node_pb.js";
import type { RepairStats } from "../replication/repairer.js";
import type { RecentEvent } from "../telemetry/recent-events.js";
import type { MetricsSource } from "./metrics.js";

export interface StatusDocument {
  readonly generatedAtMs: number;
  readonly status: JsonValue;
  readonly staging: { budgetBytes: number; reservedBytes: number; waiting: number } | null;
  readonly bandwidth: { limitBytesPerSecond: number; throttledSeconds: number } | null;
  readonly repairs: RepairStats | null;
  readonly recentEvents: readonly RecentEvent[];
}

export function statusDocument(source: MetricsSource, recent: readonly RecentEvent[]): StatusDocument {
  const r = source.replication;
  const st = r?.staging.stats();
  return {
    generatedAtMs: Date.now(),
    status: toJson(NodeStatusSchema, source.status(), { alwaysEmitImplicit: true }),
    staging: st ? { budgetBytes: st.budgetBytes, reservedBytes: st.reservedBytes, waiting: st.waiting } : null,
    bandwidth: r ? { limitBytesPerSecond: r.bandwidth.bytesPerSecond, throttledSeconds: r.bandwidth.throttledTimeMs() / 1000 } : null,
    repairs: r ? r.repairer.stats() : null,
    recentEvents: recent,
  };
}
