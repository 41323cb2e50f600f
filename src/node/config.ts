/**
 * A node's whole configuration: one options interface, defaults as DEFAULT_* constants,
 * validated in one function that names the bad field.
 */
import { isAbsolute, resolve } from "node:path";

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface NodeConfig {
  /** Data directory (segments, index). */
  readonly dataDir: string;
  /** Public listener (ArtifactService, NodeService, health). */
  readonly listen: HostPort;
  /** Serve the public listener over TLS with tlsCert/tlsKey (default h2c). */
  readonly publicTls: boolean;
  /** Peer listener (ReplicationService, mTLS only). */
  readonly peerListen: HostPort;
  /** Address other nodes dial to reach this node's peer listener; default derived from peerListen. */
  readonly advertiseAddress: string | undefined;
  /** Mesh CA, node certificate and key (PEM files from `granary certs`). */
  readonly tlsCa: string | undefined;
  readonly tlsCert: string | undefined;
  readonly tlsKey: string | undefined;
  /** Node id; default: the one recorded in the data dir, else the certificate's node name, else the host name. */
  readonly nodeId: string | undefined;
  /** Byte budget for stored artifacts; 0 = unbounded. */
  readonly capacityBytes: number;
  /** Peer addresses (https://HOST:PORT). */
  readonly peers: readonly string[];
  /** When non-empty, only these node names may call the peer listener. */
  readonly peerAllow: readonly string[];
  /** A peer learned through Hello (not configured) that stays unreachable this long is dropped. */
  readonly peerDropAfterMs: number;
  /** Per-message idle timeout on peer streams, both directions. */
  readonly idleTimeoutMs: number;
  /** HTTP/2 flow-control window of peer connections (stream and connection), bytes. */
  readonly peerWindowBytes: number;
  /** TCP connections to each peer; body streams spread over them (pays only for loss-based congestion control on lossy links). */
  readonly peerConnections: number;
  /** Bytes reserved by in-flight replicated bodies; fetches wait when it is full. */
  readonly stagingBudgetBytes: number;
  /** Shared limit for all peer transfers; 0 = off. */
  readonly replicationBandwidthBytesPerSecond: number;
  /** Time to drain in-flight streams on shutdown before they are cut. */
  readonly shutdownGraceMs: number;
  /** Ops listener (/metrics, /livez, /readyz, status page); undefined = off. `granary serve` defaults to DEFAULT_OPS_LISTEN. */
  readonly opsListen: HostPort | undefined;
  /** When false (the CLI's default address), a busy ops port is logged and the node runs without it. */
  readonly opsListenRequired: boolean;
}

export const DEFAULT_LISTEN = "127.0.0.1:7070";
export const DEFAULT_PEER_LISTEN = "127.0.0.1:7443";
export const DEFAULT_IDLE_TIMEOUT_MS = 30_000;
/** 2 x (1 Gbit/s x 100 ms) = 25 MB, rounded up: one stream alone can fill such a link. */
export const DEFAULT_PEER_WINDOW_BYTES = 32 * 1024 * 1024;
export const DEFAULT_STAGING_BUDGET_BYTES = 1 << 30;
/** One: with BBR (this kernel's default) one connection fills a lossy 200 Mbit/50 ms link; see docs/PERFORMANCE.md §8. */
export const DEFAULT_PEER_CONNECTIONS = 1;
export const DEFAULT_PEER_DROP_AFTER_MS = 3_600_000;
export const DEFAULT_SHUTDOWN_GRACE_MS = 10_000;
/** Where `granary serve` puts the ops listener unless told otherwise (the OTel Prometheus port). */
export const DEFAULT_OPS_LISTEN = "127.0.0.1:9464";

export class ConfigError extends Error {
  readonly code = "CONFIG";
  constructor(readonly field: string, message: string) {
    super(`--${field}: ${message}`);
    this.name = "ConfigError";
  }
}

export function parseHostPort(field: string, text: string): HostPort {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new ConfigError(field, `expected HOST:PORT (e.g. 127.0.0.1:7070), got "${text}"`);
  return { host: (m[1] ?? m[2])!, port };
}

export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(":") ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

function peerConnections(v: number): number {
  if (!Number.isInteger(v) || v < 1 || v > 64) throw new ConfigError("peer-connections", `must be a whole number in [1, 64], got ${v}`);
  return v;
}

function nonNegativeInt(field: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 0) throw new ConfigError(field, `must be a whole number >= 0, got ${v}`);
  return v;
}

export interface RawNodeConfig {
  dataDir?: string | undefined;
  listen?: string | undefined;
  publicTls?: boolean | undefined;
  peerListen?: string | undefined;
  advertiseAddress?: string | undefined;
  tlsCa?: string | undefined;
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
  nodeId?: string | undefined;
  capacityBytes?: number | undefined;
  peers?: readonly string[] | undefined;
  peerAllow?: readonly string[] | undefined;
  peerDropAfterMs?: number | undefined;
  idleTimeoutMs?: number | undefined;
  peerWindowBytes?: number | undefined;
  peerConnections?: number | undefined;
  stagingBudgetBytes?: number | undefined;
  replicationBandwidthBytesPerSecond?: number | undefined;
  shutdownGraceMs?: number | undefined;
  /** HOST:PORT, or "off"; default off. */
  opsListen?: string | undefined;
  /** Default true when opsListen is given. */
  opsListenRequired?: boolean | undefined;
}

/** Merges defaults and validates; throws ConfigError naming the first bad field. */
export function resolveNodeConfig(raw: RawNodeConfig): NodeConfig {
  if (!raw.dataDir) throw new ConfigError("data-dir", "is required (where artifacts and the index live)");
  if ((raw.tlsCert === undefined) !== (raw.tlsKey === undefined)) {
    throw new ConfigError("tls-cert", "--tls-cert and --tls-key go together (files from `granary certs issue`)");
  }
  if (raw.tlsCa !== undefined && raw.tlsCert === undefined) {
    throw new ConfigError("tls-ca", "the peer plane needs this node's --tls-cert and --tls-key as well as --tls-ca");
  }
  const tlsFiles = [raw.tlsCa, raw.tlsCert, raw.tlsKey].filter((v) => v !== undefined).length;
  if (raw.publicTls && (!raw.tlsCert || !raw.tlsKey)) {
    throw new ConfigError("public-tls", "needs --tls-cert and --tls-key");
  }
  const peers = (raw.peers ?? []).map((p) => p.trim()).filter((p) => p !== "");
  for (const p of peers) {
    if (!/^https:\/\/[^/]+:\d+\/?$/.test(p)) throw new ConfigError("peers", `peer address must look like https://HOST:PORT, got "${p}"`);
  }
  if (peers.length > 0 && tlsFiles !== 3) throw new ConfigError("peers", "peers need the mesh's mTLS material (--tls-ca, --tls-cert, --tls-key)");
  const idleTimeoutMs = nonNegativeInt("idle-timeout-ms", raw.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS);
  if (idleTimeoutMs < 100) throw new ConfigError("idle-timeout-ms", "must be at least 100");
  const abs = (p: string | undefined): string | undefined => (p === undefined ? undefined : isAbsolute(p) ? p : resolve(p));
  return {
    dataDir: abs(raw.dataDir)!,
    listen: parseHostPort("listen", raw.listen ?? DEFAULT_LISTEN),
    publicTls: raw.publicTls ?? false,
    peerListen: parseHostPort("peer-listen", raw.peerListen ?? DEFAULT_PEER_LISTEN),
    advertiseAddress: raw.advertiseAddress,
    tlsCa: abs(raw.tlsCa),
    tlsCert: abs(raw.tlsCert),
    tlsKey: abs(raw.tlsKey),
    nodeId: raw.nodeId,
    capacityBytes: nonNegativeInt("capacity", raw.capacityBytes ?? 0),
    peers,
    peerAllow: raw.peerAllow ?? [],
    peerDropAfterMs: nonNegativeInt("peer-drop-after-ms", raw.peerDropAfterMs ?? DEFAULT_PEER_DROP_AFTER_MS),
    idleTimeoutMs,
    peerWindowBytes: nonNegativeInt("peer-window-bytes", raw.peerWindowBytes ?? DEFAULT_PEER_WINDOW_BYTES),
    peerConnections: peerConnections(raw.peerConnections ?? DEFAULT_PEER_CONNECTIONS),
    stagingBudgetBytes: nonNegativeInt("staging-budget-bytes", raw.stagingBudgetBytes ?? DEFAULT_STAGING_BUDGET_BYTES),
    replicationBandwidthBytesPerSecond: nonNegativeInt(
      "replication-bandwidth-bytes-per-second",
      raw.replicationBandwidthBytesPerSecond ?? 0,
    ),
    shutdownGraceMs: nonNegativeInt("shutdown-grace-ms", raw.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS),
    opsListen: raw.opsListen === undefined || raw.opsListen.trim() === "off" ? undefined : parseHostPort("ops-listen", raw.opsListen),
    opsListenRequired: raw.opsListenRequired ?? true,
  };
}
