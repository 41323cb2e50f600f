/**
 * Standard grpc.health.v1.Health on the public listener. The empty service name and every
 * public service report the node's readiness, so Kubernetes' native gRPC probes and
 * grpc_health_probe work unchanged.
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

export function healthService(readiness: ReadinessView, services: readonly string[]): ServiceImpl<typeof Health> {
  const known = new Set(["", ...services]);
  const current = (): ServingStatus => (readiness.isReady() ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
  return {
    check(req) {
      if (!known.has(req.service)) throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
      return create(HealthCheckResponseSchema, { status: current() });
    },
    async *watch(req, ctx) {
      if (!known.has(req.service)) {
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
          const now = current();
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
