/**
 * The OpenTelemetry SDK for traces, started by the CLI entry point only (library code uses
 * @opentelemetry/api and never imports this file's dependencies).
 *
 * On when an OTLP endpoint is configured (OTEL_EXPORTER_OTLP_ENDPOINT or
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), as the OpenTelemetry convention goes, or when asked
 * for (`--tracing`, then the exporter's default endpoint http://localhost:4318 applies).
 * Off otherwise: the SDK is not even loaded, and the API's no-op tracer costs nothing.
 * OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none keep it off in every case.
 *
 * Everything else comes from the standard OTEL_* variables, read by the SDK: protocol
 * (http/protobuf by default, grpc, http/json), headers, sampler (OTEL_TRACES_SAMPLER[_ARG]),
 * batch processor (OTEL_BSP_*), propagators (W3C tracecontext + baggage by default),
 * OTEL_RESOURCE_ATTRIBUTES. service.name is OTEL_SERVICE_NAME, default "granary". Only traces
 * are exported this way: metrics are scraped from the ops listener, logs go to stdout.
 *
 * The node's id and incarnation are known only once its data dir is open; they are resource
 * attributes all the same (resources may hold pending values; the exporter waits for them).
 */
import { RESOURCE_ATTR } from "./names.js";

export const DEFAULT_SERVICE_NAME = "granary";

export interface TracingOptions {
  /** `--tracing`: on even without an endpoint in the environment. Default false. */
  readonly force?: boolean;
  /** The environment to read OTEL_* from. Default process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /** service.version. */
  readonly version: string;
}

export interface Tracing {
  /** True when spans are exported. */
  readonly enabled: boolean;
  /** Why tracing is on or off (for the startup log line). */
  readonly reason: string;
  /** Records the node's identity on the resource (call once the store is open). */
  setIdentity(nodeId: string, incarnation: string): void;
  /** Flushes pending spans and stops the SDK; idempotent. */
  shutdown(): Promise<void>;
}

/** Whether tracing should be on, and why. */
export function tracingDecision(options: Pick<TracingOptions, "force" | "env">): { enabled: boolean; reason: string } {
  const env = options.env ?? process.env;
  const set = (k: string): boolean => (env[k] ?? "").trim() !== "";
  if (/^true$/i.test((env["OTEL_SDK_DISABLED"] ?? "").trim())) return { enabled: false, reason: "OTEL_SDK_DISABLED=true" };
  if ((env["OTEL_TRACES_EXPORTER"] ?? "").split(",").some((v) => v.trim() === "none")) return { enabled: false, reason: "OTEL_TRACES_EXPORTER=none" };
  if (set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) return { enabled: true, reason: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=${env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]!}` };
  if (set("OTEL_EXPORTER_OTLP_ENDPOINT")) return { enabled: true, reason: `OTEL_EXPORTER_OTLP_ENDPOINT=${env["OTEL_EXPORTER_OTLP_ENDPOINT"]!}` };
  if (options.force) return { enabled: true, reason: "--tracing (default OTLP endpoint)" };
  return { enabled: false, reason: "no OTLP endpoint configured" };
}

const OFF: Omit<Tracing, "reason"> = { enabled: false, setIdentity: () => undefined, shutdown: () => Promise.resolve() };

/** Starts the SDK when the decision says so; returns a handle either way. */
export async function startTracing(options: TracingOptions): Promise<Tracing> {
  const env = options.env ?? process.env;
  const decision = tracingDecision(options);
  if (!decision.enabled) return { ...OFF, reason: decision.reason };
  // Loaded only when on: the SDK and its exporters are not imported by a node without tracing.
  const [{ NodeSDK }, { defaultResource, resourceFromAttributes }] = await Promise.all([import("@opentelemetry/sdk-node"), import("@opentelemetry/resources")]);
  let identify!: (id: { nodeId: string; incarnation: string }) => void;
  const identity = new Promise<{ nodeId: string; incarnation: string }>((resolve) => (identify = resolve));
  const serviceNameFromResourceAttrs = (env["OTEL_RESOURCE_ATTRIBUTES"] ?? "").split(",").some((kv) => kv.trim().startsWith(`${RESOURCE_ATTR.serviceName}=`));
  const serviceName = (env["OTEL_SERVICE_NAME"] ?? "").trim() || (serviceNameFromResourceAttrs ? undefined : DEFAULT_SERVICE_NAME);
  const sdk = new NodeSDK({
    resource: defaultResource().merge(
      resourceFromAttributes({
        [RESOURCE_ATTR.serviceVersion]: options.version,
        [RESOURCE_ATTR.nodeId]: identity.then((i) => i.nodeId),
        [RESOURCE_ATTR.incarnation]: identity.then((i) => i.incarnation),
        [RESOURCE_ATTR.serviceInstanceId]: identity.then((i) => i.nodeId),
      }),
    ),
    ...(serviceName !== undefined ? { serviceName } : {}),
    // Traces only: no OTLP metric reader or log processor from the environment's defaults.
    metricReaders: [],
    logRecordProcessors: [],
    instrumentations: [],
  });
  sdk.start();
  let stopping: Promise<void> | undefined;
  return {
    enabled: true,
    reason: decision.reason,
    setIdentity: (nodeId, incarnation) => identify({ nodeId, incarnation }),
    shutdown() {
      stopping ??= (async () => {
        // A node that failed before its store opened: export what there is, unidentified.
        identify({ nodeId: "", incarnation: "" });
        await sdk.shutdown();
      })();
      return stopping;
    },
  };
}
