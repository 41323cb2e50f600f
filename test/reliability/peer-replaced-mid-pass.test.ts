/**
 * Found by the reliability suite (chaos scenario 7, churn, full size): a node bootstrapping
 * from a peer that was wiped and restarted mid-pass (a new incarnation at the same address)
 * retried its pass with the Hello of the old incarnation, walked the new one cleanly, had its
 * Follow refused (incarnation changed), bootstrapped again with the same stale Hello, and so
 * on for as long as it ran: ~70 % of a core on both nodes, the link never following. Here A's
 * first manifest page is held until A is closed; A comes back at the same address with a new
 * data dir; B must greet the new A and follow it.
 */
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { GranaryNode } from "../../src/node/granary-node.js";
import { Failpoints } from "../../src/util/failpoints.js";
import { bytes } from "../helpers/data.js";
import { eventLog } from "../helpers/log-events.js";
import { makePki, publicClient, putCas, startMeshNode, waitForArtifacts, type Pki } from "../helpers/mesh.js";
import { freePorts } from "../helpers/ports.js";
import { tempDir } from "../helpers/temp.js";

let root: { path: string; cleanup: () => Promise<void> };
let pki: Pki;
const nodes: GranaryNode[] = [];
beforeAll(async () => {
  root = await tempDir("granary-replaced-");
  pki = await makePki(join(root.path, "pki"));
});
afterAll(async () => {
  for (const n of nodes.reverse()) await n.close();
  await root.cleanup();
});

async function putSome(node: GranaryNode, seed: number, n: number): Promise<string[]> {
  const conn = publicClient(node);
  try {
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push(await putCas(conn, "default", bytes(seed + i, 4096 + i)));
    return out;
  } finally {
    conn.close();
  }
}

it("a peer replaced by a new incarnation during a bootstrap pass is greeted again and followed", async () => {
  const [peerPort] = await freePorts(1);
  const peerListen = `127.0.0.1:${peerPort}`;
  // A's first manifest page is held until A closes (then fails): B's first pass is mid-walk.
  const fp = new Failpoints();
  let pageHeld!: () => void;
  const held = new Promise<void>((r) => (pageHeld = r));
  let releasePage!: (e: Error) => void;
  const page = new Promise<void>((_, reject) => (releasePage = reject));
  page.catch(() => undefined);
  fp.set("peer.list-manifests.page", () => {
    pageHeld();
    return page;
  });
  const a1 = await startMeshNode({ name: "a", pki, root: root.path, dataDir: join(root.path, "a1"), config: { peerListen }, hooks: { failpoints: fp } });
  await putSome(a1, 100, 5);
  const events = eventLog();
  const b = await startMeshNode({
    name: "b",
    pki,
    root: root.path,
    peers: [a1.peerAddress],
    log: events.log,
    hooks: { replication: { retry: { initialMs: 50, maxMs: 500, multiplier: 2, jitter: 0 } } },
  });
  nodes.push(b);
  await held;
  const firstIncarnation = a1.store.incarnation;
  expect(b.replication!.allLinks()[0]!.stats.incarnation).toBe(firstIncarnation);

  // A is wiped and restarted at the same address: a new data dir is a new incarnation.
  const closing = a1.close();
  releasePage(new Error("node closing"));
  await closing;
  const a2 = await startMeshNode({ name: "a", pki, root: root.path, dataDir: join(root.path, "a2"), config: { peerListen } });
  nodes.push(a2);
  expect(a2.store.incarnation).not.toBe(firstIncarnation);
  const before = await putSome(a2, 200, 5);

  // B follows the new A: a transition to following while its link knows A's new incarnation.
  // Before the fix the link kept A's first incarnation and never got here.
  const link = b.replication!.allLinks()[0]!;
  await events.waitFor((l) => l["event"] === "replication.phase" && l["to"] === "following" && link.stats.incarnation === a2.store.incarnation, AbortSignal.timeout(60_000));
  await waitForArtifacts(b, "default", before, AbortSignal.timeout(60_000));
  // A write after B follows reaches it through the feed, and the link stays following.
  const passes = link.stats.passes;
  const after = await putSome(a2, 300, 3);
  await waitForArtifacts(b, "default", after, AbortSignal.timeout(60_000));
  expect(link.stats.phase).toBe("following");
  expect(link.stats.passes).toBe(passes);
});
