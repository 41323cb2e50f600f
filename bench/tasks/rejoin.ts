/**
 * Scenario E (issue 4, scenario 5): rejoin catch-up. Two nodes A and B over real mTLS on
 * loopback both hold the same N artifacts, B's cursor on A at A's feed head; B is down while
 * `delta` artifacts are Put to A through its public listener; then B starts again on its data
 * dir. Figure: time from B's node start (GranaryNode.start: store open, listeners,
 * replication) until B holds every delta artifact AND its link to A follows at A's head
 * (cursor >= A's head after the delta, status lag 0). The same delta on a mesh of N_small
 * artifacts, measured in the same round, gives the ratio "cost follows the delta, not the
 * dataset".
 *
 * rejoin-seed (once per N, cached under bench/.cache/<seed>-<N>/): A's data dir is filled
 * through the store API in-process (group commit, many puts in flight; resumable across task
 * processes, it takes minutes at 1M); B gets a copy of A's segment files and opens them under
 * its own identity (the store rebuilds its index from the segments under a new incarnation, so
 * B holds the same records, versions and origins a replica would); then both start as real
 * nodes, each bootstraps from the other (every body already present: the walk only compares
 * manifests) and follows to the other's head; both stop cleanly, and the persisted state is
 * checked: B's cursor on A = A's feed head. Nothing of that is measured as the figure.
 *
 * rejoin (one per N per round): the cached dirs are copied to the work dir (so every round
 * starts from the same state), A starts as a child process (`granary serve`), the delta goes
 * to A through the public Put while B is down, then B starts in THIS process (a cold process:
 * process start itself is not in the figure, store open is), so its change feed is observed
 * exactly (store.waitForFeed) and its link state is read directly.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { NodeService, PeerPhase } from "../../src/gen/granary/node/v1/node_pb.js";
import { ArtifactService } from "../../src/gen/granary/artifact/v1/artifact_pb.js";
import { DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_PEER_WINDOW_BYTES, resolveNodeConfig } from "../../src/node/config.js";
import { GranaryNode } from "../../src/node/granary-node.js";
import { openStore } from "../../src/store/store.js";
import { createLogger } from "../../src/telemetry/logger.js";
import { createGrpcJsPeerClient } from "../../src/transport/peer-client-grpcjs.js";
import type { PeerClientFactory } from "../../src/transport/peer-client.js";
import { connectPublic } from "../../src/transport/public-client.js";
import { NAMESPACE, pool, putCas, watchFeed } from "../lib/common.js";
import { keystream, prng, sha256Hex } from "../lib/data.js";
import { cpuSecondsOf, startGranaryChild, type GranaryChild } from "../lib/proc.js";
import { SHUTDOWN_GRACE_MS, type NodeCert } from "./bootstrap.js";
import type { TaskContext } from "./task-context.js";

// ------------------------------------------------------------------ parameters

const KiB = 1024;

/** Knobs of scenario E (full / smoke), overridable by the environment like bench/lib/params.ts. */
export const REJOIN_KNOBS = {
  eArtifacts: { env: "BENCH_E_ARTIFACTS", full: 1_000_000, smoke: 2_000, help: "E: artifacts in the large mesh (both nodes hold them)" },
  eSmallArtifacts: { env: "BENCH_E_SMALL_ARTIFACTS", full: 10_000, smoke: 200, help: "E: artifacts in the comparison mesh" },
  eDelta: { env: "BENCH_E_DELTA", full: 1_000, smoke: 50, help: "E: artifacts Put to A while B is down" },
  eMinBytes: { env: "BENCH_E_MIN_BYTES", full: 256, smoke: 256, help: "E: smallest artifact (sizes uniform in [min, max])" },
  eMaxBytes: { env: "BENCH_E_MAX_BYTES", full: 4 * KiB, smoke: 4 * KiB, help: "E: largest artifact" },
  eFillConcurrency: { env: "BENCH_E_FILL_CONCURRENCY", full: 256, smoke: 64, help: "E: store.put calls in flight while seeding A (not a figure)" },
  eMaxSeconds: { env: "BENCH_E_MAX_S", full: 120, smoke: 60, help: "E: time cap of one catch-up (then the figure is a lower bound, marked partial)" },
} as const;

export type RejoinParams = { -readonly [K in keyof typeof REJOIN_KNOBS]: number };

export function rejoinParams(profile: "full" | "smoke", env: NodeJS.ProcessEnv = process.env): RejoinParams {
  const out: Record<string, number> = {};
  for (const [name, k] of Object.entries(REJOIN_KNOBS)) {
    const text = env[k.env];
    const v = text !== undefined && text !== "" ? Number(text) : k[profile];
    if (!Number.isInteger(v) || v < 0) throw new Error(`${k.env}: want an integer >= 0, got "${text}"`);
    out[name] = v;
  }
  const p = out as RejoinParams;
  if (p.eMinBytes < 1 || p.eMaxBytes < p.eMinBytes) throw new Error("BENCH_E_MIN_BYTES/BENCH_E_MAX_BYTES: want 1 <= min <= max");
  return p;
}

/**
 * bench/lib/params.ts knows scenarios A, B, C only: this takes E out of BENCH_ONLY before it is
 * parsed there, and says whether E runs (default: yes, like every scenario).
 */
export function splitScenarioE(env: NodeJS.ProcessEnv = process.env): { env: NodeJS.ProcessEnv; runE: boolean } {
  const only = env["BENCH_ONLY"];
  if (only === undefined) return { env, runE: true };
  const list = only.split(",").map((s) => s.trim().toUpperCase());
  return { env: { ...env, BENCH_ONLY: list.filter((s) => s !== "E").join(",") }, runE: list.includes("E") };
}

export function rejoinParamsHelp(): string {
  return Object.values(REJOIN_KNOBS)
    .map((k) => `  ${k.env.padEnd(28)} ${String(k.full).padStart(11)} ${String(k.smoke).padStart(9)}  ${k.help}`)
    .join("\n");
}

// ------------------------------------------------------------------ data

/** Artifacts of a block share one keystream (cheap to make, bodies never overlap). */
const BLOCK = 4096;
const CACHE_FORMAT = 2;
export const NODE_A = "rejoin-a";
export const NODE_B = "rejoin-b";

interface Block {
  readonly bodies: Buffer[];
  readonly digests: string[];
}

/**
 * Artifact i of the mesh dataset: its size is the i-th draw of prng(seed, "e-sizes"), its
 * bytes a slice of the keystream of its block. The N_small mesh is a prefix of the N mesh.
 */
function meshSizes(seed: number, count: number, min: number, max: number, label = "e-sizes"): number[] {
  const rnd = prng(seed, label);
  return Array.from({ length: count }, () => min + Math.floor(rnd() * (max - min + 1)));
}

function makeBlock(seed: number, label: string, sizes: readonly number[]): Block {
  const total = sizes.reduce((n, s) => n + s, 0);
  const ks = keystream(seed, label, total);
  const bodies: Buffer[] = [];
  const digests: string[] = [];
  let off = 0;
  for (const s of sizes) {
    const b = ks.subarray(off, off + s);
    off += s;
    bodies.push(b);
    digests.push(sha256Hex(b));
  }
  return { bodies, digests };
}

async function* once(b: Uint8Array): AsyncGenerator<Uint8Array> {
  yield b;
}

/** The delta: `count` artifacts of the same size distribution, bytes of their own label. */
function deltaBlock(seed: number, count: number, min: number, max: number): Block {
  return makeBlock(seed, "e-delta", meshSizes(seed, count, min, max, "e-delta-sizes"));
}

// ------------------------------------------------------------------ helpers

function freePort(preferred = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", (e) => (preferred !== 0 ? resolve(freePort(0)) : reject(e)));
    srv.listen(preferred, "127.0.0.1", () => {
      const port = (srv.address() as AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Setup only (never inside a measured window): re-checks every 50 ms until `check` holds. */
async function until(what: string, check: () => Promise<boolean> | boolean, signal: AbortSignal, maxMs: number): Promise<void> {
  const end = Date.now() + maxMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`setup: ${what} did not happen within ${maxMs} ms`);
    await sleep(50, undefined, { signal });
  }
}

function aArgs(dataDir: string, ca: string, a: NodeCert, peers: string[]): string[] {
  return [
    "--data-dir", dataDir,
    "--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0",
    "--tls-ca", ca, "--tls-cert", a.cert, "--tls-key", a.key,
    "--node-id", NODE_A,
    "--shutdown-grace-ms", String(SHUTDOWN_GRACE_MS),
    ...(peers.length > 0 ? ["--peers", peers.join(",")] : []),
  ];
}

interface PeerCalls {
  firstHelloAt: number;
  hellos: number;
  followCalls: number;
  followFrom: number[];
  followPages: number;
  followEntries: number;
  listManifestsCalls: number;
  listManifestsItems: number;
  readBodiesCalls: number;
  readBodiesBodies: number;
}

function newCalls(): PeerCalls {
  return { firstHelloAt: NaN, hellos: 0, followCalls: 0, followFrom: [], followPages: 0, followEntries: 0, listManifestsCalls: 0, listManifestsItems: 0, readBodiesCalls: 0, readBodiesBodies: 0 };
}

/** B's peer clients, counting what its replication asks of A (first Hello instant included). */
function countingFactory(tls: { ca: Buffer; cert: Buffer; key: Buffer }, calls: PeerCalls): PeerClientFactory {
  return (address, serverName) => {
    const inner = createGrpcJsPeerClient(address, { tls, idleTimeoutMs: DEFAULT_IDLE_TIMEOUT_MS, channel: { flowControlWindowBytes: DEFAULT_PEER_WINDOW_BYTES } }, serverName);
    return {
      address: inner.address,
      counters: () => inner.counters(),
      close: () => inner.close(),
      hello: (req, signal) => {
        calls.hellos++;
        if (Number.isNaN(calls.firstHelloAt)) calls.firstHelloAt = performance.now();
        return inner.hello(req, signal);
      },
      listManifests: (req, signal) => ({
        async *[Symbol.asyncIterator]() {
          calls.listManifestsCalls++;
          for await (const p of inner.listManifests(req, signal)) {
            calls.listManifestsItems += p.manifests.length;
            yield p;
          }
        },
      }),
      follow: (req, signal) => ({
        async *[Symbol.asyncIterator]() {
          calls.followCalls++;
          calls.followFrom.push(Number(req.afterSeq ?? 0n));
          for await (const f of inner.follow(req, signal)) {
            if (f.frame.case === "page") {
              calls.followPages++;
              calls.followEntries += f.frame.value.entries.length;
            }
            yield f;
          }
        },
      }),
      readBodies: (req, signal) => ({
        async *[Symbol.asyncIterator]() {
          calls.readBodiesCalls++;
          calls.readBodiesBodies += req.bodies?.length ?? 0;
          yield* inner.readBodies(req, signal);
        },
      }),
    };
  };
}

function startB(dataDir: string, ca: string, b: NodeCert, peerPort: number, aPeerAddress: string, calls: PeerCalls): Promise<GranaryNode> {
  const tls = { ca: readFileSync(ca), cert: readFileSync(b.cert), key: readFileSync(b.key) };
  return GranaryNode.start(
    resolveNodeConfig({
      dataDir,
      listen: "127.0.0.1:0",
      opsListen: "127.0.0.1:0",
      peerListen: `127.0.0.1:${peerPort}`,
      shutdownGraceMs: SHUTDOWN_GRACE_MS,
      tlsCa: ca,
      tlsCert: b.cert,
      tlsKey: b.key,
      nodeId: NODE_B,
      peers: [aPeerAddress],
    }),
    createLogger({ level: "warn", destination: 2, base: { node: NODE_B } }),
    { peerClientFactory: countingFactory(tls, calls) },
  );
}

const cursorKey = (nodeId: string): string => `replication.cursor.${nodeId}`;

function dirBytes(dir: string): number {
  try {
    return Number(execFileSync("du", ["-sb", dir], { encoding: "utf8" }).split(/\s/)[0]);
  } catch {
    return NaN;
  }
}

// ------------------------------------------------------------------ seeding (cached)

export interface RejoinSeedInput {
  readonly cacheRoot: string;
  readonly ca: string;
  readonly a: NodeCert;
  readonly b: NodeCert;
  readonly seed: number;
  readonly artifacts: number;
  readonly minBytes: number;
  readonly maxBytes: number;
  readonly concurrency: number;
  /** Set by the orchestrator: this process's budget; work stops with a margin and resumes in the next call. */
  readonly deadlineMs: number;
}

/** What the cache holds once complete (bench/.cache/<seed>-<n>/ready.json). */
export interface RejoinCache {
  readonly format: number;
  readonly seed: number;
  readonly artifacts: number;
  readonly minBytes: number;
  readonly maxBytes: number;
  readonly aHead: number;
  readonly bHead: number;
  readonly bCursorOnA: number;
  readonly aIncarnation: string;
  readonly bPeerPort: number;
  readonly fillSeconds: number;
  /** B's bootstrap from A and both links at the other's head (B built by real replication). */
  readonly linkSeconds: number;
  readonly bytes: number;
  readonly diskBytes: number;
  readonly createdAt: string;
}

interface SeedProgress {
  fillBlocks: number;
  fillSeconds: number;
  /** Sum over the calls that worked on B's bootstrap. */
  bootstrapSeconds?: number;
  linkSeconds?: number;
  bPeerPort?: number;
}

export function rejoinCacheDir(cacheRoot: string, seed: number, artifacts: number): string {
  return join(cacheRoot, `${seed}-${artifacts}`);
}

function readCache(dir: string, i: { seed: number; artifacts: number; minBytes: number; maxBytes: number }): RejoinCache | undefined {
  try {
    const c = JSON.parse(readFileSync(join(dir, "ready.json"), "utf8")) as RejoinCache;
    const ok = c.format === CACHE_FORMAT && c.seed === i.seed && c.artifacts === i.artifacts && c.minBytes === i.minBytes && c.maxBytes === i.maxBytes;
    return ok && existsSync(join(dir, "a")) && existsSync(join(dir, "b")) ? c : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Builds the cached pair of data dirs, resumably: returns {complete: 0} when its budget ran
 * out (the orchestrator calls it again), {complete: 1, cacheUsed} when the cache is ready.
 */
export async function rejoinSeed(input: RejoinSeedInput, ctx: TaskContext): Promise<Record<string, number | string>> {
  const dir = rejoinCacheDir(input.cacheRoot, input.seed, input.artifacts);
  const cached = readCache(dir, input);
  if (cached) return { complete: 1, cacheUsed: 1, ...summary(cached) };
  const stopAt = performance.now() + input.deadlineMs - 90_000;
  const progressFile = join(dir, "progress.json");
  mkdirSync(dir, { recursive: true });
  let progress: SeedProgress = { fillBlocks: 0, fillSeconds: 0 };
  try {
    const saved = JSON.parse(readFileSync(progressFile, "utf8")) as SeedProgress & { key?: string };
    if (saved.key === seedKey(input)) progress = saved;
  } catch {
    // fresh
  }
  if (progress.fillBlocks === 0 && progress.fillSeconds === 0) {
    rmSync(join(dir, "a"), { recursive: true, force: true });
    rmSync(join(dir, "b"), { recursive: true, force: true });
  }
  const save = (): void => writeFileSync(progressFile, JSON.stringify({ ...progress, key: seedKey(input) }));
  const sizes = meshSizes(input.seed, input.artifacts, input.minBytes, input.maxBytes);
  const blocks = Math.ceil(input.artifacts / BLOCK);

  // 1. A through the store API, block by block (a block is durable before it is counted).
  if (progress.fillBlocks < blocks) {
    const store = await openStore({ dataDir: join(dir, "a"), nodeId: NODE_A });
    try {
      while (progress.fillBlocks < blocks && performance.now() < stopAt) {
        const t0 = performance.now();
        const b = progress.fillBlocks;
        const blk = makeBlock(input.seed, `e-block-${b}`, sizes.slice(b * BLOCK, (b + 1) * BLOCK));
        await pool(
          blk.bodies.length,
          input.concurrency,
          async (i) => {
            await store.put({ namespace: NAMESPACE, kind: "cas", key: blk.digests[i]!, size: blk.bodies[i]!.length }, once(blk.bodies[i]!), ctx.signal);
          },
          ctx.signal,
        );
        progress.fillBlocks++;
        progress.fillSeconds += (performance.now() - t0) / 1000;
        save();
        if (progress.fillBlocks % 16 === 0 || progress.fillBlocks === blocks) {
          ctx.log(`fill A: ${Math.min(input.artifacts, progress.fillBlocks * BLOCK)}/${input.artifacts} (${Math.round((progress.fillBlocks * BLOCK) / progress.fillSeconds)}/s)`);
        }
      }
    } finally {
      await store.close();
    }
    if (progress.fillBlocks < blocks) return { complete: 0, cacheUsed: 0, filled: progress.fillBlocks * BLOCK };
  }

  // 2. B bootstraps from A for real (a fresh node, peers = [A]); A learns B and walks B's
  //    manifests in turn (every body present: skipped). Resumable: the walk cursors persist.
  //    (B is not built from a copy of A's segments: the store's index rebuild commits a whole
  //    segment per transaction, which leaves LMDB a free list of ~10^5 pages that every later
  //    commit re-merges — B's first 1,000 writes then took 14 s instead of 1.2 s. See
  //    docs/PERFORMANCE.md §9.)
  if (progress.linkSeconds === undefined) {
    progress.bPeerPort = await freePort(progress.bPeerPort ?? 0);
    save();
    const bAddress = `https://127.0.0.1:${progress.bPeerPort}`;
    const t0 = performance.now();
    const a = await startGranaryChild(aArgs(join(dir, "a"), input.ca, input.a, [bAddress]), join(ctx.logDir, `e-seed-${NODE_A}-${input.artifacts}-${process.pid}.log`), ctx.signal);
    let b: GranaryNode | undefined;
    const conn = connectPublic({ server: `http://${a.publicAddress}` });
    let lastLog = performance.now();
    try {
      b = await startB(join(dir, "b"), input.ca, input.b, progress.bPeerPort, a.peerAddress!, newCalls());
      const node = b;
      const status = conn.client(NodeService);
      const budget = Math.max(10_000, stopAt - performance.now());
      await until(
        "B holding A's artifacts, A and B following each other at the other's head",
        async () => {
          const sa = (await status.getStatus({})).status!;
          const linkA = node.replication?.allLinks().find((l) => l.stats.nodeId === NODE_A);
          const aOnB = sa.peers.find((p) => p.nodeId === NODE_B);
          const held = node.store.usage().artifactCount;
          if (performance.now() - lastLog > 30_000) {
            lastLog = performance.now();
            ctx.log(`B bootstrapping from A: ${held}/${input.artifacts} held, link ${linkA?.stats.phase ?? "-"}; A on B: ${aOnB ? PeerPhase[aOnB.phase] : "-"}`);
          }
          return (
            held === input.artifacts &&
            linkA?.stats.phase === "following" &&
            linkA.stats.cursorSeq >= Number(sa.feedHead) &&
            aOnB?.phase === PeerPhase.FOLLOWING &&
            Number(aOnB.cursorSeq) >= node.store.feedHead()
          );
        },
        ctx.signal,
        budget,
      ).catch((e: unknown) => {
        if (performance.now() < stopAt) throw e;
      });
      const linked = node.replication?.allLinks().find((l) => l.stats.nodeId === NODE_A)?.stats.phase === "following" && node.store.usage().artifactCount === input.artifacts;
      progress.bootstrapSeconds = (progress.bootstrapSeconds ?? 0) + (performance.now() - t0) / 1000;
      save();
      if (!linked || performance.now() >= stopAt) {
        ctx.log("B's bootstrap not finished within this process's budget; resuming in the next call");
        return { complete: 0, cacheUsed: 0, filled: input.artifacts, bHeld: node.store.usage().artifactCount };
      }
      progress.linkSeconds = progress.bootstrapSeconds;
    } finally {
      conn.close();
      await b?.close();
      await a.stop();
    }
    save();
    ctx.log(`B bootstrapped from A and both linked in ${progress.linkSeconds.toFixed(1)} s`);
  }

  // 3. Check what a round relies on, from the stopped data dirs.
  const sa = await openStore({ dataDir: join(dir, "a") });
  const aHead = sa.feedHead();
  const aIncarnation = sa.incarnation;
  await sa.close();
  const sb = await openStore({ dataDir: join(dir, "b") });
  const bHead = sb.feedHead();
  const bCursor = sb.getMeta<{ incarnation: string; seq: number }>(cursorKey(NODE_A));
  const bHeld = sb.usage().artifactCount;
  await sb.close();
  if (!bCursor || bCursor.incarnation !== aIncarnation || bCursor.seq !== aHead || bHeld !== input.artifacts) {
    rmSync(progressFile, { force: true });
    throw new Error(`seeded pair is not as expected: B's cursor on A ${JSON.stringify(bCursor)}, A's head ${aHead} (${aIncarnation}), B holds ${bHeld}; the cache will be rebuilt`);
  }
  const total = sizes.reduce((n, s) => n + s, 0);
  const cache: RejoinCache = {
    format: CACHE_FORMAT,
    seed: input.seed,
    artifacts: input.artifacts,
    minBytes: input.minBytes,
    maxBytes: input.maxBytes,
    aHead,
    bHead,
    bCursorOnA: bCursor.seq,
    aIncarnation,
    bPeerPort: progress.bPeerPort!,
    fillSeconds: progress.fillSeconds,
    linkSeconds: progress.linkSeconds,
    bytes: total,
    diskBytes: dirBytes(dir),
    createdAt: new Date().toISOString(),
  };
  writeFileSync(join(dir, "ready.json"), JSON.stringify(cache, null, 2) + "\n");
  return { complete: 1, cacheUsed: 0, ...summary(cache) };
}

function seedKey(i: RejoinSeedInput): string {
  return `${CACHE_FORMAT}:${i.seed}:${i.artifacts}:${i.minBytes}:${i.maxBytes}`;
}

function summary(c: RejoinCache): Record<string, number | string> {
  return {
    artifacts: c.artifacts,
    bytes: c.bytes,
    diskBytes: c.diskBytes,
    aHead: c.aHead,
    fillSeconds: c.fillSeconds,
    fillArtifactsPerSecond: c.artifacts / c.fillSeconds,
    linkSeconds: c.linkSeconds,
    seededAt: c.createdAt,
  };
}

// ------------------------------------------------------------------ one rejoin

export interface RejoinInput {
  readonly cacheRoot: string;
  readonly workDir: string;
  readonly ca: string;
  readonly a: NodeCert;
  readonly b: NodeCert;
  readonly seed: number;
  readonly artifacts: number;
  readonly minBytes: number;
  readonly maxBytes: number;
  readonly delta: number;
  readonly putConcurrency: number;
  readonly maxSeconds: number;
  /** When the orchestrator started (epoch ms): a cache made before it was reused. */
  readonly runStartedMs: number;
}

export async function rejoin(input: RejoinInput, ctx: TaskContext): Promise<Record<string, number>> {
  const cacheDir = rejoinCacheDir(input.cacheRoot, input.seed, input.artifacts);
  const cache = readCache(cacheDir, input);
  if (!cache) throw new Error(`no complete seeded pair in ${cacheDir} (the rejoin-seed task makes it)`);
  const work = join(input.workDir, `e-${input.artifacts}-${process.pid}`);
  const aDir = join(work, "a");
  const bDir = join(work, "b");
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  let a: GranaryChild | undefined;
  let b: GranaryNode | undefined;
  let conn: ReturnType<typeof connectPublic> | undefined;
  const watchers = new AbortController();
  try {
    // Setup, not measured: a pristine copy of the pair, flushed, so the round's fsyncs do not
    // queue behind the copy's writeback.
    let t = performance.now();
    execFileSync("cp", ["-a", join(cacheDir, "a"), aDir]);
    execFileSync("cp", ["-a", join(cacheDir, "b"), bDir]);
    execFileSync("sync");
    const copySeconds = (performance.now() - t) / 1000;

    const bPeerPort = await freePort(cache.bPeerPort);
    a = await startGranaryChild(aArgs(aDir, input.ca, input.a, [`https://127.0.0.1:${bPeerPort}`]), join(ctx.logDir, `e-${NODE_A}-${input.artifacts}-${process.pid}.log`), ctx.signal);
    conn = connectPublic({ server: `http://${a.publicAddress}` });
    const status = conn.client(NodeService);
    const s0 = (await status.getStatus({})).status!;
    if (Number(s0.feedHead) !== cache.aHead) throw new Error(`A's head ${String(s0.feedHead)} is not the cached ${cache.aHead}`);

    // B is down: the delta goes to A through its public Put.
    const delta = deltaBlock(input.seed, input.delta, input.minBytes, input.maxBytes);
    const client = conn.client(ArtifactService);
    t = performance.now();
    await pool(delta.bodies.length, input.putConcurrency, async (i) => void (await putCas(client, delta.digests[i]!, delta.bodies[i]!, ctx.signal)), ctx.signal);
    const putSeconds = (performance.now() - t) / 1000;
    const aHeadAfter = Number((await status.getStatus({})).status!.feedHead);
    if (aHeadAfter !== cache.aHead + input.delta) throw new Error(`A's head after the delta is ${aHeadAfter}, expected ${cache.aHead + input.delta}`);

    // B starts again. Clock: from GranaryNode.start() until B holds the delta and follows at A's head.
    const calls = newCalls();
    const missing = new Set(delta.digests);
    let heldAt = NaN;
    const aCpu0 = cpuSecondsOf(a.pid);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    b = await startB(bDir, input.ca, input.b, bPeerPort, a.peerAddress!, calls);
    const startedAt = performance.now();
    const node = b;
    const watching = watchFeed(
      node.store,
      (key, at) => {
        if (missing.delete(key) && missing.size === 0) heldAt = at;
      },
      watchers.signal,
      cache.bHead,
    );
    // The cursor has no event of its own: read B's link state every millisecond (a field read).
    const cap = t0 + input.maxSeconds * 1000;
    let cursorAt = NaN;
    let lagZeroAt = NaN;
    for (;;) {
      const now = performance.now();
      const link = node.replication?.allLinks().find((l) => l.stats.nodeId === NODE_A);
      if (Number.isNaN(cursorAt) && link && link.stats.phase === "following" && link.stats.cursorSeq >= aHeadAfter) cursorAt = now;
      if (!Number.isNaN(cursorAt) && Number.isNaN(lagZeroAt)) {
        const p = node.status().peers.find((x) => x.nodeId === NODE_A);
        if (p && p.phase === PeerPhase.FOLLOWING && p.lagChanges === 0n) lagZeroAt = now;
      }
      if (!Number.isNaN(heldAt) && !Number.isNaN(lagZeroAt)) break;
      if (now > cap || ctx.signal.aborted) break;
      await sleep(1);
    }
    const doneAt = Math.max(heldAt, cursorAt, lagZeroAt);
    const partial = Number.isNaN(doneAt) ? 1 : 0;
    const endAt = partial ? performance.now() : doneAt;
    const cpu = process.cpuUsage(cpu0);
    const aCpu = cpuSecondsOf(a.pid) - aCpu0;
    const link = node.replication?.allLinks().find((l) => l.stats.nodeId === NODE_A);
    const out = {
      caughtUpSeconds: (endAt - t0) / 1000,
      helloToCaughtUpSeconds: (endAt - calls.firstHelloAt) / 1000,
      startToHelloSeconds: (calls.firstHelloAt - t0) / 1000,
      startReturnedSeconds: (startedAt - t0) / 1000,
      deltaHeldSeconds: (heldAt - t0) / 1000,
      cursorAtHeadSeconds: (cursorAt - t0) / 1000,
      partial,
      deltaMissing: missing.size,
      artifacts: input.artifacts,
      delta: input.delta,
      heldArtifacts: node.store.usage().artifactCount,
      bCpuSeconds: (cpu.user + cpu.system) / 1e6,
      aCpuSeconds: aCpu,
      hellos: calls.hellos,
      followCalls: calls.followCalls,
      followFromSeq: calls.followFrom[0] ?? NaN,
      expectedFromSeq: cache.bCursorOnA,
      followEntries: calls.followEntries,
      followPages: calls.followPages,
      listManifestsCalls: calls.listManifestsCalls,
      listManifestsItems: calls.listManifestsItems,
      readBodiesCalls: calls.readBodiesCalls,
      readBodiesBodies: calls.readBodiesBodies,
      bootstrapPasses: link?.stats.passes ?? NaN,
      appliedFromA: link?.stats.outcomes.applied.artifacts ?? NaN,
      copySeconds,
      putDeltaSeconds: putSeconds,
      seedFillSeconds: cache.fillSeconds,
      cacheReused: Date.parse(cache.createdAt) < input.runStartedMs ? 1 : 0,
    };
    watchers.abort();
    await watching;
    if (calls.listManifestsCalls > 0) ctx.log(`WARNING: B walked A's manifests (${calls.listManifestsItems} items): a bootstrap, not a follow from the cursor`);
    return out;
  } finally {
    watchers.abort();
    conn?.close();
    await b?.close();
    await a?.stop();
    rmSync(work, { recursive: true, force: true });
  }
}
