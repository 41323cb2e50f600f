/**
 * The replication mesh, in-process: real mTLS listeners on port 0, real stores in temp dirs,
 * real grpc-js peer connections. Synchronisation is by events (feed changes, readiness),
 * never by sleeping; failpoints inject the faults.
 */
import { describe, expect, it } from "vitest";
import { ArtifactService, Kind } from "../../src/gen/granary/artifact/v1/artifact_pb.js";
import type { GranaryNode } from "../../src/node/granary-node.js";
import { Failpoints } from "../../src/util/failpoints.js";
import { DEFAULT_LANES } from "../../src/store/options.js";
import { bytes } from "../helpers/data.js";
import { freePorts } from "../helpers/ports.js";
import { publicClient, putCas, waitForArtifacts, waitReady } from "../helpers/mesh.js";
import { useMeshFixture } from "../helpers/mesh-fixture.js";
import { eventLog } from "../helpers/log-events.js";

const { node, uniq, running } = useMeshFixture("granary-mesh-");

async function stop(n: GranaryNode): Promise<void> {
  running.splice(running.indexOf(n), 1);
  await n.close();
}

describe("live replication", () => {
  it("delivers a write on any node to every peer of a full mesh", async () => {
    const a = await node(uniq("a"));
    const b = await node(uniq("b"), [a]);
    const c = await node(uniq("c"), [a, b]);
    await Promise.all([waitReady(a), waitReady(b), waitReady(c)]);
    const ca = publicClient(a);
    const cc = publicClient(c);
    try {
      const d1 = await putCas(ca, "live", bytes(1, 10_000));
      const d2 = await putCas(cc, "live", bytes(2, 3 << 20));
      for (const n of [a, b, c]) await waitForArtifacts(n, "live", [d1, d2]);
    } finally {
      ca.close();
      cc.close();
    }
  });

  it("relays A -> B -> C when C may not talk to A", async () => {
    const names = { a: uniq("a"), b: uniq("b"), c: uniq("c") };
    const a = await node(names.a, [], { config: { peerAllow: [names.b] } });
    const b = await node(names.b, [a]);
    const c = await node(names.c, [b], { config: { peerAllow: [names.b] } });
    await Promise.all([waitReady(b), waitReady(c)]);
    const ca = publicClient(a);
    try {
      const d = await putCas(ca, "relay", bytes(3, 50_000));
      await waitForArtifacts(c, "relay", [d]);
      expect(c.store.stat({ namespace: "relay", kind: "cas", key: d })?.origin).toBe(names.a);
    } finally {
      ca.close();
    }
  });

  it("a node added with one peer listed ends up exchanging writes with every node", async () => {
    const a = await node(uniq("a"));
    const b = await node(uniq("b"), [a]);
    const c = await node(uniq("c"), [b]);
    await Promise.all([waitReady(a), waitReady(b), waitReady(c)]);
    // c learns a through b's Hello answer; a learns c when c says Hello to it.
    const ca = publicClient(a);
    const cc = publicClient(c);
    try {
      const fromA = await putCas(ca, "join", bytes(4, 1000));
      await waitForArtifacts(c, "join", [fromA]);
      // Take b out: a and c must now talk directly.
      await stop(b);
      const fromC = await putCas(cc, "join", bytes(5, 1000));
      await waitForArtifacts(a, "join", [fromC]);
      const fromA2 = await putCas(ca, "join", bytes(6, 1000));
      await waitForArtifacts(c, "join", [fromA2]);
    } finally {
      ca.close();
      cc.close();
    }
  });
});

describe("fresh-node bootstrap", () => {
  it("fills a fresh node with 2,000+ mixed artifacts (incl. 64 MiB ones) over one connection, 16 streams", async () => {
    const a = await node(uniq("src"));
    const ca = publicClient(a);
    const digests: string[] = [];
    try {
      // 2,000 small, 40 medium, 2 large (64 MiB and 65 MiB + 3 bytes).
      const small = Array.from({ length: 2000 }, (_, i) => bytes(1000 + i, 64 + ((i * 37) % 4000)));
      for (let i = 0; i < small.length; i += 50) {
        digests.push(...(await Promise.all(small.slice(i, i + 50).map((b) => putCas(ca, "boot", b)))));
      }
      for (let i = 0; i < 40; i++) digests.push(await putCas(ca, "boot", bytes(5000 + i, 200_000 + i * 40_000)));
      digests.push(await putCas(ca, "boot", bytes(9001, 64 << 20)));
      digests.push(await putCas(ca, "boot", bytes(9002, (65 << 20) + 3)));
    } finally {
      ca.close();
    }
    const sessionsBefore = a.peerListener!.sessionCount();
    const fresh = await node(uniq("fresh"), [a], { config: { stagingBudgetBytes: 96 << 20 } });
    await waitReady(fresh);
    await waitForArtifacts(fresh, "boot", digests);
    for (const d of digests) {
      const m = fresh.store.stat({ namespace: "boot", kind: "cas", key: d });
      expect(m?.digest).toBe(d);
    }
    // Read back the large ones byte for byte through the fresh node's public API.
    const cf = publicClient(fresh);
    try {
      for (const d of digests.slice(-2)) {
        const h = await import("node:crypto").then((c) => c.createHash("sha256"));
        for await (const r of cf.client(ArtifactService).get({ namespace: "boot", kind: Kind.CAS, key: d })) if (r.msg.case === "chunk") h.update(r.msg.value);
        expect(h.digest("hex")).toBe(d);
      }
    } finally {
      cf.close();
    }
    const link = fresh.replication!.allLinks()[0]!;
    // All streams of the bootstrap ran on ONE connection, up to 16 at once (small batches use
    // all 16; large bodies hold one of the store's writer lanes each, so at most 4 of them).
    expect(link.clientCounters().peakInFlight).toBeGreaterThan(DEFAULT_LANES + 1);
    expect(link.clientCounters().peakInFlight).toBeLessThanOrEqual(16 + 1);
    expect(fresh.replication!.bodySlots.stats().peakHeld).toBe(DEFAULT_LANES);
    expect(a.peerListener!.sessionCount() - sessionsBefore).toBe(1);
    // The staging budget was never exceeded except by a body larger than the budget alone.
    const st = fresh.replication!.staging.stats();
    expect(st.peakReservedBytes).toBeLessThanOrEqual(96 << 20);
    // One clean pass, nothing retried, no error of any kind on the link.
    expect(link.stats.failedCount).toBe(0);
    expect(link.stats.passes).toBe(1);
    expect(link.stats.lastError).toBe("");
    expect(link.stats.phase).toBe("following");
  });

  it("a failed body is counted, the pass continues, is retried, and converges", async () => {
    const fp = new Failpoints();
    const a = await node(uniq("src"), [], { hooks: { failpoints: fp } });
    const ca = publicClient(a);
    let victim = "";
    const digests: string[] = [];
    try {
      for (let i = 0; i < 30; i++) digests.push(await putCas(ca, "fail1", bytes(300 + i, 2 << 20)));
      victim = digests[7]!;
    } finally {
      ca.close();
    }
    let failures = 0;
    fp.set("peer.read-bodies.chunk", (ctx) => {
      if (ctx["key"] === victim && ctx["offset"] === 0 && failures === 0) {
        failures++;
        throw new Error("injected: body read failed");
      }
    });
    const fresh = await node(uniq("fresh"), [a], { hooks: { replication: { retry: { initialMs: 10, maxMs: 50, multiplier: 2, jitter: 0 } } } });
    await waitReady(fresh);
    await waitForArtifacts(fresh, "fail1", digests);
    const link = fresh.replication!.allLinks()[0]!;
    expect(failures).toBe(1);
    expect(link.stats.failedCount).toBe(1);
    expect(link.stats.passes).toBe(2);
  });

  it("fetches an artifact offered by two peers once", async () => {
    const fpA = new Failpoints();
    const fpB = new Failpoints();
    const a = await node(uniq("a"), [], { hooks: { failpoints: fpA } });
    const b = await node(uniq("b"), [a], { hooks: { failpoints: fpB } });
    await waitReady(b);
    const ca = publicClient(a);
    const digests: string[] = [];
    try {
      for (let i = 0; i < 200; i++) digests.push(await putCas(ca, "once", bytes(700 + i, 20_000)));
    } finally {
      ca.close();
    }
    await waitForArtifacts(b, "once", digests);
    const served = new Map<string, number>();
    const count = (ctx: Readonly<Record<string, unknown>>): void => {
      const k = String(ctx["key"]);
      served.set(k, (served.get(k) ?? 0) + 1);
    };
    fpA.set("peer.read-bodies.body", count);
    fpB.set("peer.read-bodies.body", count);
    const c = await node(uniq("c"), [a, b]);
    await waitReady(c);
    await waitForArtifacts(c, "once", digests);
    for (const d of digests) expect(served.get(d), d).toBe(1);
  });

  it("a store error aborts the pass (no space), which is retried once space allows", async () => {
    const a = await node(uniq("src"));
    const ca = publicClient(a);
    const digests: string[] = [];
    try {
      for (let i = 0; i < 8; i++) digests.push(await putCas(ca, "nospace", bytes(800 + i, 1 << 20)));
    } finally {
      ca.close();
    }
    const log = eventLog();
    const fresh = await node(uniq("small"), [a], {
      config: { capacityBytes: 3 << 20 },
      log: log.log,
      hooks: { replication: { retry: { initialMs: 10, maxMs: 20, multiplier: 1, jitter: 0 } } },
    });
    const aborted = await log.waitFor((e) => e["event"] === "replication.pass_aborted");
    expect(String(aborted["cause"])).toMatch(/space|capacity/i);
    expect(fresh.readiness.isReady()).toBe(false);
  });
});

describe("restart and re-sync", () => {
  it("a restarted follower resumes from its cursor and fetches only the delta", async () => {
    const fp = new Failpoints();
    const a = await node(uniq("a"), [], { hooks: { failpoints: fp } });
    const bName = uniq("b");
    let b = await node(bName, [a]);
    const ca = publicClient(a);
    try {
      const first = await Promise.all(Array.from({ length: 50 }, (_, i) => putCas(ca, "delta", bytes(1100 + i, 5000))));
      await waitForArtifacts(b, "delta", first);
      const bDir = b.config.dataDir;
      await stop(b);
      const missed = await Promise.all(Array.from({ length: 10 }, (_, i) => putCas(ca, "delta", bytes(1200 + i, 5000))));
      let bodies = 0;
      let pages = 0;
      fp.set("peer.read-bodies.body", () => void bodies++);
      fp.set("peer.list-manifests.page", () => void pages++);
      b = await node(bName, [a], { dataDir: bDir });
      await waitForArtifacts(b, "delta", missed);
      await waitReady(b);
      expect(bodies).toBe(10);
      expect(pages).toBe(0);
    } finally {
      ca.close();
    }
  });

  it("a peer whose data dir was wiped (new incarnation) triggers a re-sync", async () => {
    const aName = uniq("a");
    let a = await node(aName);
    const b = await node(uniq("b"), [a]);
    await waitReady(b);
    const port = Number(new URL(a.peerAddress).port);
    const aDir = a.config.dataDir;
    const oldIncarnation = a.store.incarnation;
    await stop(a);
    const { rm } = await import("node:fs/promises");
    await rm(aDir, { recursive: true, force: true });
    a = await node(aName, [], { dataDir: aDir, config: { peerListen: `127.0.0.1:${port}` } });
    expect(a.store.incarnation).not.toBe(oldIncarnation);
    const ca = publicClient(a);
    try {
      const d = await putCas(ca, "wiped", bytes(1300, 4000));
      await waitForArtifacts(b, "wiped", [d]);
      const link = b.replication!.allLinks().find((l) => l.stats.nodeId === aName)!;
      expect(link.stats.incarnation).toBe(a.store.incarnation);
    } finally {
      ca.close();
    }
  });
});

describe("idle timeouts on peer streams", () => {
  it("a body trickling for more than 5x the idle timeout completes; a stalled one is cut and retried", async () => {
    const fp = new Failpoints();
    // Margins wide enough for a loaded 2-core CI machine: a slow chunk comes every quarter of
    // the idle timeout, the stalled one waits ten times it.
    const idleTimeoutMs = 1000;
    const a = await node(uniq("a"), [], { hooks: { failpoints: fp }, config: { idleTimeoutMs } });
    const ca = publicClient(a);
    let slow = "";
    let stalled = "";
    try {
      // 22 chunks of 1 MiB, each delayed by a quarter of the idle timeout: > 5x idle in total.
      slow = await putCas(ca, "idle", bytes(1400, 22 << 20));
      stalled = await putCas(ca, "idle", bytes(1401, 2 << 20));
    } finally {
      ca.close();
    }
    let stalls = 0;
    fp.set("peer.read-bodies.chunk", async (ctx) => {
      if (ctx["key"] === slow) await new Promise((r) => setTimeout(r, idleTimeoutMs / 4));
      if (ctx["key"] === stalled && ctx["offset"] === 1 << 20 && stalls === 0) {
        stalls++;
        await new Promise((r) => setTimeout(r, idleTimeoutMs * 10));
      }
    });
    const fresh = await node(uniq("fresh"), [a], {
      config: { idleTimeoutMs },
      hooks: { replication: { retry: { initialMs: 10, maxMs: 50, multiplier: 2, jitter: 0 } } },
    });
    await waitForArtifacts(fresh, "idle", [slow, stalled]);
    const link = fresh.replication!.allLinks()[0]!;
    expect(stalls).toBe(1);
    // The stalled body was cut by the idle deadline after its first MiB and resumed from there.
    expect(link.stats.failedCount).toBe(0);
    expect(link.stats.resumedCount).toBe(1);
    expect(link.stats.resumedBytes).toBe(1 << 20);
    expect(link.stats.lastError).toMatch(/no message for 1000 ms|IDLE/i);
  });
});

describe("membership", () => {
  it("says in its readiness reason how many peers known at start it could not reach", async () => {
    const a = await node(uniq("a"));
    const [deadPort] = await freePorts(1);
    const x = await node(uniq("x"), [], { peers: [a.peerAddress, `https://127.0.0.1:${deadPort}`] });
    await waitReady(x);
    // Counted from how each initial sync ended, not from the link's phase when readiness latched
    // (the refused link was still 'connecting' then: the reason used to say 0 unreachable).
    expect(x.readiness.reason()).toBe("caught up with 1 of 2 peer(s) known at start (1 unreachable)");
  });

  it("forgets a learned peer that stays unreachable longer than --peer-drop-after-ms, also after a restart", async () => {
    const log = eventLog();
    const aName = uniq("a");
    let a = await node(aName, [], { config: { peerDropAfterMs: 500 }, log: log.log });
    const b = await node(uniq("b"), [a]);
    await waitReady(b);
    const bAddress = b.peerAddress;
    // a learned b when b said Hello; b goes away for good.
    await stop(b);
    const e = await log.waitFor((l) => l["event"] === "membership.dropped");
    expect(e["address"]).toBe(bAddress);
    expect(a.replication!.knownPeers()).not.toContain(bAddress);
    const aDir = a.config.dataDir;
    await stop(a);
    a = await node(aName, [], { dataDir: aDir });
    expect(a.replication!.knownPeers()).not.toContain(bAddress);
  });
});
