/**
 * Scenario 6 — stalled versus slow. Node B bootstraps 16 large bodies from node A over one
 * connection; one of them stalls mid-body (failpoint: the serving side stops sending). Oracle:
 * B's per-message idle deadline cuts that stream within idle + 2 s and never before idle − 10 %,
 * the other 15 bodies complete meanwhile at >= 80 % of the throughput a baseline run (same 16
 * bodies, nothing stalled) had (asserted at full size), B's NodeService.GetStatus reports the peer
 * `stalled` during the stall, and the stalled body is fetched on the retry. Then a body served
 * at ~1 MB/s (a sleep before each 1 MiB chunk) for several idle timeouts completes (no total
 * cap) while the status never says `stalled`.
 *
 * Then a whole peer stops: node A as a child process trickling 16 bodies (a sleep before each
 * 1 MiB chunk) is SIGSTOPped mid-bootstrap for STOP_MS (60 s at full size) and SIGCONTed.
 * Oracle: every in-flight body on B fails by its idle deadline, within idle + 2 s of the stop and
 * never before idle − 10 %; B's status says `stalled` during the stop; after SIGCONT the link
 * recovers by itself and B holds every body byte for byte.
 */
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { NodeService, PeerPhase } from "../../src/gen/granary/node/v1/node_pb.js";
import { createGrpcJsPeerClient } from "../../src/transport/peer-client-grpcjs.js";
import { PeerRpcError, type PeerClient } from "../../src/transport/peer-client.js";
import { connectPublic } from "../../src/transport/public-client.js";
import { Failpoints } from "../../src/util/failpoints.js";
import { makePki, peerTlsPem, publicClient, startMeshNode, waitForArtifacts, waitReady } from "../../test/helpers/mesh.js";
import { bodyBytes, getCas, putCasBody } from "../lib/artifacts.js";
import { captureLog } from "../lib/capture-log.js";
import { chaosContext, Violations } from "../lib/context.js";
import { scratch } from "../lib/nodes.js";
import { killAll, startNode } from "../lib/processes.js";

const ctx = chaosContext("06-stalled-vs-slow");
const IDLE_MS = ctx.size(3000, 10_000);
const SLOW_BYTES = ctx.size(12 << 20, 1 << 30);
const SLOW_CHUNK_SLEEP_MS = 1000; // 1 MiB per second
const BODY_BYTES = ctx.size(6 << 20, 32 << 20);
const NS = "stall";
/** The SIGSTOP part: how long the peer stays stopped, its bodies, and its trickle per 1 MiB chunk. */
const STOP_MS = ctx.size(IDLE_MS * 3, 60_000);
const STOP_BODY_BYTES = ctx.size(16 << 20, 64 << 20);
const STOP_CHUNK_SLEEP_MS = 100;

/** Both tests write one result file: figures and violations are merged, the last record wins. */
const merged = { figures: {} as Record<string, unknown>, violations: [] as string[], notes: [] as string[] };
function recordMerged(figures: Record<string, unknown>, violations: readonly string[], notes: readonly string[]): void {
  Object.assign(merged.figures, figures);
  merged.violations.push(...violations);
  merged.notes.push(...notes);
  ctx.record({ passed: merged.violations.length === 0, figures: merged.figures, violations: merged.violations, notes: merged.notes });
}

const cleanups: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

/** A peer stream as B's wrapped client saw it. */
interface Watched {
  readonly method: string;
  readonly openedMs: number;
  /** When the pending next() began; undefined while the consumer holds a message (the idle deadline only runs while it waits). */
  pullMs?: number | undefined;
  idleFiredMs?: number;
  /** From the moment the stream began to wait on the peer (its pull, or `since()` if later) to its idle deadline. */
  firedAfterWaitMs?: number;
}

/**
 * B's peer clients, wrapped to note when each stream opened and when its idle deadline fired,
 * whatever the replication layer then does with the failure (fail the body, or resume it).
 */
function watchedPeerClients(tls: { ca: Buffer; cert: Buffer; key: Buffer }, idleMs: number, since: () => number): { streams: Watched[]; factory: (address: string, serverName?: string) => PeerClient } {
  const streams: Watched[] = [];
  const watched = <T>(method: string, src: () => AsyncIterable<T>): AsyncIterable<T> => ({
    async *[Symbol.asyncIterator](): AsyncGenerator<T> {
      const rec: Watched = { method, openedMs: Date.now() };
      streams.push(rec);
      const it = src()[Symbol.asyncIterator]();
      try {
        for (;;) {
          rec.pullMs = Date.now();
          const r = await it.next();
          rec.pullMs = undefined;
          if (r.done === true) return;
          yield r.value;
        }
      } catch (e) {
        if (e instanceof PeerRpcError && e.code === "IDLE_TIMEOUT") {
          rec.idleFiredMs = Date.now();
          rec.firedAfterWaitMs = rec.idleFiredMs - Math.max(since(), rec.pullMs ?? rec.idleFiredMs);
        }
        throw e;
      } finally {
        rec.pullMs = undefined;
        await it.return?.();
      }
    },
  });
  const factory = (address: string, serverName?: string): PeerClient => {
    const inner = createGrpcJsPeerClient(address, { tls, idleTimeoutMs: idleMs }, serverName);
    return {
      address: inner.address,
      hello: (r, sig) => inner.hello(r, sig),
      follow: (r, sig) => watched("Follow", () => inner.follow(r, sig)),
      listManifests: (r, sig) => watched("ListManifests", () => inner.listManifests(r, sig)),
      readBodies: (r, sig) => watched("ReadBodies", () => inner.readBodies(r, sig)),
      counters: () => inner.counters(),
      close: () => inner.close(),
    };
  };
  return { streams, factory };
}

it("the idle deadline cuts only the stalled stream, status says stalled; a slow body completes", async () => {
  const v = new Violations();
  const rng = ctx.rng;
  const dir = await scratch("stall");
  cleanups.push(dir.cleanup);
  const pki = await makePki(join(dir.path, "pki"));
  const fpA = new Failpoints();
  const a = await startMeshNode({ name: "a", pki, root: dir.path, config: { idleTimeoutMs: 60_000 }, hooks: { failpoints: fpA, processMetrics: false } });
  cleanups.push(() => a.close());
  const conn = publicClient(a);
  const bodies = Array.from({ length: 16 }, () => ({ seed: rng.u32(), size: BODY_BYTES }));
  const digests: string[] = [];
  for (const b of bodies) digests.push(await putCasBody(conn, NS, bodyBytes(b)));
  const stalledKey = rng.pick(digests);
  const stallAtChunk = rng.int(1, Math.floor(BODY_BYTES / (1 << 20)) - 1);
  const tlsB = await peerTlsPem(pki, "b");
  const retry = { initialMs: 200, maxMs: 2000, multiplier: 2, jitter: 0.2 };

  // Baseline: the same 16 bodies to a fresh node with nothing stalled, same settings.
  const baseStarted = Date.now();
  const b0 = await startMeshNode({ name: "b0", pki, root: dir.path, peers: [a.peerAddress], config: { idleTimeoutMs: IDLE_MS }, hooks: { replication: { retry }, processMetrics: false } });
  try {
    await waitForArtifacts(b0, NS, digests, AbortSignal.timeout(ctx.size(120_000, 600_000)));
  } finally {
    await b0.close();
  }
  const baselineMs = Date.now() - baseStarted;
  const baselineBytesPerSecond = (16 * BODY_BYTES) / (baselineMs / 1000);

  let stallStartMs = 0;
  let stallsDone = 0;
  fpA.set("peer.read-bodies.chunk", async (c) => {
    if (c["key"] !== stalledKey || stallsDone > 0 || Number(c["offset"]) < stallAtChunk << 20) return;
    stallsDone++;
    stallStartMs = Date.now();
    // Stop sending (bounded: long after the receiver's deadline).
    await new Promise((r) => setTimeout(r, IDLE_MS * 4));
  });

  const watch = watchedPeerClients(tlsB, IDLE_MS, () => stallStartMs);
  const logB = captureLog();
  const stallRunStarted = Date.now();
  const b = await startMeshNode({ name: "b", pki, root: dir.path, peers: [a.peerAddress], config: { idleTimeoutMs: IDLE_MS }, hooks: { peerClientFactory: watch.factory, replication: { retry }, processMetrics: false }, log: logB.log });
  cleanups.push(() => b.close());
  const statusConn = publicClient(b);
  const status = statusConn.client(NodeService);

  // Poll B's status while the bootstrap runs (bounded); note when it says stalled.
  const polls = { total: 0, stalledTrue: 0, firstStalledAfterStallMs: -1 };
  const limit = AbortSignal.timeout(ctx.size(120_000, 600_000));
  let polling = true;
  const poller = (async () => {
    for (let i = 0; i < 100_000 && polling && !limit.aborted; i++) {
      const s = await status.getStatus({}).catch(() => undefined);
      if (!s) continue;
      polls.total++;
      if ((s.status?.peers ?? []).some((p) => p.stalled)) {
        polls.stalledTrue++;
        if (polls.firstStalledAfterStallMs < 0 && stallStartMs > 0) polls.firstStalledAfterStallMs = Date.now() - stallStartMs;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  // The 15 others' throughput while one stream is stalled, against the baseline's.
  const others = digests.filter((d) => d !== stalledKey);
  let othersMs = -1;
  const othersHeld = waitForArtifacts(b, NS, others, limit).then(() => (othersMs = Date.now() - stallRunStarted));
  try {
    await waitReady(b, limit);
    await waitForArtifacts(b, NS, digests, limit);
    await othersHeld;
  } finally {
    polling = false;
    await poller;
  }
  const othersBytesPerSecond = (others.length * BODY_BYTES) / (othersMs / 1000);
  const othersVsBaseline = othersBytesPerSecond / baselineBytesPerSecond;
  // A throughput ratio on 2 shared cores is noise at smoke size (6 MiB bodies, ~1 s); asserted at full size.
  if (ctx.mode === "full") v.check(othersVsBaseline >= 0.8, `the 15 other streams ran at ${(othersVsBaseline * 100).toFixed(0)} % of the baseline's throughput (>= 80 % asked)`);

  // When did the deadline fire? The wrapped client saw it (B then fails the body, or resumes it
  // where it was cut; either way it is fetched).
  const firings = watch.streams.filter((x) => x.idleFiredMs !== undefined);
  const firedAfterMs = firings.length === 1 ? firings[0]!.firedAfterWaitMs! : -1;
  v.check(stallsDone === 1, `the stall was injected ${stallsDone} times`);
  v.check(firings.length === 1, `${firings.length} idle deadlines fired for the one stalled stream`);
  v.check(firedAfterMs >= IDLE_MS * 0.9, `idle deadline fired after ${firedAfterMs} ms, before idle - 10 % (${IDLE_MS * 0.9})`);
  v.check(firedAfterMs <= IDLE_MS + 2000, `idle deadline fired after ${firedAfterMs} ms, later than idle + 2 s`);
  const stalledOutcome = logB.events.find((e) => (e["event"] === "replication.body_failed" || e["event"] === "replication.body_resumed") && e["key"] === stalledKey);
  v.check(String(stalledOutcome?.["cause"] ?? "").includes(`no message for ${IDLE_MS} ms`), `the stalled body failed for another reason: ${String(stalledOutcome?.["cause"])}`);
  const otherFailures = logB.events.filter((e) => e["event"] === "replication.body_failed" && e["key"] !== stalledKey).length;
  v.check(otherFailures === 0, `${otherFailures} other bodies failed during the stall`);
  // Completed before the deadline: the 15 others (their apply is in the feed before the cut).
  v.check(polls.stalledTrue > 0, "status never said stalled during the stall");

  // Slow, not stalled: ~1 MB/s for several idle timeouts.
  let slowChunks = 0;
  fpA.set("peer.read-bodies.chunk", async (c) => {
    if (Number(c["size"]) !== SLOW_BYTES) return;
    slowChunks++;
    await new Promise((r) => setTimeout(r, SLOW_CHUNK_SLEEP_MS));
  });
  const slow = { seed: rng.u32(), size: SLOW_BYTES };
  const slowStarted = Date.now();
  const slowDigest = await putCasBody(conn, NS, bodyBytes(slow));
  const slowPolls = { total: 0, stalledTrue: 0 };
  let slowPolling = true;
  const slowPoller = (async () => {
    for (let i = 0; i < 100_000 && slowPolling; i++) {
      const s = await status.getStatus({}).catch(() => undefined);
      if (!s) continue;
      slowPolls.total++;
      if ((s.status?.peers ?? []).some((p) => p.stalled)) slowPolls.stalledTrue++;
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  try {
    await waitForArtifacts(b, NS, [slowDigest], AbortSignal.timeout(Math.round(SLOW_BYTES / 1000) + 120_000));
  } finally {
    slowPolling = false;
    await slowPoller;
  }
  const slowMs = Date.now() - slowStarted;
  v.check(slowMs > IDLE_MS * 2, `the slow body took ${slowMs} ms: not slow enough to prove there is no total cap`);
  v.check(slowPolls.stalledTrue === 0, `status said stalled ${slowPolls.stalledTrue} times for a slow (not stalled) body`);
  const slowFailures = logB.events.filter((e) => e["event"] === "replication.body_failed" && e["key"] === slowDigest).length;
  v.check(slowFailures === 0, `the slow body failed ${slowFailures} times`);

  // Oracle: every body on B byte for byte.
  let oracleReads = 0;
  for (const [i, d] of [...digests, slowDigest].entries()) {
    const r = await getCas(statusConn, NS, d);
    oracleReads++;
    const size = i < digests.length ? BODY_BYTES : SLOW_BYTES;
    v.check(r.kind === "ok" && r.digest === d && r.length === size, `B serves ${d} as ${JSON.stringify(r)}`);
  }
  conn.close();
  statusConn.close();
  const figures = {
    idleTimeoutMs: IDLE_MS,
    streams: 16,
    bodyBytes: BODY_BYTES,
    stallAtByte: stallAtChunk << 20,
    deadlineFiredAfterMs: firedAfterMs,
    stalledBodyOutcome: String(stalledOutcome?.["event"] ?? "none"),
    deadlineWindowMs: [Math.round(IDLE_MS * 0.9), IDLE_MS + 2000],
    otherBodiesFailedDuringStall: otherFailures,
    baselineMs,
    baselineBytesPerSecond: Math.round(baselineBytesPerSecond),
    othersHeldMs: othersMs,
    othersBytesPerSecond: Math.round(othersBytesPerSecond),
    othersVsBaseline: Number(othersVsBaseline.toFixed(3)),
    statusPollsDuringBootstrap: polls.total,
    statusPollsSayingStalled: polls.stalledTrue,
    firstStalledStatusAfterStallMs: polls.firstStalledAfterStallMs,
    slowBodyBytes: SLOW_BYTES,
    slowBodyMs: slowMs,
    slowBodyRateBytesPerSecond: Math.round(SLOW_BYTES / (slowMs / 1000)),
    slowChunksServed: slowChunks,
    slowStatusPolls: slowPolls.total,
    slowStatusPollsSayingStalled: slowPolls.stalledTrue,
    oracleReads,
  };
  recordMerged(figures, v.list, ctx.mode === "full" ? [] : ["The 15 other streams' throughput against the baseline is reported, asserted (>= 0.8) at full size only."]);
  ctx.log(JSON.stringify(figures));
  expect(v.list).toEqual([]);
});

it("a peer SIGSTOPped mid-bootstrap: idle deadlines fire in their window, status says stalled, the link recovers after SIGCONT", async () => {
  const v = new Violations();
  const rng = ctx.rng;
  const dir = await scratch("sigstop");
  cleanups.push(dir.cleanup);
  cleanups.push(killAll);
  const pki = await makePki(join(dir.path, "pki"));
  const ca = await pki.cert("a");
  const a = await startNode(
    ["--data-dir", join(dir.path, "a"), "--peer-listen", "127.0.0.1:0", "--tls-ca", pki.ca, "--tls-cert", ca.cert, "--tls-key", ca.key, "--node-id", "a"],
    `peer.read-bodies.chunk=sleep(${STOP_CHUNK_SLEEP_MS})`,
  );
  await a.waitReady();
  const pid = a.proc.pid!;
  const conn = connectPublic({ server: a.publicAddress });
  const bodies = Array.from({ length: 16 }, () => ({ seed: rng.u32(), size: STOP_BODY_BYTES }));
  const digests: string[] = [];
  for (const b of bodies) digests.push(await putCasBody(conn, NS, bodyBytes(b)));
  conn.close();

  let stopAt = 0;
  let contAt = 0;
  const tlsB = await peerTlsPem(pki, "b");
  const { streams, factory } = watchedPeerClients(tlsB, IDLE_MS, () => stopAt);
  const logB = captureLog();
  const b = await startMeshNode({ name: "b", pki, root: dir.path, peers: [a.peerAddress!], config: { idleTimeoutMs: IDLE_MS }, hooks: { peerClientFactory: factory, replication: { retry: { initialMs: 200, maxMs: 2000, multiplier: 2, jitter: 0.2 } }, processMetrics: false }, log: logB.log });
  cleanups.push(() => b.close());
  const statusConn = publicClient(b);
  const status = statusConn.client(NodeService);

  const limit = AbortSignal.timeout(STOP_MS + ctx.size(180_000, 600_000));
  const polls = { total: 0, duringStop: 0, stalledDuringStop: 0, firstStalledAfterStopMs: -1, stalledAfterRecovery: 0, phasesDuringStop: {} as Record<string, number>, streamsInFlightAtStop: 0, bytesFetchedAtStop: 0 };
  try {
    // Stop A once B is mid-bootstrap: some bytes in, streams open.
    for (let i = 0; i < 100_000 && stopAt === 0 && !limit.aborted; i++) {
      const s = await status.getStatus({}).catch(() => undefined);
      const p = s?.status?.peers[0];
      if (p && p.bytesFetched >= BigInt(STOP_BODY_BYTES) && p.streamsInFlight > 0) {
        polls.streamsInFlightAtStop = p.streamsInFlight;
        polls.bytesFetchedAtStop = Number(p.bytesFetched);
        stopAt = Date.now();
        process.kill(pid, "SIGSTOP");
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    v.check(stopAt > 0, "B never had streams open with bytes in: A was not stopped mid-bootstrap");
    // Poll B's status during the stop (bounded by STOP_MS).
    while (Date.now() - stopAt < STOP_MS && !limit.aborted) {
      const s = await status.getStatus({}).catch(() => undefined);
      const p = s?.status?.peers[0];
      if (p) {
        polls.total++;
        polls.duringStop++;
        const phase = PeerPhase[p.phase] ?? String(p.phase);
        polls.phasesDuringStop[phase] = (polls.phasesDuringStop[phase] ?? 0) + 1;
        if (p.stalled) {
          polls.stalledDuringStop++;
          if (polls.firstStalledAfterStopMs < 0) polls.firstStalledAfterStopMs = Date.now() - stopAt;
        }
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    if (stopAt > 0) {
      process.kill(pid, "SIGCONT");
      contAt = Date.now();
    }
  }
  await waitForArtifacts(b, NS, digests, limit).catch((e: unknown) => v.check(false, `B did not get every body after SIGCONT: ${String(e)}`));
  const recoveredAfterContMs = Date.now() - contAt;
  const after = await status.getStatus({}).catch(() => undefined);
  if ((after?.status?.peers ?? []).some((p) => p.stalled)) polls.stalledAfterRecovery++;

  // Every stream waiting on A during the stop fired its idle deadline within [idle - 10 %,
  // idle + 2 s] of the moment it began to wait (the stop, or its pull if later: a stream opened
  // by a retry or a resume, or one whose consumer was busy); none waited longer unfired; none
  // fired while A was running.
  const fired = streams.filter((x) => x.firedAfterWaitMs !== undefined && x.idleFiredMs! >= stopAt && x.idleFiredMs! <= contAt + IDLE_MS + 2000);
  const firedMs = fired.map((x) => x.firedAfterWaitMs!).sort((x, y) => x - y);
  const openAtStop = streams.filter((x) => x.openedMs < stopAt && (x.idleFiredMs === undefined || x.idleFiredMs >= stopAt));
  const firedOutsideStop = streams.filter((x) => x.idleFiredMs !== undefined && (x.idleFiredMs < stopAt || x.idleFiredMs > contAt + IDLE_MS + 2000)).length;
  // Still waiting (unfired) at SIGCONT for longer than the deadline allows.
  const overdue = streams.filter((x) => x.idleFiredMs === undefined && x.pullMs !== undefined && contAt - Math.max(stopAt, x.pullMs) > IDLE_MS + 2000);
  const earliest = firedMs[0] ?? -1;
  const latest = firedMs[firedMs.length - 1] ?? -1;
  v.check(openAtStop.length > 0, "no peer stream was open when A was stopped");
  v.check(fired.length > 0, "no idle deadline fired while A was stopped");
  v.check(earliest >= IDLE_MS * 0.9, `an idle deadline fired ${earliest} ms after its stream began to wait, before idle - 10 % (${IDLE_MS * 0.9})`);
  v.check(latest <= IDLE_MS + 2000, `an idle deadline fired ${latest} ms after its stream began to wait, later than idle + 2 s`);
  v.check(overdue.length === 0, `${overdue.length} streams (${overdue.map((x) => x.method).join(", ")}) waited on the stopped peer past idle + 2 s without their deadline firing`);
  v.check(firedOutsideStop === 0, `${firedOutsideStop} idle deadlines fired while A was running`);
  const firedByMethod: Record<string, number> = {};
  for (const x of fired) firedByMethod[x.method] = (firedByMethod[x.method] ?? 0) + 1;
  const stopFailures = logB.events.filter((e) => e["event"] === "replication.body_failed" && Date.parse(String(e["time"])) >= stopAt && Date.parse(String(e["time"])) <= contAt + 2000);
  v.check(polls.stalledDuringStop > 0, "status never said stalled while A was stopped");
  v.check(polls.stalledAfterRecovery === 0, "status still says stalled after the link recovered");

  // Oracle: every body on B byte for byte.
  let oracleReads = 0;
  for (const d of digests) {
    const r = await getCas(statusConn, NS, d);
    oracleReads++;
    v.check(r.kind === "ok" && r.digest === d && r.length === STOP_BODY_BYTES, `B serves ${d} as ${JSON.stringify(r)}`);
  }
  statusConn.close();
  const figures = {
    sigstop: {
      stopMs: STOP_MS,
      bodies: 16,
      bodyBytes: STOP_BODY_BYTES,
      trickleSleepPerMiBMs: STOP_CHUNK_SLEEP_MS,
      bytesFetchedAtStop: polls.bytesFetchedAtStop,
      streamsInFlightAtStop: polls.streamsInFlightAtStop,
      streamsOpenAtStop: openAtStop.length,
      streamsOpenedDuringStop: streams.filter((x) => x.openedMs >= stopAt && x.openedMs < contAt).length,
      idleDeadlinesFired: fired.length,
      idleDeadlinesFiredByMethod: firedByMethod,
      deadlineFiredAfterWaitMs: { min: earliest, max: latest },
      bodiesFailedDuringStop: stopFailures.length,
      bodiesResumedAfterIdle: logB.events.filter((e) => e["event"] === "replication.body_resumed" && String(e["cause"] ?? "").includes("no message for")).length,
      deadlineWindowMs: [Math.round(IDLE_MS * 0.9), IDLE_MS + 2000],
      statusPollsDuringStop: polls.duringStop,
      statusPollsSayingStalled: polls.stalledDuringStop,
      firstStalledStatusAfterStopMs: polls.firstStalledAfterStopMs,
      phasesDuringStop: polls.phasesDuringStop,
      recoveredAfterSigcontMs: recoveredAfterContMs,
      stalledAfterRecovery: polls.stalledAfterRecovery,
      oracleReads,
    },
  };
  recordMerged(figures, v.list, ["SIGSTOP part: B retries with a 200 ms..2 s backoff (test hook), so recovery after SIGCONT measures the link, not the default 60 s backoff cap."]);
  ctx.log(JSON.stringify(figures));
  expect(v.list).toEqual([]);
});
