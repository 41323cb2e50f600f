/**
 * Conversions between wire messages (src/gen) and store types, with the checks the RPC
 * boundary owes the store: uint64 values above 2^53 never silently lose precision.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { Kind as WireKind, ManifestSchema, type Manifest as WireManifest } from "../gen/granary/artifact/v1/artifact_pb.js";
import type { Kind, Manifest } from "../store/types.js";

export function kindFromWire(kind: WireKind, field = "kind"): Kind {
  switch (kind) {
    case WireKind.CAS:
      return "cas";
    case WireKind.KV:
      return "kv";
    default:
      throw new ConnectError(`${field} must be KIND_CAS or KIND_KV`, Code.InvalidArgument);
  }
}

export function kindToWire(kind: Kind): WireKind {
  return kind === "cas" ? WireKind.CAS : WireKind.KV;
}

/** A uint64 from the wire as a safe JS number, or INVALID_ARGUMENT naming the field. */
export function safeNumber(value: bigint, field: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ConnectError(`${field} ${value} is larger than 2^53-1`, Code.InvalidArgument);
  }
  return Number(value);
}

export function manifestToWire(m: Manifest): WireManifest {
  return create(ManifestSchema, {
    namespace: m.namespace,
    kind: kindToWire(m.kind),
    key: m.key,
    size: BigInt(m.size),
    digest: m.digest,
    version: m.version,
    origin: m.origin,
  });
}

export function manifestFromWire(m: WireManifest | undefined, field = "manifest"): Manifest {
  if (!m) throw new ConnectError(`${field} is missing`, Code.InvalidArgument);
  return {
    namespace: m.namespace,
    kind: kindFromWire(m.kind, `${field}.kind`),
    key: m.key,
    size: safeNumber(m.size, `${field}.size`),
    digest: m.digest,
    version: m.version,
    origin: m.origin,
  };
}
