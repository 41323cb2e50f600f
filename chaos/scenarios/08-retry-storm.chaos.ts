/**
 * Scenario 8 — retry storm. Node X follows three peers, each reachable only through its own
 * TCP fault proxy (the peers advertise the proxy address). The proxies are blackholed (every
 * dial is reset at accept) for the outage while the peers keep taking writes, then opened again
 * one by one in random order. Oracle: dials per peer during the outage stay within what the
 * retry policy allows (exponential backoff from 1 s, ×2, 50 % jitter, cap 60 s) per dialing
 * node; no error X saw was a peer's GOAWAY ENHANCE_YOUR_CALM; after the last peer is back, X holds
 * every write of every peer, byte for byte, within 3 minutes.
 */
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import type { GranaryNode } from "../../src/node/granary-node.js";
import { DEFAULT_PEER_LINK_OPTIONS } from "../../src/replication/peer-link.js";
import { DIAGNOSIS_INTERVAL_MS } from "../../src/transport/peer-client-grpcjs.js";
import { makePki, publicClient, startMeshNode, waitForArtifacts, waitReady } from "../../test/helpers/mesh.js";
import { bodyBytes, buildSize, getCas, putCasBody } from "../lib/artifacts.js";
import { captureLog } from "../lib/capture-log.js";
import { chaosContext, Violations } from "../lib/context.js";
import { startFaultProxy, type FaultProxy } from "../lib/fault-proxy.js";
import { scratch } from "../lib/nodes.js";

const ctx = chaosContext("08-retry-storm");
const OUTAGE_MS = ctx.size(20_000, 600_000);
const PEERS = 3;
const NS = "storm";

const cleanups: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

/**
 * Most dials one node can make in `ms` under the retry policy (shortest jittered delays), plus
 * one, plus the TLS probes that find why a dial failed (one per DIAGNOSIS_INTERVAL_MS).
 */
function maxDials(ms: number): number {
  const p = DEFAULT_PEER_LINK_OPTIONS.retry;
  let t = 0;
  let n = 1;
  for (let k = 1; k < 10_000; k++) {
    t += Math.min(p.maxMs, p.initialMs * p.multiplier ** (k - 1)) * (1 - p.jitter);
    if (t > ms) break;
    n++;
  }
  return n + 1 + 1 + Math.floor(ms / DIAGNOSIS_INTERVAL_MS);
}

it("dials during an outage stay within the backoff; everything is caught up after the peers return", async () => {
  const v = new Violations();
  const rng = ctx.rng;
  const dir = await scratch("storm");
  cleanups.push(dir.cleanup);
  const pki = await makePki(join(dir.path, "pki"));
  const proxies: FaultProxy[] = [];
  const peers: GranaryNode[] = [];
  for (let i = 0; i < PEERS; i++) {
    const proxy = await startFaultProxy();
    cleanups.push(() => proxy.close());
    const p = await startMeshNode({ name: `p${i}`, pki, root: dir.path, config: { advertiseAddress: `https://127.0.0.1:${proxy.port}` }, hooks: { processMetrics: false } });
    cleanups.push(() => p.close());
    proxy.setTarget(p.peerListener!.address().port);
    proxies.push(proxy);
    peers.push(p);
  }
  const logX = captureLog();
  const x = await startMeshNode({ name: "x", pki, root: dir.path, peers: proxies.map((p) => `https://127.0.0.1:${p.port}`), hooks: { processMetrics: false }, log: logX.log });
  cleanups.push(() => x.close());
  await waitReady(x);

  // Outage: every peer unreachable; peers keep taking writes.
  for (const p of proxies) {
    p.blackhole(true);
    p.cutAll();
  }
  const refusedBefore = proxies.map((p) => p.stats.refused);
  const outageStart = Date.now();
  const written = new Map<string, number>();
  const conns = peers.map((p) => publicClient(p));
  while (Date.now() - outageStart < OUTAGE_MS) {
    const i = rng.int(0, PEERS - 1);
    const size = buildSize(rng.next(), 8 << 10, 512 << 10);
    written.set(await putCasBody(conns[i]!, NS, bodyBytes({ seed: rng.u32(), size })), size);
    await new Promise((r) => setTimeout(r, 100));
  }
  const outageMs = Date.now() - outageStart;
  const dials = proxies.map((p, i) => p.stats.refused - refusedBefore[i]!);
  // Dialers of each peer: x and the other peers (they learnt each other through x).
  const bound = PEERS * maxDials(outageMs);
  dials.forEach((d, i) => v.check(d <= bound, `peer p${i}: ${d} dials in ${outageMs} ms, more than the backoff allows (${bound})`));
  const retriesX = logX.events.filter((e) => e["event"] === "replication.retry" && Date.parse(String(e["time"])) >= outageStart).length;

  // Back one by one, in random order.
  const order = [...proxies.keys()].sort(() => rng.next() - 0.5);
  for (const i of order) {
    proxies[i]!.blackhole(false);
    await new Promise((r) => setTimeout(r, rng.int(200, 2000)));
  }
  const healedAt = Date.now();
  await waitForArtifacts(x, NS, [...written.keys()], AbortSignal.timeout(180_000));
  const caughtUpMs = Date.now() - healedAt;
  // A peer that ran out of patience would have sent GOAWAY ENHANCE_YOUR_CALM: x's errors say so.
  const calm = logX.events.filter((e) => /ENHANCE_YOUR_CALM|too_many_pings|code 11\b/i.test(String(e["cause"] ?? ""))).length;
  v.check(calm === 0, `${calm} of x's errors were ENHANCE_YOUR_CALM from a peer`);

  const cx = publicClient(x);
  let oracleReads = 0;
  for (const [d, size] of written) {
    const r = await getCas(cx, NS, d);
    oracleReads++;
    v.check(r.kind === "ok" && r.digest === d && r.length === size, `x serves ${d} as ${JSON.stringify(r)}`);
  }
  cx.close();
  for (const c of conns) c.close();
  const figures = { peers: PEERS, outageMs, writesDuringOutage: written.size, dialsPerPeerDuringOutage: dials, dialBoundPerPeer: bound, retriesLoggedByX: retriesX, healOrder: order.map((i) => `p${i}`), caughtUpAfterHealMs: caughtUpMs, resetFloodEvents: calm, oracleReads };
  ctx.record({ passed: v.list.length === 0, figures, violations: v.list });
  ctx.log(JSON.stringify(figures));
  expect(v.list).toEqual([]);
});
