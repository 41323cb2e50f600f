/**
 * The ops listener of real nodes (a 2-node mTLS mesh in temp dirs, ports 0): /metrics scraped
 * over HTTP while a fresh node bootstraps (held at its first manifest page by a failpoint, one
 * body failing once), then after it caught up and followed a live write; /livez and /readyz.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ArtifactService, Kind } from "../../src/gen/granary/artifact/v1/artifact_pb.js";
import { LIVENESS_SERVICE } from "../../src/api/health-service.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.js";
import { formatHostPort } from "../../src/node/config.js";
import type { GranaryNode } from "../../src/node/granary-node.js";
import { METRIC } from "../../src/telemetry/names.js";
import { Failpoints } from "../../src/util/failpoints.js";
import { bytes } from "../helpers/data.js";
import { makePki, publicClient, putCas, startMeshNode, waitForArtifacts, waitReady, type Pki } from "../helpers/mesh.js";
import { tempDir } from "../helpers/temp.js";
import { parsePrometheusText, type Scrape } from "./prom-text.js";

let pki: Pki;
let root: string;
let cleanup: () => Promise<void>;
const nodes: GranaryNode[] = [];

beforeAll(async () => {
  const t = await tempDir("granary-ops-metrics-");
  root = t.path;
  cleanup = t.cleanup;
  pki = await makePki(`${root}/pki`);
});

afterAll(async () => {
  await Promise.all(nodes.splice(0).map((n) => n.close()));
  await cleanup?.();
});

function opsUrl(n: GranaryNode, path: string): string {
  const a = n.opsAddress;
  if (!a) throw new Error("ops listener is off");
  return `http://${formatHostPort(a)}${path}`;
}

async function scrape(n: GranaryNode): Promise<Scrape> {
  const res = await fetch(opsUrl(n, "/metrics"));
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return parsePrometheusText(await res.text());
}

/** Re-scrapes (each a real HTTP round trip, no timer) until `ok` holds; bounded. */
async function scrapeUntil(n: GranaryNode, ok: (s: Scrape) => boolean, what: string): Promise<Scrape> {
  let last: Scrape | undefined;
  for (let i = 0; i < 500; i++) {
    last = await scrape(n);
    if (ok(last)) return last;
  }
  throw new Error(`metrics never showed ${what}`);
}

describe("ops listener: /metrics, /livez, /readyz on a real mesh", () => {
  it("reports bootstrap progress, readiness, outcomes, budgets, store and RPC latency", async () => {
    const fp = new Failpoints();
    const a = await startMeshNode({ name: "ops-a", pki, root, hooks: { failpoints: fp, processMetrics: false }, config: { opsListen: "127.0.0.1:0" } });
    nodes.push(a);
    const bodies = [bytes(1, 10_000), bytes(2, 20_000), bytes(3, 30_000), bytes(4, 2 << 20)];
    const ca = publicClient(a);
    const digests: string[] = [];
    try {
      for (const b of bodies) digests.push(await putCas(ca, "ops", b));
      // A Get of something absent: NOT_FOUND in the RPC histogram.
      const missing = "0".repeat(64);
      await expect(
        (async () => {
          for await (const _ of ca.client(ArtifactService).get({ namespace: "ops", kind: Kind.CAS, key: missing })) void _;
        })(),
      ).rejects.toThrow(/not_found/);
    } finally {
      ca.close();
    }

    // Hold the fresh node's walk at the first page; fail the large body's first read once.
    let reached!: () => void;
    const atFirstPage = new Promise<void>((r) => (reached = r));
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    fp.set("peer.list-manifests.page", async () => {
      reached();
      await released;
    });
    let failedOnce = false;
    fp.set("peer.read-bodies.chunk", (ctx) => {
      if (ctx["key"] === digests[3] && ctx["offset"] === 0 && !failedOnce) {
        failedOnce = true;
        throw new Error("injected: body read failed");
      }
    });
    const bandwidth = 512 << 20;
    const b = await startMeshNode({
      name: "ops-b",
      pki,
      root,
      peers: [a.peerAddress],
      hooks: { processMetrics: false, replication: { retry: { initialMs: 10, maxMs: 50, multiplier: 2, jitter: 0 } } },
      config: { opsListen: "127.0.0.1:0", replicationBandwidthBytesPerSecond: bandwidth },
    });
    nodes.push(b);
    await atFirstPage;

    // Bootstrapping, not ready, and it says why.
    const notReady = await fetch(opsUrl(b, "/readyz"));
    expect(notReady.status).toBe(503);
    expect(await notReady.text()).toMatch(/^not ready: catching up with peers/);
    expect((await fetch(opsUrl(b, "/livez"))).status).toBe(200);
    // The gRPC probes Kubernetes uses: readiness follows the latch, liveness does not.
    const hb = publicClient(b);
    try {
      const health = hb.client(Health);
      expect((await health.check({ service: "" })).status).toBe(ServingStatus.NOT_SERVING);
      expect((await health.check({ service: LIVENESS_SERVICE })).status).toBe(ServingStatus.SERVING);
    } finally {
      hb.close();
    }
    const peer = { peer: a.peerAddress };
    const during = await scrape(b);
    expect(during.value(METRIC.ready)).toBe(0);
    expect(during.value(METRIC.peerPhase, { ...peer, phase: "bootstrapping" })).toBe(1);
    expect(during.value(METRIC.peerPhase, { ...peer, phase: "following" })).toBe(0);
    expect(during.value(METRIC.bootstrapTotalArtifacts, peer)).toBe(4);
    // The peer's live bytes as its store counts them (bodies plus record framing).
    const bodyBytes = bodies.reduce((n, x) => n + x.length, 0);
    expect(during.value(METRIC.bootstrapTotalBytes, peer)).toBe(a.store.usage().liveBytes);
    expect(during.value(METRIC.bootstrapTotalBytes, peer)).toBeGreaterThanOrEqual(bodyBytes);
    expect(during.value(METRIC.bootstrapPasses, peer)).toBe(1);
    expect(during.types.get(METRIC.bootstrapPasses)).toBe("counter");
    release();
    fp.clear("peer.list-manifests.page");

    await waitReady(b);
    await waitForArtifacts(b, "ops", digests);
    const ca2 = publicClient(a);
    let live: Uint8Array;
    try {
      live = bytes(5, 5_000);
      digests.push(await putCas(ca2, "ops", live));
    } finally {
      ca2.close();
    }
    await waitForArtifacts(b, "ops", digests);

    const all = [...bodies, live];
    const totalBytes = all.reduce((n, x) => n + x.length, 0);
    const s = await scrapeUntil(
      b,
      (x) => x.find(METRIC.artifacts, { ...peer, outcome: "applied" })[0]?.value === 5 && x.find(METRIC.lagChanges, peer)[0]?.value === 0,
      "5 applied artifacts and no lag",
    );
    expect(s.value(METRIC.ready)).toBe(1);
    expect(s.value(METRIC.info, { node_id: "ops-b" })).toBe(1);
    expect(s.find(METRIC.info)[0]!.labels["incarnation"]).toBe(b.store.incarnation);
    expect(s.value(METRIC.peerPhase, { ...peer, phase: "following", peer_node_id: "ops-a" })).toBe(1);
    expect(s.value(METRIC.lagSeconds, peer)).toBe(0);
    expect(s.value(METRIC.cursorSeq, peer)).toBe(a.store.feedHead());
    expect(s.value(METRIC.peerHeadSeq, peer)).toBe(a.store.feedHead());
    // The large body failed once: counted, the pass retried, then everything applied.
    expect(s.value(METRIC.artifacts, { ...peer, outcome: "failed" })).toBe(1);
    expect(s.value(METRIC.bytes, { ...peer, outcome: "failed" })).toBe(2 << 20);
    expect(s.value(METRIC.bytes, { ...peer, outcome: "applied" })).toBe(totalBytes);
    expect(s.value(METRIC.failures, peer)).toBe(1);
    expect(s.value(METRIC.resumedBodies, peer)).toBe(0); // the failure above is at byte 0: nothing to resume
    expect(s.types.get(METRIC.resumedBytes)).toBe("counter");
    expect(s.value(METRIC.bootstrapPasses, peer)).toBe(2);
    expect(s.value(METRIC.receivedBytes, peer)).toBeGreaterThanOrEqual(totalBytes);
    expect(s.value(METRIC.bootstrapTotalArtifacts, peer)).toBe(0);
    // Streams on the peer's one connection: none running now, several opened.
    expect(s.value(METRIC.streamsInFlight, peer)).toBe(0);
    expect(s.value(METRIC.streamsPending, peer)).toBe(0);
    expect(s.value(METRIC.streamsOpened, peer)).toBeGreaterThanOrEqual(3);
    expect(s.value(METRIC.peerLastContact, peer)).toBeGreaterThan(0);
    // Budgets.
    expect(s.value(METRIC.stagingBudget)).toBe(b.config.stagingBudgetBytes);
    expect(s.value(METRIC.stagingReserved)).toBe(0);
    expect(s.value(METRIC.stagingWaiting)).toBe(0);
    expect(s.value(METRIC.stagingPeak)).toBeGreaterThan(0);
    expect(s.value(METRIC.bandwidthLimit)).toBe(bandwidth);
    expect(s.value(METRIC.throttled)).toBeGreaterThanOrEqual(0);
    // Store.
    expect(s.value(METRIC.storeArtifacts)).toBe(5);
    expect(s.value(METRIC.storeLiveBytes)).toBe(b.store.usage().liveBytes);
    expect(s.value(METRIC.storeLiveBytes)).toBeGreaterThanOrEqual(totalBytes);
    expect(s.value(METRIC.storeSegments)).toBeGreaterThanOrEqual(1);
    expect(s.value(METRIC.storeEvicted)).toBe(0);
    expect(s.value(METRIC.storeCapacityBytes)).toBe(0);
    expect(s.value(METRIC.feedHead)).toBe(5);
    const ready = await fetch(opsUrl(b, "/readyz"));
    expect(ready.status).toBe(200);
    expect(await ready.text()).toMatch(/^ready: caught up with 1 of 1 peer/);

    // The serving node's RPC latency histograms, by listener, method and code.
    const sa = await scrape(a);
    expect(sa.types.get(METRIC.rpcDuration)).toBe("histogram");
    const rpc = `${METRIC.rpcDuration}_count`;
    const artifactSvc = "granary.artifact.v1.ArtifactService";
    const replSvc = "granary.replication.v1.ReplicationService";
    expect(sa.value(rpc, { listener: "public", service: artifactSvc, method: "Put", code: "OK" })).toBe(5);
    expect(sa.value(rpc, { listener: "public", service: artifactSvc, method: "Get", code: "NOT_FOUND" })).toBe(1);
    expect(sa.value(rpc, { listener: "peer", service: replSvc, method: "Hello", code: "OK" })).toBeGreaterThanOrEqual(1);
    expect(sa.value(rpc, { listener: "peer", service: replSvc, method: "ListManifests", code: "OK" })).toBeGreaterThanOrEqual(1);
    expect(sa.value(rpc, { listener: "peer", service: replSvc, method: "ReadBodies", code: "OK" })).toBeGreaterThanOrEqual(2);
    const buckets = sa.find(`${METRIC.rpcDuration}_bucket`, { listener: "public", method: "Put", code: "OK" });
    expect(buckets.find((x) => x.labels["le"] === "+Inf")?.value).toBe(5);
    // The serving node learned the fresh one through its Hello: one series per phase for it.
    expect(sa.value(METRIC.ready)).toBe(1);
    expect(sa.find(METRIC.peerPhase, { peer: b.peerAddress })).toHaveLength(6);
    expect(sa.value(METRIC.storeArtifacts)).toBe(5);
  });

  it("answers 404 for unknown paths and 405 for writes, and a busy explicit port fails the start", async () => {
    const n = await startMeshNode({ name: "ops-c", pki, root, hooks: { processMetrics: false }, config: { opsListen: "127.0.0.1:0" } });
    nodes.push(n);
    expect((await fetch(opsUrl(n, "/nope"))).status).toBe(404);
    expect((await fetch(opsUrl(n, "/metrics"), { method: "POST", body: "x" })).status).toBe(405);
    const busy = formatHostPort(n.opsAddress!);
    await expect(startMeshNode({ name: "ops-d", pki, root, config: { opsListen: busy } })).rejects.toThrow(/ops listener/);
    // The CLI's default address is best-effort: the node starts without it.
    const d = await startMeshNode({ name: "ops-e", pki, root, config: { opsListen: busy, opsListenRequired: false } });
    nodes.push(d);
    expect(d.opsAddress).toBeUndefined();
  });
});
