/**
 * NodeService: the node's status for operators and `granary status`. The node layer owns
 * the status; this file only serves snapshots of it.
 */
import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  GetStatusResponseSchema,
  type NodeService,
  type NodeStatus,
  WatchStatusResponseSchema,
} from "../gen/granary/node/v1/node_pb.js";

export interface StatusView {
  status(): NodeStatus;
}

export const WATCH_INTERVAL_DEFAULT_MS = 1000;
const WATCH_INTERVAL_MIN_MS = 100;
const WATCH_INTERVAL_MAX_MS = 60_000;

export function nodeService(view: StatusView): ServiceImpl<typeof NodeService> {
  return {
    getStatus() {
      return create(GetStatusResponseSchema, { status: view.status() });
    },
    async *watchStatus(req, ctx) {
      const requested = req.intervalMs === 0 ? WATCH_INTERVAL_DEFAULT_MS : req.intervalMs;
      const intervalMs = Math.min(WATCH_INTERVAL_MAX_MS, Math.max(WATCH_INTERVAL_MIN_MS, requested));
      // Rates and ETAs move continuously, so a fixed cadence is what a progress display wants;
      // each frame also keeps the client's idle deadline armed.
      while (!ctx.signal.aborted) {
        yield create(WatchStatusResponseSchema, { status: view.status() });
        await new Promise<void>((resolve) => {
          const t = setTimeout(done, intervalMs);
          function done(): void {
            clearTimeout(t);
            ctx.signal.removeEventListener("abort", done);
            resolve();
          }
          ctx.signal.addEventListener("abort", done, { once: true });
        });
      }
    },
  };
}
