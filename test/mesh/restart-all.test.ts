/**
 * The incident's failure mode: every node of a mesh restarted at once. Real child processes,
 * kill -9 on all three, restart together: all must come back Ready by themselves, with all
 * data everywhere.
 */
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { bytes } from "../helpers/data.js";
import { startChildNode, type ChildNode } from "../helpers/child-node.js";
import { makePki, putCas, type Pki } from "../helpers/mesh.js";
import { freePorts } from "../helpers/ports.js";
import { tempDir } from "../helpers/temp.js";
import { ArtifactService, Kind } from "../../src/gen/granary/artifact/v1/artifact_pb.js";
import { connectPublic } from "../../src/transport/public-client.js";

let root: string;
let cleanup: () => Promise<void>;
let pki: Pki;
const nodes: ChildNode[] = [];

beforeAll(async () => {
  const t = await tempDir("granary-restart-");
  root = t.path;
  cleanup = t.cleanup;
  pki = await makePki(join(root, "pki"));
});

afterAll(async () => {
  await Promise.all(nodes.map((n) => n.kill("SIGKILL")));
  await cleanup?.();
});

it("three nodes with data, all killed -9 and restarted at once, all become Ready with all data", async () => {
  const names = ["r1", "r2", "r3"];
  const ports = await freePorts(6);
  const peerAddr = (i: number): string => `https://127.0.0.1:${ports[3 + i]}`;
  const args = async (i: number): Promise<string[]> => {
    const c = await pki.cert(names[i]!);
    return [
      "--data-dir", join(root, names[i]!),
      "--node-id", names[i]!,
      "--listen", `127.0.0.1:${ports[i]}`,
      "--peer-listen", `127.0.0.1:${ports[3 + i]}`,
      "--tls-ca", pki.ca, "--tls-cert", c.cert, "--tls-key", c.key,
      "--peers", [0, 1, 2].filter((j) => j !== i).map(peerAddr).join(","),
      "--idle-timeout-ms", "5000",
    ];
  };
  const startAll = async (): Promise<ChildNode[]> => Promise.all([0, 1, 2].map(async (i) => startChildNode(await args(i))));
  let mesh = await startAll();
  nodes.push(...mesh);
  await Promise.all(mesh.map((n) => n.waitReady()));
  const digests: string[] = [];
  for (const [i, n] of mesh.entries()) {
    const conn = connectPublic({ server: n.publicAddress });
    try {
      for (let k = 0; k < 20; k++) digests.push(await putCas(conn, "restart", bytes(i * 100 + k, 30_000 + k * 1000)));
    } finally {
      conn.close();
    }
  }
  await Promise.all(mesh.map((n) => n.kill("SIGKILL")));
  nodes.length = 0;
  mesh = await startAll();
  nodes.push(...mesh);
  await Promise.all(mesh.map((n) => n.waitReady()));
  // Every node has every artifact (what was not yet replicated before the kill arrives now).
  for (const n of mesh) {
    const conn = connectPublic({ server: n.publicAddress });
    try {
      const client = conn.client(ArtifactService);
      for (;;) {
        const res = await client.findMissing({ namespace: "restart", digests });
        if (res.missingDigests.length === 0) break;
        // Not there yet: wait for the node's next status change (its feed head moves).
        const { NodeService } = await import("../../src/gen/granary/node/v1/node_pb.js");
        const watch = conn.client(NodeService).watchStatus({ intervalMs: 200 });
        for await (const _ of watch) break;
      }
      const s = await client.stat({ refs: digests.map((key) => ({ namespace: "restart", kind: Kind.CAS, key })) });
      expect(s.results.every((r) => r.manifest !== undefined)).toBe(true);
    } finally {
      conn.close();
    }
  }
});
