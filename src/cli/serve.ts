/**
 * `granary serve`: runs one node until SIGTERM/SIGINT, then drains and exits.
 */
import { resolveNodeConfig, DEFAULT_PEER_DROP_AFTER_MS, DEFAULT_PEER_WINDOW_BYTES, DEFAULT_PEER_CONNECTIONS, DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_LISTEN, DEFAULT_OPS_LISTEN, DEFAULT_PEER_LISTEN, DEFAULT_SHUTDOWN_GRACE_MS, DEFAULT_STAGING_BUDGET_BYTES } from "../node/config.js";
import { GranaryNode, GRANARY_VERSION } from "../node/granary-node.js";
import { createLogger, errFields } from "../telemetry/logger.js";
import { RecentEvents } from "../telemetry/recent-events.js";
import { startTracing } from "../telemetry/tracing.js";
import { failpointsFromEnv, FAILPOINTS_ENV } from "../util/failpoints-env.js";
import { helpText, parseCommand, type OptionSpec } from "./options.js";

export const SERVE_OPTIONS: readonly OptionSpec[] = [
  { name: "data-dir", kind: "string", help: "data directory (created when absent); required" },
  { name: "listen", kind: "string", default: DEFAULT_LISTEN, help: "public listener HOST:PORT (ArtifactService, NodeService, health)" },
  { name: "public-tls", kind: "boolean", help: "serve the public listener over TLS with --tls-cert/--tls-key (default h2c)" },
  { name: "peer-listen", kind: "string", default: DEFAULT_PEER_LISTEN, help: "peer listener HOST:PORT (mTLS replication; needs --tls-*)" },
  { name: "advertise-address", kind: "string", help: "https://HOST:PORT other nodes dial to reach this node's peer listener" },
  { name: "peers", kind: "list", help: "peer addresses https://HOST:PORT, comma-separated or repeated" },
  { name: "peer-allow", kind: "list", help: "only these node names may call the peer listener (default: any node of the mesh CA)" },
  { name: "peer-drop-after-ms", kind: "int", default: String(DEFAULT_PEER_DROP_AFTER_MS), help: "a peer learned through Hello (not in --peers) unreachable this long is forgotten" },
  { name: "tls-ca", kind: "string", help: "mesh CA certificate (PEM), from `granary certs init`" },
  { name: "tls-cert", kind: "string", help: "this node's certificate (PEM), from `granary certs issue`" },
  { name: "tls-key", kind: "string", help: "this node's private key (PEM)" },
  { name: "node-id", kind: "string", help: "node id (default: the certificate's node name, else the host name)" },
  { name: "capacity", kind: "bytes", default: "0", help: "byte budget for stored artifacts, e.g. 50GiB; least recently used data is evicted locally when full; 0 = unbounded" },
  { name: "idle-timeout-ms", kind: "int", default: String(DEFAULT_IDLE_TIMEOUT_MS), help: "per-message idle timeout on peer streams (both directions)" },
  { name: "peer-window-bytes", kind: "bytes", default: String(DEFAULT_PEER_WINDOW_BYTES), help: "HTTP/2 flow-control window of peer connections; size it >= 2 x bandwidth x RTT" },
  { name: "peer-connections", kind: "int", default: String(DEFAULT_PEER_CONNECTIONS), help: "TCP connections to each peer (1-64); more only pays with CUBIC-style congestion control on a lossy long link" },
  { name: "staging-budget-bytes", kind: "bytes", default: String(DEFAULT_STAGING_BUDGET_BYTES), help: "bytes reserved by in-flight replicated bodies; fetches wait when full" },
  { name: "replication-bandwidth-bytes-per-second", kind: "bytes", default: "0", help: "shared limit for all peer transfers; 0 = off" },
  { name: "shutdown-grace-ms", kind: "int", default: String(DEFAULT_SHUTDOWN_GRACE_MS), help: "on SIGTERM, time to drain in-flight streams before cutting them" },
  { name: "ops-listen", kind: "string", help: `ops listener HOST:PORT: /metrics (Prometheus), /livez, /readyz, status page at /; "off" disables (default ${DEFAULT_OPS_LISTEN})` },
  { name: "tracing", kind: "boolean", help: "export OpenTelemetry traces over OTLP even without OTEL_EXPORTER_OTLP_ENDPOINT (on by itself when an endpoint is set; OTEL_* variables configure it)" },
  { name: "log-level", kind: "string", default: "info", help: "trace, debug, info, warn, error" },
  { name: "config", kind: "string", help: "JSON file with any of these settings by flag name, e.g. {\"data-dir\": \"/var/lib/granary\"}" },
  { name: "help", kind: "boolean", short: "h", help: "show this help", noEnv: true },
];

export async function serveCommand(argv: readonly string[]): Promise<number> {
  const { values } = parseCommand(argv, SERVE_OPTIONS);
  if (values["help"]) {
    process.stdout.write(
      helpText(
        "granary serve --data-dir DIR [options]",
        "Runs a Granary node. Every option can also be given as an environment variable GRANARY_<OPTION>\n(e.g. GRANARY_DATA_DIR) or in a JSON --config file; flags win over the environment, which wins over the file.",
        SERVE_OPTIONS,
      ),
    );
    return 0;
  }
  const config = resolveNodeConfig({
    dataDir: values["data-dir"] as string | undefined,
    listen: values["listen"] as string,
    publicTls: Boolean(values["public-tls"]),
    peerListen: values["peer-listen"] as string,
    advertiseAddress: values["advertise-address"] as string | undefined,
    peers: (values["peers"] as string[] | undefined) ?? [],
    peerAllow: (values["peer-allow"] as string[] | undefined) ?? [],
    peerDropAfterMs: values["peer-drop-after-ms"] as number,
    tlsCa: values["tls-ca"] as string | undefined,
    tlsCert: values["tls-cert"] as string | undefined,
    tlsKey: values["tls-key"] as string | undefined,
    nodeId: values["node-id"] as string | undefined,
    capacityBytes: values["capacity"] as number,
    idleTimeoutMs: values["idle-timeout-ms"] as number,
    peerWindowBytes: values["peer-window-bytes"] as number,
    peerConnections: values["peer-connections"] as number,
    stagingBudgetBytes: values["staging-budget-bytes"] as number,
    replicationBandwidthBytesPerSecond: values["replication-bandwidth-bytes-per-second"] as number,
    shutdownGraceMs: values["shutdown-grace-ms"] as number,
    // The default address is best-effort (a second node on one host must still start); an
    // address the operator gave must work.
    opsListen: (values["ops-listen"] as string | undefined) ?? DEFAULT_OPS_LISTEN,
    opsListenRequired: values["ops-listen"] !== undefined,
  });
  const recentEvents = new RecentEvents();
  // Test builds only: nothing happens unless GRANARY_ENABLE_FAILPOINTS=1 is set as well.
  const failpoints = failpointsFromEnv(process.env);
  const log = createLogger({ level: values["log-level"] as string, recent: recentEvents });
  // Before the node: spans of its startup are exported too.
  const tracing = await startTracing({ force: Boolean(values["tracing"]), version: GRANARY_VERSION });
  if (failpoints) log.warn({ event: "failpoints.enabled", spec: process.env[FAILPOINTS_ENV] ?? "" }, "failpoints enabled (test only)");
  log.info({ event: "tracing", enabled: tracing.enabled, reason: tracing.reason }, `tracing ${tracing.enabled ? "on" : "off"}: ${tracing.reason}`);
  let node: GranaryNode;
  try {
    node = await GranaryNode.start(config, log, { recentEvents, ...(failpoints ? { failpoints } : {}) });
  } catch (e) {
    await tracing.shutdown();
    throw e;
  }
  tracing.setIdentity(node.store.nodeId, node.store.incarnation);
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log.info({ event: "signal", signal }, `received ${signal}`);
      process.off("SIGTERM", onTerm);
      process.off("SIGINT", onInt);
      node
        .close()
        .catch((e: unknown) => log.error({ event: "shutdown.failed", ...errFields(e) }, "shutdown failed"))
        // Flush the last spans (the pass that was running, the drain) before exiting.
        .then(() => tracing.shutdown())
        .catch((e: unknown) => log.warn({ event: "tracing.shutdown_failed", ...errFields(e) }, "exporting the last spans failed"))
        .then(resolve, resolve);
    };
    const onTerm = (): void => stop("SIGTERM");
    const onInt = (): void => stop("SIGINT");
    process.on("SIGTERM", onTerm);
    process.on("SIGINT", onInt);
  });
  return 0;
}
