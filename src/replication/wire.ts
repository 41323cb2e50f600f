/** Wire enum values the replication engine sends (kept here so it needs no api/ import). */
import { Kind as WireKind, type Manifest as WireManifest } from "../gen/granary/artifact/v1/artifact_pb.js";
import type { Kind, Manifest } from "../store/types.js";

export function kindToWireNumber(kind: Kind): WireKind {
  return kind === "cas" ? WireKind.CAS : WireKind.KV;
}

/** A manifest from a peer, or an Error naming what is wrong with it. */
export function manifestFromPeer(m: WireManifest | undefined): Manifest | Error {
  if (!m) return new Error("manifest missing");
  const kind = m.kind === WireKind.CAS ? "cas" : m.kind === WireKind.KV ? "kv" : undefined;
  if (!kind) return new Error(`manifest of ${m.key} has kind ${m.kind}`);
  if (m.size > BigInt(Number.MAX_SAFE_INTEGER)) return new Error(`manifest of ${m.key} has size ${m.size} > 2^53-1`);
  return { namespace: m.namespace, kind, key: m.key, size: Number(m.size), digest: m.digest, version: m.version, origin: m.origin };
}
