/**
 * Found by the reliability suite (chaos scenario 7, churn, full size): a node refilling after a
 * wipe bootstraps from two peers, and a body is fetched by whichever link claims it first (the
 * node-wide single-flight); the other link waits for that fetch. When the first link's peer
 * stalled (SIGSTOP) its fetches failed on the idle deadline — and the waiting link counted
 * every one of them as its own failure: both passes unclean (thousands of bodies each), and
 * the pass from the healthy peer, abandoned by its no-progress watchdog, still waited for the
 * other link's flights. Here A stalls every body it is asked for, after C's link to A has
 * claimed them all; C's pass from B must fetch them itself and be clean the first time.
 */
import { getEventListeners } from "node:events";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GranaryNode } from "../../src/node/granary-node.js";
import { followerWait } from "../../src/replication/single-flight.js";
import { Failpoints } from "../../src/util/failpoints.js";
import { bytes } from "../helpers/data.js";
import { eventLog } from "../helpers/log-events.js";
import { makePki, publicClient, putCas, startMeshNode, waitForArtifacts, type Pki } from "../helpers/mesh.js";
import { tempDir } from "../helpers/temp.js";

let root: { path: string; cleanup: () => Promise<void> };
let pki: Pki;
const nodes: GranaryNode[] = [];
const releases: Array<() => void> = [];
beforeAll(async () => {
  root = await tempDir("granary-flight-");
  pki = await makePki(join(root.path, "pki"));
});
afterAll(async () => {
  for (const r of releases) r();
  for (const n of nodes.reverse()) await n.close();
  await root.cleanup();
});

async function putAll(node: GranaryNode, bodies: readonly Uint8Array[]): Promise<string[]> {
  const conn = publicClient(node);
  try {
    const out: string[] = [];
    for (const b of bodies) out.push(await putCas(conn, "default", b));
    return out;
  } finally {
    conn.close();
  }
}

/**
 * A holds `bodies`; B holds them as replicated from A (the same manifests: one flight per
 * artifact across C's two links). Then A stalls every body it is asked for until `releaseA`
 * (or the test's end), and B's manifest pages wait until C's link to A has asked A for one.
 */
async function twoPeers(tag: string, bodies: readonly Uint8Array[]): Promise<{ a: GranaryNode; b: GranaryNode; want: string[]; fpA: Failpoints; releaseA: () => void }> {
  const fpA = new Failpoints();
  const fpB = new Failpoints();
  const a = await startMeshNode({ name: `a${tag}`, pki, root: root.path, hooks: { failpoints: fpA } });
  nodes.push(a);
  const want = await putAll(a, bodies);
  const b = await startMeshNode({ name: `b${tag}`, pki, root: root.path, peers: [a.peerAddress], hooks: { failpoints: fpB } });
  nodes.push(b);
  await waitForArtifacts(b, "default", want, AbortSignal.timeout(60_000));
  let aAsked!: () => void;
  const aAskedOnce = new Promise<void>((r) => (aAsked = r));
  let releaseA!: () => void;
  const aHold = new Promise<void>((r) => releases.push((releaseA = r)));
  fpA.set("peer.read-bodies.body", () => {
    aAsked();
    return aHold;
  });
  fpB.set("peer.list-manifests.page", () => aAskedOnce);
  return { a, b, want, fpA, releaseA };
}

describe("a body another link was fetching", () => {
  it("is fetched from this link's own peer when that link's fetch fails, and the pass is clean", async () => {
    const bodies = Array.from({ length: 40 }, (_, i) => bytes(7000 + i, 4096 + 997 * i));
    const { a, b, want } = await twoPeers("", bodies);
    const events = eventLog();
    const c = await startMeshNode({
      name: "c",
      pki,
      root: root.path,
      peers: [a.peerAddress, b.peerAddress],
      log: events.log,
      config: { idleTimeoutMs: 1500 },
      hooks: { replication: { retry: { initialMs: 50, maxMs: 500, multiplier: 2, jitter: 0 } } },
    });
    nodes.push(c);
    await waitForArtifacts(c, "default", want, AbortSignal.timeout(60_000));
    // B's link applied them itself in its first pass, clean; before the fix that pass failed
    // the 40 bodies A's link had claimed.
    const fromB = (l: Record<string, unknown>): boolean => l["peer"] === b.peerAddress;
    const done = await events.waitFor((l) => fromB(l) && l["event"] === "replication.pass_done", AbortSignal.timeout(60_000));
    expect(done).toMatchObject({ pass: 1, applied: bodies.length });
    expect(events.lines.filter((l) => fromB(l) && (l["event"] === "replication.pass_retry" || l["event"] === "replication.body_failed"))).toEqual([]);
    // A's link did fail them (its peer stalled): the failure stayed with it.
    await events.waitFor((l) => l["peer"] === a.peerAddress && l["event"] === "replication.body_failed", AbortSignal.timeout(60_000));
  });
});

describe("a link to a slow peer", () => {
  it("claims only the bodies its streams are fetching: a link to a healthy peer takes the rest meanwhile", async () => {
    // 600 small bodies: three stream tasks (batches of at most 256); one stream per link.
    const bodies = Array.from({ length: 600 }, (_, i) => bytes(9000 + i, 1024 + i));
    // A stalls its first batch far inside C's idle deadline.
    const { a, b, want, fpA, releaseA } = await twoPeers("2", bodies);
    const events = eventLog();
    const c = await startMeshNode({
      name: "c2",
      pki,
      root: root.path,
      peers: [a.peerAddress, b.peerAddress],
      log: events.log,
      config: { idleTimeoutMs: 120_000 },
      hooks: { replication: { streams: 1 } },
    });
    nodes.push(c);
    // While A still holds its first batch, B's link fetches everything else. Before, C's link
    // to A claimed all 600 when its page arrived and B's link waited for A's idle deadline.
    const held = (): number => want.filter((d) => c.store.stat({ namespace: "default", kind: "cas", key: d })).length;
    const signal = AbortSignal.timeout(60_000);
    for (let head = c.store.feedHead(); held() < want.length - 256; head = c.store.feedHead()) await c.store.waitForFeed(head, signal);
    expect(fpA.count("peer.read-bodies.body")).toBe(1);
    releaseA();
    await waitForArtifacts(c, "default", want, AbortSignal.timeout(60_000));
    const fromB = (l: Record<string, unknown>): boolean => l["peer"] === b.peerAddress;
    expect(await events.waitFor((l) => fromB(l) && l["event"] === "replication.pass_done", AbortSignal.timeout(60_000))).toMatchObject({ pass: 1 });
  });
});

describe("followerWait", () => {
  it("rejects as soon as the follower's signal aborts and leaves no listener either way", async () => {
    const ac = new AbortController();
    const never = new Promise<number>(() => undefined);
    const waiting = followerWait(never, ac.signal);
    expect(getEventListeners(ac.signal, "abort")).toHaveLength(1);
    ac.abort(new Error("pass abandoned"));
    await expect(waiting).rejects.toThrow("pass abandoned");

    const ac2 = new AbortController();
    await expect(followerWait(Promise.resolve(7), ac2.signal)).resolves.toBe(7);
    await expect(followerWait(Promise.reject(new Error("leader failed")), ac2.signal)).rejects.toThrow("leader failed");
    expect(getEventListeners(ac2.signal, "abort")).toHaveLength(0);
  });
});
