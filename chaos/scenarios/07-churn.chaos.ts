/**
 * Scenario 7 — partition, kill, pause, wipe and rejoin under load. Three `granary serve`
 * children in a full mesh, each peer listener behind its own TCP fault proxy (nodes advertise
 * the proxy), keep fixed ports across restarts. Eight client loops put build-like artifacts on
 * random live nodes while, every few seconds, one fault hits a random node: kill -9 and restart,
 * SIGSTOP then SIGCONT, partition (its proxy drops every connection and refuses new ones) then
 * heal, or wipe its data dir and rejoin (only once what it acknowledged is on another node:
 * a single-copy ack dies with its disk, which no mesh can prevent). Oracle: after each fault
 * ends (the node restarted, resumed or healed), every write acknowledged until then is on every
 * node within 3 minutes, while the load and the next faults go on (a node hit by a later fault
 * before it caught up is handed to that fault's check, which covers a superset of the writes;
 * the strict figure without hand-over is reported); after the last heal, every acknowledged
 * write is on every node within 3 minutes, and then byte for byte on every node; and the mesh
 * settles: within a minute every link of every node follows its peer's current incarnation (a
 * link that holds the data yet loops bootstrap → refused Follow → bootstrap burns both nodes'
 * CPU for as long as they run: found at full size, 2026-12-07). Which node holds which write
 * is learned by one poller that asks each node only about writes not yet seen on it
 * (held-tracker.ts); a missed bound records what the lagging node lacked and its links' state,
 * and every node's replication log is attached to the result.
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { ArtifactService } from "../../src/gen/granary/artifact/v1/artifact_pb.js";
import { NodeService, PeerPhase } from "../../src/gen/granary/node/v1/node_pb.js";
import { connectPublic, type PublicConnection } from "../../src/transport/public-client.js";
import type { ChildNode } from "../../test/helpers/child-node.js";
import { makePki } from "../../test/helpers/mesh.js";
import { freePorts } from "../../test/helpers/ports.js";
import { bodyBytes, buildSize, putCasBody, readBackAll, type BodySpec } from "../lib/artifacts.js";
import { chaosContext, Violations } from "../lib/context.js";
import { startFaultProxy, type FaultProxy } from "../lib/fault-proxy.js";
import { HeldTracker } from "../lib/held-tracker.js";
import { scratch } from "../lib/nodes.js";
import { killAll, startNode } from "../lib/processes.js";

const ctx = chaosContext("07-churn");
const NODES = 3;
const LOAD_MS = ctx.size(40_000, 600_000);
const FAULT_EVERY_MS = ctx.size(5000, 10_000);
const PAUSE_MS: [number, number] = ctx.size([2000, 4000], [5000, 60_000]);
const CLIENTS = 8;
const NS = "churn";

const cleanups: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  await killAll();
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

type Fault = "kill-9" | "sigstop" | "partition" | "wipe";


/** "running", or how a node process ended ("exited SIGKILL", "exited 1"). */
const processState = ({ proc }: ChildNode): string => (proc.exitCode === null && proc.signalCode === null ? "running" : `exited ${proc.signalCode ?? proc.exitCode}`);
it("loses no acknowledged write through kills, pauses, partitions and wipes; every node catches up", async () => {
  const v = new Violations();
  const rng = ctx.rng;
  const dir = await scratch("churn");
  cleanups.push(dir.cleanup);
  const pki = await makePki(join(dir.path, "pki"));
  const ports = await freePorts(NODES);
  const proxies: FaultProxy[] = [];
  for (let i = 0; i < NODES; i++) {
    const p = await startFaultProxy(ports[i]);
    proxies.push(p);
    cleanups.push(() => p.close());
  }
  const pubPorts = await freePorts(NODES);
  const args = async (i: number): Promise<string[]> => {
    const c = await pki.cert(`n${i}`);
    return [
      "--data-dir", join(dir.path, `n${i}`),
      "--listen", `127.0.0.1:${pubPorts[i]}`,
      "--peer-listen", `127.0.0.1:${ports[i]}`,
      "--advertise-address", `https://127.0.0.1:${proxies[i]!.port}`,
      "--tls-ca", pki.ca, "--tls-cert", c.cert, "--tls-key", c.key,
      "--idle-timeout-ms", "5000",
      "--peers", proxies.filter((_, k) => k !== i).map((p) => `https://127.0.0.1:${p.port}`).join(","),
    ];
  };
  const nodes: Array<ChildNode | undefined> = [];
  // Every incarnation of every node, for the replication log attached to the result.
  const incarnations: Array<{ node: number; startedMs: number; child: ChildNode }> = [];
  const start = async (i: number): Promise<ChildNode> => {
    const child = await startNode(await args(i));
    incarnations.push({ node: i, startedMs: Date.now(), child });
    return child;
  };
  for (let i = 0; i < NODES; i++) nodes.push(await start(i));
  for (const n of nodes) await n!.waitReady();
  const conns: PublicConnection[] = pubPorts.map((p) => connectPublic({ server: `127.0.0.1:${p}` }));
  const down = new Set<number>();
  const acked = new Map<string, BodySpec & { node: number }>();
  let failedPuts = 0;
  const inflight = new Array<number>(NODES).fill(0);
  const started = Date.now();

  const client = async (): Promise<void> => {
    for (let n = 0; n < 1_000_000 && Date.now() - started < LOAD_MS; n++) {
      const live = [...Array(NODES).keys()].filter((i) => !down.has(i));
      const i = live.length > 0 ? rng.pick(live) : rng.int(0, NODES - 1);
      const spec = { seed: rng.u32(), size: buildSize(rng.next(), 8 << 10, 512 << 10) };
      inflight[i]!++;
      try {
        const d = await putCasBody(conns[i]!, NS, bodyBytes(spec), AbortSignal.timeout(10_000));
        acked.set(d, { ...spec, node: i });
        tracker.add(d);
      } catch {
        failedPuts++;
      } finally {
        inflight[i]!--;
      }
      await new Promise((r) => setTimeout(r, ctx.size(50, 10)));
    }
  };
  // One poller learns which writes each live node holds, asking only about those not yet seen
  // there; every check below reads it (held-tracker.ts says why).
  const tracker = new HeldTracker(NODES, async (i, digests) => (await conns[i]!.client(ArtifactService).findMissing({ namespace: NS, digests }, { signal: AbortSignal.timeout(30_000) })).missingDigests);
  const stopTracker = new AbortController();
  const polling = tracker.run(() => [...Array(NODES).keys()].filter((i) => !down.has(i)), 500, stopTracker.signal);
  cleanups.push(() => (stopTracker.abort(), polling));
  const faults: Array<{ atMs: number; fault: Fault; node: number; note?: string; hit?: boolean; endedMs?: number; writesBefore?: number; allHeldAfterMs?: number; strictAllHeldAfterMs?: number; superseded?: string[]; lagging?: unknown[] }> = [];
  // What a node that missed a fault's deadline lacked (by the node that acknowledged it) and
  // what its links were doing: the figures a failed bound is diagnosed from.
  const lagReport = async (i: number, writes: number): Promise<unknown> => {
    try {
      const gone = tracker.unheldDigests(i).filter((d) => tracker.numberOfDigest(d)! < writes);
      const byAcker = gone.reduce<Record<string, number>>((m, d) => ((m[`n${acked.get(d)!.node}`] = (m[`n${acked.get(d)!.node}`] ?? 0) + 1), m), {});
      const st = (await conns[i]!.client(NodeService).getStatus({})).status;
      const links = (st?.peers ?? []).map((p) => ({ peer: p.nodeId, phase: PeerPhase[p.phase], incarnation: p.incarnation.slice(0, 8), cursorSeq: Number(p.cursorSeq), headSeq: Number(p.headSeq), lagSeconds: Math.round(p.lagSeconds), failed: Number(p.failedCount), bootstrapDone: `${p.bootstrapDoneArtifacts}/${p.bootstrapTotalArtifacts}`, lastError: p.lastError.slice(0, 300) }));
      return { node: `n${i}`, atMs: Date.now() - started, missing: gone.length, byAcker, links };
    } catch (e) {
      return { node: `n${i}`, error: String(e) };
    }
  };
  // Per fault: from its end, how long until every node holds every write acknowledged by then.
  // A node hit by a later fault before it held them is handed to that fault's check (a superset
  // of writes, its own 3-minute clock): a node wiped later re-fetches newest first, so the older
  // writes of an earlier fault reach it last, and a node stopped or cut later cannot fetch at
  // all; charging that to the earlier fault measures the later one. The strict figure (every
  // node, no hand-over) is reported beside it.
  const recoveries: Promise<void>[] = [];
  const watchRecovery = (f: (typeof faults)[number]): void => {
    const writes = tracker.order.length;
    const endedAt = Date.now();
    const k = faults.indexOf(f);
    f.endedMs = endedAt - started;
    f.writesBefore = writes;
    f.superseded = [];
    const pending = new Set(Array.from({ length: NODES }, (_, i) => i));
    const held = new Set<number>();
    recoveries.push(
      (async () => {
        for (let t = 0; t < 1000 && Date.now() - endedAt < 200_000; t++) {
          for (let i = 0; i < NODES; i++) {
            if (held.has(i)) continue;
            if (!down.has(i) && tracker.firstUnheld(i) >= writes) {
              held.add(i);
              pending.delete(i);
              continue;
            }
            const later = faults.findIndex((g, m) => m > k && g.node === i && g.hit === true);
            if (pending.has(i) && later >= 0) {
              pending.delete(i);
              f.superseded!.push(`n${i} by fault ${later}`);
            }
          }
          if (pending.size === 0 && f.allHeldAfterMs === undefined) f.allHeldAfterMs = Date.now() - endedAt;
          if (held.size === NODES) {
            f.strictAllHeldAfterMs = Date.now() - endedAt;
            return;
          }
          await tracker.nextRound();
        }
        if (f.allHeldAfterMs === undefined) f.lagging = await Promise.all([...pending].map((i) => lagReport(i, writes)));
      })(),
    );
  };
  const kinds: Fault[] = (["kill-9", "sigstop", "partition", "wipe"] as const).map((k) => [rng.next(), k] as const).sort((x, y) => x[0] - y[0]).map(([, k]) => k);
  const chaos = async (): Promise<void> => {
    while (Date.now() - started < LOAD_MS - FAULT_EVERY_MS) {
      await new Promise((r) => setTimeout(r, FAULT_EVERY_MS));
      const i = rng.int(0, NODES - 1);
      // Every kind in turn (shuffled once), so a short run sees each of them.
      const fault = kinds[faults.length % kinds.length]!;
      faults.push({ atMs: Date.now() - started, fault, node: i });
      if (fault === "kill-9" || fault === "wipe") {
        if (fault === "wipe") {
          // What this node acknowledged must live somewhere else first (bounded wait): stop
          // sending it writes, let its in-flight puts finish, then wait for replication.
          down.add(i);
          for (let t = 0; t < 200 && inflight[i]! > 0; t++) await new Promise((r) => setTimeout(r, 50));
          const mine = [...acked.entries()].filter(([, s]) => s.node === i).map(([d]) => tracker.numberOfDigest(d)!);
          let ok = false;
          const waitFrom = Date.now();
          for (let t = 0; t < 1000 && !ok && Date.now() - waitFrom < 60_000; t++) {
            await tracker.nextRound();
            ok = [...Array(NODES).keys()].some((k) => k !== i && !down.has(k) && tracker.holdsAll(k, mine));
          }
          if (!ok) faults[faults.length - 1]!.note = "skipped: its writes were not on another node within 60 s";
          if (!ok) {
            down.delete(i);
            continue;
          }
        }
        down.add(i);
        faults[faults.length - 1]!.hit = true;
        await nodes[i]!.kill("SIGKILL");
        if (fault === "wipe") {
          tracker.reset(i);
          await rm(join(dir.path, `n${i}`), { recursive: true, force: true });
        }
        nodes[i] = await start(i);
        down.delete(i);
      } else if (fault === "sigstop") {
        down.add(i);
        faults[faults.length - 1]!.hit = true;
        nodes[i]!.proc.kill("SIGSTOP");
        await new Promise((r) => setTimeout(r, rng.int(...PAUSE_MS)));
        nodes[i]!.proc.kill("SIGCONT");
        down.delete(i);
      } else {
        faults[faults.length - 1]!.hit = true;
        proxies[i]!.blackhole(true);
        proxies[i]!.cutAll();
        await new Promise((r) => setTimeout(r, rng.int(...PAUSE_MS)));
        proxies[i]!.blackhole(false);
      }
      watchRecovery(faults[faults.length - 1]!);
    }
  };
  await Promise.all([...Array.from({ length: CLIENTS }, client), chaos()]);
  const loadEnded = Date.now();
  await Promise.all(recoveries);
  for (const [k, f] of faults.entries()) {
    if (f.note || f.endedMs === undefined) continue;
    v.check(f.allHeldAfterMs !== undefined && f.allHeldAfterMs <= 180_000, `fault ${k} (${f.fault} of n${f.node}): the ${f.writesBefore} writes acknowledged by its end were not on every node within 3 minutes`);
  }

  // Oracle: every acknowledged write on every node within 3 minutes, then byte for byte.
  const all = tracker.order.length;
  const caughtUpMs: number[] = [];
  for (let i = 0; i < NODES; i++) {
    for (let t = 0; t < 1000 && tracker.firstUnheld(i) < all && Date.now() - loadEnded < 180_000; t++) await tracker.nextRound();
    caughtUpMs.push(Date.now() - loadEnded);
    const gone = tracker.unheldDigests(i);
    const missing = gone.length;
    if (missing > 0) {
      const byNode = gone.reduce<Record<string, number>>((m, d) => ((m[`n${acked.get(d)!.node}`] = (m[`n${acked.get(d)!.node}`] ?? 0) + 1), m), {});
      v.check(false, `node n${i} misses ${missing} of ${all} acknowledged writes 3 minutes after the load (acknowledged by: ${JSON.stringify(byNode)})`);
    }
  }
  stopTracker.abort();
  await polling;
  // The mesh settles: every link follows its peer's current incarnation.
  const settleStart = Date.now();
  let unsettled: string[] = ["not checked"];
  for (let t = 0; t < 120 && unsettled.length > 0 && Date.now() - settleStart < 60_000; t++) {
    // A node that does not answer is a violation to record, not an error that loses the figures.
    let statuses;
    try {
      statuses = await Promise.all(conns.map((c) => c.client(NodeService).getStatus({}).then((r) => r.status)));
    } catch (e) {
      unsettled = [`a node did not answer its status: ${String(e)}`];
      await new Promise((r) => setTimeout(r, 500));
      continue;
    }
    const incarnation = new Map(statuses.map((st) => [st?.nodeId, st?.incarnation]));
    unsettled = statuses.flatMap((st) =>
      (st?.peers ?? []).filter((p) => p.phase !== PeerPhase.FOLLOWING || p.incarnation !== incarnation.get(p.nodeId)).map((p) => `${st?.nodeId} → ${p.nodeId}: ${PeerPhase[p.phase]}${p.incarnation !== incarnation.get(p.nodeId) ? " (a stale incarnation)" : ""}`),
    );
    if (unsettled.length > 0) await new Promise((r) => setTimeout(r, 500));
  }
  const settledMs = Date.now() - settleStart;
  v.check(unsettled.length === 0, `links not following their peer's current incarnation 60 s after every node held every write: ${unsettled.join("; ")}`);
  // Byte for byte on every node whatever else failed: a wrong body is the worst outcome.
  const oracle = await readBackAll(v, NS, acked, conns.map((c, i) => [`n${i}`, [c]] as const));
  for (const c of conns) c.close();
  const figures = { nodes: NODES, loadMs: LOAD_MS, clients: CLIENTS, acknowledgedWrites: acked.size, failedPuts, faults, faultCounts: Object.fromEntries(["kill-9", "sigstop", "partition", "wipe"].map((f) => [f, faults.filter((x) => x.fault === f && !x.note).length])), allCaughtUpAfterLoadMs: caughtUpMs, allHeldAfterFaultMs: { max: Math.max(0, ...faults.map((f) => f.allHeldAfterMs ?? 0)), perFault: faults.map((f) => f.allHeldAfterMs ?? null) }, strictAllHeldAfterFaultMs: { max: Math.max(0, ...faults.map((f) => f.strictAllHeldAfterMs ?? 0)), perFault: faults.map((f) => f.strictAllHeldAfterMs ?? null), within3Min: faults.filter((f) => f.strictAllHeldAfterMs !== undefined && f.strictAllHeldAfterMs <= 180_000).length }, nodeProcesses: nodes.map((n) => processState(n!)), oracleQueriedDigests: tracker.queried, oracleRounds: tracker.rounds, handedOver: faults.reduce((n, f) => n + (f.superseded?.length ?? 0), 0), missingAfterHeal: v.list.filter((x) => x.includes("misses")).length, settledMs, unsettled, oracleReads: oracle.reads, oracleMs: oracle.ms };
  ctx.record({ passed: v.list.length === 0 && acked.size > 0, figures, violations: v.list });
  // The replication log of every incarnation (phases, passes, retries, refusals), by node; the
  // body failures (thousands when a peer stalls) counted per minute, peer and cause instead.
  const section = ({ node, startedMs, child }: (typeof incarnations)[number]): string => {
    const failed = new Map<string, number>();
    const kept: string[] = [];
    for (const l of child.lines) {
      if (!l.includes('"event":"replication.') && !l.includes('"event":"membership.')) continue;
      if (!l.includes('"event":"replication.body_failed"')) {
        kept.push(l);
        continue;
      }
      const e = JSON.parse(l) as { time?: string; peer?: string; cause?: string };
      const k = `${e.time?.slice(0, 16)} ${e.peer} ${(e.cause ?? "").replace(/[0-9a-f]{64}/g, "<digest>").replace(/\d+/g, "N").slice(0, 160)}`;
      failed.set(k, (failed.get(k) ?? 0) + 1);
    }
    const stderr = child.stderr().trim();
    return [`# n${node} started at ${startedMs - started} ms (${processState(child)})`, ...kept, ...[...failed].map(([k, n]) => `# body_failed ×${n}: ${k}`), ...(stderr ? [`# stderr:\n${stderr.slice(-8_000)}`] : [])].join("\n");
  };
  ctx.attach("replication.log", `${incarnations.map(section).join("\n")}\n`);
  ctx.log(JSON.stringify(figures));
  expect(v.list).toEqual([]);
  // The load, the per-fault checks (≤ 200 s after the last fault), the catch-up (≤ 3 min), the
  // settle check (≤ 1 min) and the oracle: well inside 90 minutes at full size.
}, 90 * 60_000);
