/**
 * Standard grpc.health.v1.Health on the public listener. The empty service name and every
 * public service report the node's readiness, so Kubernetes' native gRPC probes and
 * grpc_health_probe work unchanged.
 *
 * One more name, LIVENESS_SERVICE, is SERVING whenever the process answers at all: a liveness
 * probe must not follow readiness, or a node in a long bootstrap (NOT_SERVING by design)
 * would be restarted over and over and never finish.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  type Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthCheckResponseSchema,
} from "../gen/grpc/health/v1/health_pb.js";

/** What the health service needs to know of readiness; implemented by the node layer. */
export interface ReadinessView {
  isReady(): boolean;
  /** Calls back on every change; returns an unsubscribe function. */
  onChange(listener: () => void): () => void;
}

/** Health service name for liveness probes (Kubernetes `grpc: {port, service: "liveness"}`). */
export const LIVENESS_SERVICE = "liveness";

export function healthService(readiness: ReadinessView, services: readonly string[]): ServiceImpl<typeof Health> {
  const known = new Set(["", ...services]);
  const status = (service: string): ServingStatus =>
    service === LIVENESS_SERVICE ? ServingStatus.SERVING : readiness.isReady() ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
  return {
    check(req) {
      if (!known.has(req.service) && req.service !== LIVENESS_SERVICE) throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
      return create(HealthCheckResponseSchema, { status: status(req.service) });
    },
    async *watch(req, ctx) {
      if (!known.has(req.service) && req.service !== LIVENESS_SERVICE) {
        yield create(HealthCheckResponseSchema, { status: ServingStatus.SERVICE_UNKNOWN });
        return;
      }
      let last: ServingStatus | undefined;
      let wake: (() => void) | undefined;
      const off = readiness.onChange(() => wake?.());
      const onAbort = (): void => wake?.();
      ctx.signal.addEventListener("abort", onAbort);
      try {
        while (!ctx.signal.aborted) {
          const now = status(req.service);
          if (now !== last) {
            last = now;
            yield create(HealthCheckResponseSchema, { status: now });
          }
          await new Promise<void>((resolve) => (wake = resolve));
        }
      } finally {
        off();
        ctx.signal.removeEventListener("abort", onAbort);
      }
    },
  };
}
