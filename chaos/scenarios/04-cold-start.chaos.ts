/**
 * Scenario 4 — full-mesh cold start over the emulated WAN (root only; skipped with the reason
 * printed otherwise). Five `granary serve` children, each in its own network namespace of the
 * WAN lab (bench/wan/netns.ts: 10.200.i.2, every packet between nodes through the router's TUN
 * delay line and tbf), real mTLS with dev certificates, peers listed by address, start times
 * spread at random (seeded) over 10 s.
 *
 * (a) all five wiped; right after each node is listening, a client next to it puts a modest
 *     dataset into it (the mesh is still starting).
 * (b) four wiped and one warm: its data dir is filled once per scenario through the store
 *     (in this process) and copied for every run, so every run starts from the same warm
 *     state; the same live puts as (a). The warm node never draws the latest start time, so
 *     at least one wiped node bootstraps from it (and is not Ready for a while) in every run.
 *
 * Invariants per run: every node Ready (its readiness.changed event) within a bound; no
 * stream aborted while bytes were flowing (the nodes' own log events: a body fetch failed, a
 * served body cut, a manifest walk failed, a pass retried/abandoned/aborted, a link in backoff
 * after contact — the peers never die here, so each is a defect); every peer-plane probe
 * (Hello + one ListManifests page over mTLS with a mesh identity) made while the node was
 * not Ready answered OK, and (b) made at least one such probe; /readyz says 200 at the end.
 * Oracle: every node holds every expected digest (FindMissing over the whole set: the warm
 * node's artifacts and every acknowledged live put), and serves byte for byte (SHA-256 and
 * length of a full Get) every live put and a seeded sample of the warm set (2,000 per node at
 * full size, 400 in smoke).
 */
import { execFileSync } from "node:child_process";
import { mkdir, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { ArtifactService } from "../../src/gen/granary/artifact/v1/artifact_pb.js";
import { openStore } from "../../src/store/store.js";
import { createGrpcJsPeerClient } from "../../src/transport/peer-client-grpcjs.js";
import type { PeerClient } from "../../src/transport/peer-client.js";
import { connectPublic, type PublicConnection } from "../../src/transport/public-client.js";
import { makePki, type Pki } from "../../test/helpers/mesh.js";
import { bodyBytes, buildSize, codeOf, digestOf, getCas, putCasBody, type BodySpec } from "../lib/artifacts.js";
import { chaosContext, Violations } from "../lib/context.js";
import { scratch } from "../lib/nodes.js";
import { loadWanLab, startNodeInNs, startRelay, wanUnavailable, type NsNode, type Relay, type WanHost, type WanTopology } from "../lib/wan.js";

const ctx = chaosContext("04-cold-start");
type Variant = "a" | "b";
const NODES = 5;
const envInt = (name: string): number | undefined => (process.env[name] ? Number(process.env[name]) : undefined);
/** Runs of each variant (CHAOS_COLD_RUNS overrides). */
const RUNS = envInt("CHAOS_COLD_RUNS") ?? ctx.size(1, 20);
/** Artifacts on the warm node of (b) (CHAOS_COLD_WARM overrides). */
const WARM_ARTIFACTS = envInt("CHAOS_COLD_WARM") ?? ctx.size(2000, 200_000);
/** Variants to run, "ab" by default (CHAOS_COLD_VARIANTS=b runs only the warm one). */
const VARIANTS = [...(process.env["CHAOS_COLD_VARIANTS"] ?? "ab")].filter((x): x is Variant => x === "a" || x === "b");
const LIVE_PER_NODE = ctx.size(12, 40);
const START_SPREAD_MS = 10_000;
const LINK = { rttMs: 50, rateMbit: 200, lossPercent: 0 };
/** From a run's first start to every node Ready; then to every node holding everything. */
// 20 ms per warm artifact: four receivers bootstrap small artifacts from one source on 2 shared
// cores at ~80-300 artifacts/s each (see docs/RELIABILITY.md, scenario 4).
const READY_BOUND_MS = Math.max(ctx.size(90_000, 300_000), WARM_ARTIFACTS * 20);
const CONVERGE_BOUND_MS = Math.max(ctx.size(90_000, 300_000), WARM_ARTIFACTS * 20);
/** Warm artifacts read byte for byte per node (seeded sample); FindMissing covers them all. */
const SAMPLE_PER_NODE = envInt("CHAOS_COLD_SAMPLE") ?? ctx.size(400, 2000);
const PROBE_EVERY_MS = 200;
/** Ports inside each host namespace (each has its own port space). */
const PORT = { public: 7070, peer: 7443, ops: 9464 };
const NS = "cold";

/** Log events that mean a replication stream was cut or failed while it carried data. */
const ABORT_EVENTS = new Set([
  "peer.body_cut",
  "replication.body_failed",
  "replication.body_resumed",
  "replication.walk_failed",
  "replication.pass_retry",
  "replication.pass_abandoned",
  "replication.pass_aborted",
  "replication.link_crashed",
]);

let topo: WanTopology | undefined;
const relays: Relay[] = [];
const cleanups: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const r of relays) await r.close().catch(() => {});
  topo?.close();
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

interface Probe {
  readonly node: number;
  readonly endMs: number;
  readonly ok: boolean;
  readonly error?: string;
}

interface RunResult {
  readonly variant: Variant;
  readonly run: number;
  readonly allReady: boolean;
  readonly allReadyMs: number | undefined;
  readonly convergedMs: number | undefined;
  readonly readyMs: Array<number | undefined>;
  readonly readyReasons: string[];
  /** Nodes that latched Ready after finding a peer unreachable (its first dial failed). */
  readonly readyWithUnreachable: number;
  /** (b) wiped nodes whose dial of the warm node failed first, so Ready came without its artifacts. */
  readonly readyWithoutWarm: number;
  readonly aborted: number;
  readonly probes: number;
  readonly probesNotReady: number;
  readonly probesNotReadyOk: number;
  readonly livePuts: number;
  readonly expected: number;
  readonly findMissingChecked: number;
  readonly reads: number;
  readonly readsMs: number;
  readonly violations: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number): number | undefined => {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
};

async function pool<T>(items: readonly T[], concurrency: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

async function missingOn(conn: PublicConnection, digests: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (let k = 0; k < digests.length; k += 5000) {
    out.push(...(await conn.client(ArtifactService).findMissing({ namespace: NS, digests: digests.slice(k, k + 5000) }, { signal: AbortSignal.timeout(60_000) })).missingDigests);
  }
  return out;
}

async function probe(client: PeerClient): Promise<string | undefined> {
  try {
    await client.hello({ nodeId: "prober", incarnation: "", advertiseAddress: "", capabilities: [] }, AbortSignal.timeout(10_000));
    for await (const page of client.listManifests({ pageItems: 64, pageBytes: 1n << 20n, maxPages: 1 }, AbortSignal.timeout(10_000))) void page;
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

it("five nodes cold-start over the WAN (all wiped; four wiped + one warm): all Ready, no stream aborted, peer plane served while not Ready, every digest everywhere", async (t) => {
  const why = await wanUnavailable();
  if (why !== undefined) {
    ctx.log(`SKIPPED: ${why}`);
    ctx.record({ passed: true, figures: { skipped: true }, violations: [], notes: [why] });
    t.skip();
    return;
  }
  const v = new Violations();
  const rng = ctx.rng;
  const dir = await scratch("cold");
  cleanups.push(dir.cleanup);
  const pki: Pki = await makePki(join(dir.path, "pki"));
  // The probes' mesh identity: a node certificate of the mesh CA that no node lists as a peer.
  const prober = await pki.cert("prober");
  const tls = { ca: await readFile(pki.ca), cert: await readFile(prober.cert), key: await readFile(prober.key) };
  const certs = await Promise.all(Array.from({ length: NODES }, (_, i) => pki.cert(`n${i + 1}`)));

  const lab = await loadWanLab();
  const built = Date.now();
  topo = await lab.WanTopology.create(NODES, LINK);
  const hosts: WanHost[] = topo.hosts;
  const sockDir = join(dir.path, "sock");
  await mkdir(sockDir);
  for (const h of hosts) relays.push(await startRelay(topo, h, sockDir, { public: `127.0.0.1:${PORT.public}`, peer: `${h.address}:${PORT.peer}`, ops: `127.0.0.1:${PORT.ops}` }));
  const ping = topo.run(hosts[0]!.ns, ["ping", "-c", "3", "-i", "0.2", "-q", hosts[1]!.address], 20_000);
  const rtt = /= [\d.]+\/([\d.]+)\//.exec(ping)?.[1];
  ctx.log(`topology: ${NODES} namespaces, RTT ${LINK.rttMs} ms (ping avg ${rtt} ms), tbf ${LINK.rateMbit} Mbit/s, built in ${Date.now() - built} ms`);

  // The warm node's data dir, filled once through the store, copied for each run of (b).
  const warm = rng.int(0, NODES - 1);
  const warmDir = join(dir.path, "warm-seed");
  const warmSpecs: BodySpec[] = Array.from({ length: WARM_ARTIFACTS }, () => ({ seed: rng.u32(), size: buildSize(rng.next(), 512, 4096) }));
  const warmDigests: string[] = new Array<string>(WARM_ARTIFACTS);
  const specOf = new Map<string, BodySpec>();
  const fillStart = Date.now();
  {
    const store = await openStore({ dataDir: warmDir, nodeId: `n${warm + 1}` });
    try {
      await pool([...warmSpecs.keys()], 64, async (k) => {
        const body = bodyBytes(warmSpecs[k]!);
        const digest = digestOf(body);
        warmDigests[k] = digest;
        specOf.set(digest, warmSpecs[k]!);
        await store.put({ namespace: NS, kind: "cas", key: digest, size: body.length }, (async function* () { yield body; })());
      });
    } finally {
      await store.close();
    }
  }
  const warmBytes = warmSpecs.reduce((n, s) => n + s.size, 0);
  const fillMs = Date.now() - fillStart;
  ctx.log(`warm node n${warm + 1}: ${WARM_ARTIFACTS} artifacts, ${(warmBytes / 2 ** 20).toFixed(1)} MiB, filled in ${fillMs} ms`);

  const runOnce = async (variant: Variant, run: number): Promise<RunResult> => {
    // Violations of this run (v keeps the first 200 of the scenario only).
    let broken = 0;
    const check = (ok: boolean, what: string): void => {
      if (!ok) broken++;
      v.check(ok, what);
    };
    const tag = `${variant}${run + 1}`;
    const runDir = join(dir.path, `run-${tag}`);
    await mkdir(runDir, { recursive: true });
    // Every seeded choice of the run is drawn here, before anything runs concurrently.
    const offsets = Array.from({ length: NODES }, () => rng.int(0, START_SPREAD_MS));
    const first = offsets.indexOf(Math.min(...offsets));
    offsets[first] = 0;
    if (variant === "b") {
      const last = offsets.indexOf(Math.max(...offsets));
      if (last === warm) {
        const other = [...Array(NODES).keys()].filter((i) => i !== warm)[rng.int(0, NODES - 2)]!;
        [offsets[warm], offsets[other]] = [offsets[other]!, offsets[warm]!];
      }
    }
    const live: BodySpec[][] = Array.from({ length: NODES }, () => Array.from({ length: LIVE_PER_NODE }, () => ({ seed: rng.u32(), size: buildSize(rng.next(), 8 << 10, 512 << 10) })));
    const sample: number[][] = Array.from({ length: NODES }, () => {
      if (variant === "a") return [];
      if (WARM_ARTIFACTS <= SAMPLE_PER_NODE) return [...Array(WARM_ARTIFACTS).keys()];
      const picked = new Set<number>();
      while (picked.size < SAMPLE_PER_NODE) picked.add(rng.int(0, WARM_ARTIFACTS - 1));
      return [...picked];
    });
    if (variant === "b") execFileSync("cp", ["-a", "--sparse=always", warmDir, join(runDir, `n${warm + 1}`)]);

    const args = (i: number): string[] => [
      "--data-dir", join(runDir, `n${i + 1}`),
      "--listen", `127.0.0.1:${PORT.public}`,
      "--peer-listen", `${hosts[i]!.address}:${PORT.peer}`,
      "--advertise-address", `https://${hosts[i]!.address}:${PORT.peer}`,
      "--ops-listen", `127.0.0.1:${PORT.ops}`,
      "--tls-ca", pki.ca, "--tls-cert", certs[i]!.cert, "--tls-key", certs[i]!.key,
      "--peers", hosts.filter((_, k) => k !== i).map((h) => `https://${h.address}:${PORT.peer}`).join(","),
      "--shutdown-grace-ms", "1000",
      "--log-level", "info",
    ];
    const nodes: Array<NsNode | undefined> = new Array(NODES).fill(undefined);
    const conns: Array<PublicConnection | undefined> = new Array(NODES).fill(undefined);
    const probers: PeerClient[] = [];
    const probes: Probe[] = [];
    const acked = new Map<string, BodySpec>();
    const readyAt: Array<number | undefined> = new Array(NODES).fill(undefined);
    const readyReasons: string[] = new Array<string>(NODES).fill("");
    const listeningAt: Array<number | undefined> = new Array(NODES).fill(undefined);
    let runEnded = false;
    const t0 = Date.now();
    try {
      // Start every node at its offset; once it listens: live puts next to it, and peer-plane
      // probes until it is Ready.
      const side: Array<Promise<void>> = [];
      await Promise.all(
        offsets.map(async (off, i) => {
          await sleep(off);
          const node = startNodeInNs(topo!, hosts[i]!, `n${i + 1}`, args(i), join(runDir, `n${i + 1}.log`));
          nodes[i] = node;
          try {
            listeningAt[i] = Date.parse(String((await node.event((e) => e["event"] === "listening", "listening", 60_000))["time"]));
          } catch (e) {
            check(false, `${tag}: n${i + 1} did not start: ${(e as Error).message}`);
            return;
          }
          const conn = connectPublic({ server: `127.0.0.1:${relays[i]!.ports["public"]}` });
          conns[i] = conn;
          side.push(
            pool(live[i]!, 4, async (spec) => {
              try {
                const d = await putCasBody(conn, NS, bodyBytes(spec), AbortSignal.timeout(60_000));
                acked.set(d, spec);
              } catch (e) {
                check(false, `${tag}: a put on n${i + 1} during the cold start failed: ${codeOf(e)} ${(e as Error).message}`);
              }
            }),
          );
          const client = createGrpcJsPeerClient(`https://127.0.0.1:${relays[i]!.ports["peer"]}`, { tls, idleTimeoutMs: 10_000 });
          probers.push(client);
          side.push(
            (async () => {
              const isReady = (): boolean => node.events.some((e) => e["event"] === "readiness.changed" && e["ready"] === true);
              for (let n = 0; n < 100_000 && !runEnded && !isReady(); n++) {
                const error = await probe(client);
                probes.push({ node: i, endMs: Date.now(), ok: error === undefined, ...(error !== undefined ? { error } : {}) });
                await sleep(PROBE_EVERY_MS);
              }
            })(),
          );
          try {
            const e = await node.event((x) => x["event"] === "readiness.changed" && x["ready"] === true, "Ready", Math.max(1, READY_BOUND_MS - (Date.now() - t0)));
            readyAt[i] = Date.parse(String(e["time"]));
            readyReasons[i] = String(e["reason"]);
          } catch (e) {
            check(false, `${tag}: n${i + 1} not Ready ${READY_BOUND_MS} ms after the first start: ${(e as Error).message}`);
          }
        }),
      );
      const allReady = readyAt.every((x) => x !== undefined);
      const allReadyMs = allReady ? Math.max(...(readyAt as number[])) - t0 : undefined;
      runEnded = true;
      await Promise.all(side);

      // Oracle 1: every node holds the whole expected set (bounded wait, shrinking the list).
      const expected = [...(variant === "b" ? warmDigests : []), ...acked.keys()];
      const convergeStart = Date.now();
      let findMissingChecked = 0;
      let convergedMs: number | undefined = 0;
      for (let i = 0; i < NODES; i++) {
        const conn = conns[i];
        if (!conn) {
          convergedMs = undefined;
          continue;
        }
        let missing: string[] = expected;
        for (let n = 0; n < 100_000 && missing.length > 0 && Date.now() - convergeStart < CONVERGE_BOUND_MS; n++) {
          try {
            missing = await missingOn(conn, missing);
          } catch (e) {
            check(false, `${tag}: FindMissing on n${i + 1} failed: ${codeOf(e)}`);
            break;
          }
          if (missing.length > 0) await sleep(ctx.size(500, 3000));
        }
        findMissingChecked += expected.length;
        if (missing.length > 0) {
          convergedMs = undefined;
          const fromWarm = missing.filter((d) => !acked.has(d)).length;
          check(false, `${tag}: n${i + 1} misses ${missing.length} of ${expected.length} digests ${CONVERGE_BOUND_MS} ms after all Ready (${fromWarm} of the warm set), e.g. ${missing.slice(0, 3).join(", ")}`);
        }
      }
      if (convergedMs !== undefined) convergedMs = Date.now() - t0;

      // Oracle 2: byte for byte, every live put and the warm sample, from every node.
      let reads = 0;
      const readsStart = Date.now();
      await Promise.all(
        conns.map(async (conn, i) => {
          if (!conn) return;
          const want = [...acked.keys(), ...sample[i]!.map((k) => warmDigests[k]!)];
          await pool(want, 8, async (d) => {
            const spec = acked.get(d) ?? specOf.get(d)!;
            const r = await getCas(conn, NS, d, AbortSignal.timeout(60_000));
            reads++;
            check(r.kind === "ok" && r.digest === d && r.length === spec.size, `${tag}: n${i + 1} serves ${d} (${spec.size} B) as ${JSON.stringify(r)}`);
          });
        }),
      );

      const readsMs = Date.now() - readsStart;

      // The ops plane agrees (every node answers /readyz 200).
      for (let i = 0; i < NODES; i++) {
        if (!nodes[i]) continue;
        const status = await fetch(`http://127.0.0.1:${relays[i]!.ports["ops"]}/readyz`, { signal: AbortSignal.timeout(10_000) }).then((r) => r.status).catch((e: unknown) => String(e));
        check(status === 200, `${tag}: n${i + 1} /readyz answers ${status} after the run`);
      }

      // Streams aborted while bytes flowed: counted from the nodes' own logs, before any stop.
      let aborted = 0;
      const abortKinds = new Map<string, number>();
      for (let i = 0; i < NODES; i++) {
        for (const e of nodes[i]?.events ?? []) {
          const ev = String(e["event"]);
          const backoff = ev === "replication.phase" && e["to"] === "backoff";
          if (!ABORT_EVENTS.has(ev) && !backoff) continue;
          aborted++;
          const err = e["err"] as { message?: string; cause?: { message?: string } } | undefined;
          const why = String(err?.cause?.message ?? err?.message ?? e["error"] ?? e["msg"] ?? "").replace(/\d+ of \d+/g, "N of M").replace(/seq \d+/g, "seq S").slice(0, 200);
          const k = `n${i + 1} ${ev}${backoff ? " -> backoff" : ""} (peer ${String(e["peer"] ?? "")}): ${why}`;
          abortKinds.set(k, (abortKinds.get(k) ?? 0) + 1);
        }
      }
      for (const [k, n] of abortKinds) check(false, `${tag}: ${n} x ${k}`);

      // Peer plane while not Ready: a probe counts when it ended before the node's Ready time.
      const notReady = probes.filter((p) => readyAt[p.node] === undefined || p.endMs < readyAt[p.node]!);
      for (const p of notReady) check(p.ok, `${tag}: n${p.node + 1} refused a peer-plane probe while not Ready: ${p.error}`);
      if (variant === "b") check(notReady.length > 0, `${tag}: no peer-plane probe hit a node while it was not Ready (the invariant was not exercised)`);

      // Peers each node gave up on at start (replication.initial_sync how=unreachable): the
      // readiness reason counts links by their phase at the time it latched, not by this.
      const unreachableAtStart = nodes.map((n) => (n?.events ?? []).filter((e) => e["event"] === "replication.initial_sync" && e["how"] === "unreachable").map((e) => new URL(String(e["peer"])).hostname));
      const result: RunResult = {
        variant,
        run,
        allReady,
        allReadyMs,
        convergedMs,
        readyMs: readyAt.map((x) => (x === undefined ? undefined : x - t0)),
        readyWithUnreachable: unreachableAtStart.filter((u) => u.length > 0).length,
        readyWithoutWarm: variant === "b" ? unreachableAtStart.filter((u, i) => i !== warm && u.includes(hosts[warm]!.address)).length : 0,
        readyReasons: readyReasons.map((r, i) => `n${i + 1}${i === warm && variant === "b" ? " (warm)" : ""} started +${offsets[i]} ms, listening +${(listeningAt[i] ?? NaN) - t0} ms, Ready +${(readyAt[i] ?? NaN) - t0} ms: ${r}${unreachableAtStart[i]!.length > 0 ? `; first dial failed: ${unreachableAtStart[i]!.join(", ")}` : ""}`),
        aborted,
        probes: probes.length,
        probesNotReady: notReady.length,
        probesNotReadyOk: notReady.filter((p) => p.ok).length,
        livePuts: acked.size,
        expected: expected.length,
        findMissingChecked,
        reads,
        readsMs,
        violations: broken,
      };
      ctx.log(`${tag}: allReady=${allReady} in ${allReadyMs} ms, converged ${convergedMs} ms, aborted ${aborted}, probes ${probes.length} (${notReady.length} while not Ready, ${result.probesNotReadyOk} OK), live puts ${acked.size}, expected ${expected.length}, reads ${reads} in ${readsMs} ms, violations ${result.violations}`);
      return result;
    } finally {
      runEnded = true;
      for (const c of probers) c.close();
      for (const c of conns) c?.close();
      await Promise.all(nodes.map((n) => (n ? n.stop() : Promise.resolve())));
      // Keep the logs of a run that broke an invariant (of every run with CHAOS_COLD_KEEP_LOGS=1).
      const resultsDir = process.env["CHAOS_RESULTS_DIR"];
      if ((broken > 0 || process.env["CHAOS_COLD_KEEP_LOGS"]) && resultsDir) {
        const keep = join(resultsDir, `${ctx.name}-logs`, `run-${tag}`);
        await mkdir(keep, { recursive: true });
        for (const f of (await readdir(runDir)).filter((x) => x.endsWith(".log"))) await writeFile(join(keep, f), await readFile(join(runDir, f)));
      }
      await rm(runDir, { recursive: true, force: true });
    }
  };

  const results: RunResult[] = [];
  for (const variant of VARIANTS) for (let run = 0; run < RUNS; run++) results.push(await runOnce(variant, run));

  const summary = (variant: Variant): Record<string, unknown> => {
    const rs = results.filter((r) => r.variant === variant);
    const ready = rs.filter((r) => r.allReady).map((r) => r.allReadyMs!);
    const conv = rs.filter((r) => r.convergedMs !== undefined).map((r) => r.convergedMs!);
    return {
      runs: rs.length,
      allReadyRuns: ready.length,
      timeToAllReadyMs: { p50: pct(ready, 0.5), max: ready.length ? Math.max(...ready) : undefined },
      timeToAllHoldingEverythingMs: { p50: pct(conv, 0.5), max: conv.length ? Math.max(...conv) : undefined },
      abortedStreams: rs.reduce((n, r) => n + r.aborted, 0),
      // Ready by the rule's other branch: a peer known at start failed its first dial (not
      // started yet, or too busy to finish TCP + TLS within the 5 s connect timeout), so the
      // node latched Ready before catching up with it.
      nodesReadyWithAPeerUnreachable: rs.reduce((n, r) => n + r.readyWithUnreachable, 0),
      wipedNodesReadyWithoutTheWarmSet: rs.reduce((n, r) => n + r.readyWithoutWarm, 0),
      peerProbes: rs.reduce((n, r) => n + r.probes, 0),
      peerProbesWhileNotReady: rs.reduce((n, r) => n + r.probesNotReady, 0),
      peerProbesWhileNotReadyOk: rs.reduce((n, r) => n + r.probesNotReadyOk, 0),
      livePutsAcknowledged: rs.reduce((n, r) => n + r.livePuts, 0),
      digestsCheckedWithFindMissing: rs.reduce((n, r) => n + r.findMissingChecked, 0),
      byteForByteReads: rs.reduce((n, r) => n + r.reads, 0),
      perRun: rs.map((r) => ({ run: r.run + 1, allReadyMs: r.allReadyMs, convergedMs: r.convergedMs, readyMs: r.readyMs, aborted: r.aborted, probesNotReady: r.probesNotReady, violations: r.violations, ready: r.readyReasons })),
    };
  };
  const figures = {
    nodes: NODES,
    link: { ...LINK, pingAvgMs: rtt === undefined ? undefined : Number(rtt) },
    startSpreadMs: START_SPREAD_MS,
    warm: { node: `n${warm + 1}`, artifacts: WARM_ARTIFACTS, bytes: warmBytes, fillMs },
    livePerNode: LIVE_PER_NODE,
    bounds: { readyMs: READY_BOUND_MS, convergeMs: CONVERGE_BOUND_MS },
    allWiped: summary("a"),
    oneWarm: summary("b"),
  };
  ctx.record({ passed: v.list.length === 0, figures, violations: v.list });
  ctx.log(JSON.stringify({ ...figures, allWiped: { ...figures.allWiped, perRun: undefined }, oneWarm: { ...figures.oneWarm, perRun: undefined } }));
  expect(v.list).toEqual([]);
});
