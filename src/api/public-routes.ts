/**
 * Everything the public listener serves: ArtifactService, NodeService and grpc.health.v1.
 * The peer plane's ReplicationService is deliberately absent here (UNIMPLEMENTED on this port).
 */
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { ArtifactService } from "../gen/granary/artifact/v1/artifact_pb.js";
import { NodeService } from "../gen/granary/node/v1/node_pb.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import type { Store } from "../store/types.js";
import { artifactService } from "./artifact-service.js";
import { healthService, type ReadinessView } from "./health-service.js";
import { nodeService, type StatusView } from "./node-service.js";

export interface PublicRoutesDeps {
  readonly store: Store;
  readonly readiness: ReadinessView;
  readonly status: StatusView;
  readonly sendDeadline?: <T>(ctx: HandlerContext, src: AsyncIterable<T>) => AsyncIterable<T>;
}

export function publicRoutes(deps: PublicRoutesDeps): (router: ConnectRouter) => void {
  return (router) => {
    router.service(ArtifactService, artifactService(deps.sendDeadline ? { store: deps.store, sendDeadline: deps.sendDeadline } : { store: deps.store }));
    router.service(NodeService, nodeService(deps.status));
    router.service(Health, healthService(deps.readiness, [ArtifactService.typeName, NodeService.typeName]));
  };
}
