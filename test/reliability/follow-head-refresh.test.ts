/**
 * Found by the reliability suite (chaos scenario 13, soak): a follower thousands of changes
 * behind reported a lag of a few, because Follow pages wait in the connection's buffers while
 * their bodies are fetched and the head each page carries is as old as that backlog. The link
 * now asks the peer for its head (Hello) while following. Here B applies slowly (a store
 * failpoint serialises its applies) while A takes a burst of writes: B must report A's real
 * head while it is still behind.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GranaryNode } from "../../src/node/granary-node.js";
import { Failpoints } from "../../src/util/failpoints.js";
import { bytes } from "../helpers/data.js";
import { makePki, publicClient, putCas, startMeshNode, waitForArtifacts, waitReady, type Pki } from "../helpers/mesh.js";
import { tempDir } from "../helpers/temp.js";

describe("follow reports the peer's real head while behind", () => {
  let root: { path: string; cleanup: () => Promise<void> };
  let pki: Pki;
  const nodes: GranaryNode[] = [];
  beforeAll(async () => {
    root = await tempDir("granary-head-");
    pki = await makePki(`${root.path}/pki`);
  });
  afterAll(async () => {
    for (const n of nodes.reverse()) await n.close();
    await root.cleanup();
  });

  it("a slow follower's lag counts the changes it has not applied", async () => {
    const a = await startMeshNode({ name: "a", pki, root: root.path });
    nodes.push(a);
    // B's applies run one at a time, 60 ms each (fault injection, not synchronisation).
    const fp = new Failpoints();
    let chain = Promise.resolve();
    fp.set("store.put.before-index", () => {
      const mine = chain.then(() => new Promise<void>((r) => setTimeout(r, 60)));
      chain = mine;
      return mine;
    });
    const b = await startMeshNode({ name: "b", pki, root: root.path, peers: [a.peerAddress], hooks: { failpoints: fp, replication: { headRefreshMs: 100 } } });
    nodes.push(b);
    await waitReady(b);
    const conn = publicClient(a);
    const digests: string[] = [];
    for (let i = 0; i < 100; i++) digests.push(await putCas(conn, "default", bytes(1000 + i, 2048)));
    conn.close();
    const head = a.store.feedHead();
    // Watch B apply, one feed change at a time; note whether it reported A's head while three quarters behind or more.
    let sawRealHeadWhileBehind = false;
    const signal = AbortSignal.timeout(60_000);
    for (let i = 0; i < 10_000; i++) {
      const link = b.replication!.allLinks()[0]!;
      if (link.stats.headSeq >= head && link.stats.cursorSeq < head * 0.75) sawRealHeadWhileBehind = true;
      if (digests.every((d) => b.store.stat({ namespace: "default", kind: "cas", key: d }))) break;
      await b.store.waitForFeed(b.store.feedHead(), signal);
    }
    await waitForArtifacts(b, "default", digests, signal);
    expect(sawRealHeadWhileBehind).toBe(true);
  });
});
