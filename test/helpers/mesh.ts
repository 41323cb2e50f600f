/**
 * In-process mesh nodes for integration tests: a real dev PKI (openssl), real mTLS listeners
 * on port 0, real data dirs in temp folders. Child-process nodes are in child-node.ts.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { ArtifactService, Kind, PutRequestSchema, type PutRequest } from "../../src/gen/granary/artifact/v1/artifact_pb.js";
import { initCa, issueCert } from "../../src/certs/dev-pki.js";
import { formatHostPort, resolveNodeConfig, type RawNodeConfig } from "../../src/node/config.js";
import { GranaryNode, type NodeHooks } from "../../src/node/granary-node.js";
import { silentLogger, type Logger } from "../../src/telemetry/logger.js";
import type { PeerTlsPem } from "../../src/transport/peer-channel.js";
import { connectPublic, type PublicConnection } from "../../src/transport/public-client.js";
import { sha256Hex } from "./data.js";

export interface Pki {
  readonly dir: string;
  readonly ca: string;
  cert(name: string): Promise<{ cert: string; key: string }>;
}

export async function makePki(dir: string): Promise<Pki> {
  const ca = await initCa({ dir });
  const issued = new Map<string, { cert: string; key: string }>();
  return {
    dir,
    ca: ca.certFile,
    async cert(name) {
      let c = issued.get(name);
      if (!c) {
        const out = await issueCert({ dir, name });
        c = { cert: out.certFile, key: out.keyFile };
        issued.set(name, c);
      }
      return c;
    },
  };
}

/** PEM material to dial peers as node `name` (a raw peer client in a test or a chaos scenario). */
export async function peerTlsPem(pki: Pki, name: string): Promise<PeerTlsPem & { ca: Buffer; cert: Buffer; key: Buffer }> {
  const c = await pki.cert(name);
  return { ca: readFileSync(pki.ca), cert: readFileSync(c.cert), key: readFileSync(c.key) };
}

export interface MeshNodeOptions {
  readonly name: string;
  readonly pki: Pki;
  readonly root: string;
  readonly peers?: readonly string[];
  readonly config?: Partial<RawNodeConfig>;
  readonly hooks?: NodeHooks;
  readonly log?: Logger;
  /** Reuse a data dir (restart). */
  readonly dataDir?: string;
}

export async function startMeshNode(o: MeshNodeOptions): Promise<GranaryNode> {
  const c = await o.pki.cert(o.name);
  const config = resolveNodeConfig({
    dataDir: o.dataDir ?? join(o.root, o.name),
    listen: "127.0.0.1:0",
    peerListen: "127.0.0.1:0",
    tlsCa: o.pki.ca,
    tlsCert: c.cert,
    tlsKey: c.key,
    nodeId: o.name,
    peers: o.peers ?? [],
    idleTimeoutMs: 10_000,
    shutdownGraceMs: 2000,
    ...o.config,
  });
  return GranaryNode.start(config, o.log ?? silentLogger(), o.hooks ?? {});
}

export function publicClient(node: GranaryNode): PublicConnection {
  return connectPublic({ server: `http://${formatHostPort(node.publicAddress)}` });
}

export async function* putRequests(ns: string, kind: Kind, key: string, body: Uint8Array, chunk = 1 << 20): AsyncGenerator<PutRequest> {
  yield create(PutRequestSchema, { msg: { case: "header", value: { namespace: ns, kind, key, size: BigInt(body.length) } } });
  for (let o = 0; o < body.length; o += chunk) yield create(PutRequestSchema, { msg: { case: "chunk", value: body.subarray(o, o + chunk) } });
}

/** Puts a CAS body through the public API; returns its digest. */
export async function putCas(conn: PublicConnection, ns: string, body: Uint8Array): Promise<string> {
  const digest = sha256Hex([body]);
  await conn.client(ArtifactService).put(putRequests(ns, Kind.CAS, digest, body));
  return digest;
}

/** Resolves once `node` holds every CAS digest of `want`; re-checks on every feed change (no polling by time). */
export async function waitForArtifacts(node: GranaryNode, ns: string, want: readonly string[], signal?: AbortSignal): Promise<void> {
  const deadline = signal ?? AbortSignal.timeout(120_000);
  for (;;) {
    const head = node.store.feedHead();
    const missing = want.filter((d) => !node.store.stat({ namespace: ns, kind: "cas", key: d }));
    if (missing.length === 0) return;
    await node.store.waitForFeed(head, deadline);
  }
}

/** Resolves once the node reports ready. */
export function waitReady(node: GranaryNode, signal: AbortSignal = AbortSignal.timeout(120_000)): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (node.readiness.isReady()) return resolve();
    const off = node.readiness.onChange(() => {
      if (node.readiness.isReady()) {
        off();
        resolve();
      }
    });
    signal.addEventListener(
      "abort",
      () => {
        off();
        reject(new Error(`node ${node.store.nodeId} not ready: ${node.readiness.reason()}`));
      },
      { once: true },
    );
  });
}
