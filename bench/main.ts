/**
 * `make bench` / `make bench-smoke`: the benchmark of the foundation (one node, issue 2), of
 * fresh-node bootstrap (issue 3) and of live replication lag, each product figure measured
 * side by side with its reference (disk, bare node:http2, bare grpc-js over mTLS) in the
 * same run, round after round, so a noisy machine shows up in the spread instead of in a
 * ratio of numbers taken minutes apart.
 *
 * Every measurement runs in a fresh process (bench/task.ts) with a time budget; node and
 * server children are killed by pid when their owner exits; temp dirs are removed at exit.
 * Output: bench/results/<timestamp>/results.json (+ results.md, logs/), and the tables on stdout.
 *
 * Usage: node dist-bench/bench/main.js [--smoke] [--help]   (sizes: BENCH_* env, see --help)
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import * as os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { initCa, issueCert } from "../src/certs/dev-pki.js";
import type { BareGrpcInput, DiskSeqInput, DiskSmallInput, H2BulkInput, H2SmallInput } from "./tasks/references.js";
import type { BootstrapInput, FillSourceInput, NodeCert } from "./tasks/bootstrap.js";
import type { BigBootstrapInput } from "./tasks/big-bootstrap.js";
import type { LiveLagInput } from "./tasks/live-lag.js";
import { rejoinParams, rejoinParamsHelp, splitScenarioE, type RejoinInput, type RejoinSeedInput } from "./tasks/rejoin.js";
import type { SingleNodeInput } from "./tasks/single-node.js";
import type { StoreDirectInput } from "./tasks/store-direct.js";
import { machineInfo } from "./lib/machine.js";
import { paramsHelp, resolveParams, type BenchParams } from "./lib/params.js";
import { runTaskProcess } from "./lib/proc.js";
import { buildFigures, buildRatios, figuresTable, ratiosTable, type FigureDef, type RatioDef, type RoundOutputs } from "./lib/report.js";
import type { ArtifactSpec } from "./lib/data.js";

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

const TARGETS = {
  bootstrapMbPerSecond: { op: ">=", value: 300, source: "issue 3: bootstrap on loopback >= 300 MB/s" },
  bootstrapVsBare: { op: ">=", value: 0.6, source: "issue 3: bootstrap >= 0.6 x bare transport" },
  smallPerSecond: { op: ">=", value: 20_000, source: "issues 2/3: small artifacts >= 20,000/s on loopback" },
  lagP99Ms: { op: "<=", value: 50, source: "live lag p99 <= 50 ms" },
  receiveCpu: { op: "<=", value: 3, source: "receive CPU <= 3 core-seconds per GB" },
  rejoinSeconds: { op: "<=", value: 2, source: "issue 4 (5): rejoin after 1,000 writes into a 1M mesh caught up <= 2 s" },
  rejoinVsSmall: { op: "<=", value: 1.5, source: "issue 4 (5): rejoin time 1M mesh / 10k mesh <= 1.5" },
  bigBootstrapRssMib: { op: "<=", value: 300, source: "issue 4 (7): peak RSS bootstrapping 4 GiB incl. a 1 GiB artifact <= 300 MiB" },
} as const;

const FIGURES: FigureDef[] = [
  // A: one node, h2c public listener.
  { id: "a.put_bulk", scenario: "A", label: "Put, mixed 1–64 MiB", unit: "MB/s", task: "single-node", field: "putBulkMbPerSecond", kind: "product" },
  { id: "a.get_bulk", scenario: "A", label: "Get, mixed 1–64 MiB", unit: "MB/s", task: "single-node", field: "getBulkMbPerSecond", kind: "product" },
  { id: "a.put_small", scenario: "A", label: "Put, 4 KiB", unit: "artifacts/s", task: "single-node", field: "putSmallArtifactsPerSecond", kind: "product", target: TARGETS.smallPerSecond, partialField: "putSmallPartial" },
  { id: "a.get_small", scenario: "A", label: "Get, 4 KiB", unit: "artifacts/s", task: "single-node", field: "getSmallArtifactsPerSecond", kind: "product", target: TARGETS.smallPerSecond, partialField: "getSmallPartial" },
  { id: "a.disk_seq", scenario: "A", label: "ref: disk append 1 MiB, fdatasync / 64 MiB", unit: "MB/s", task: "disk-seq", field: "mbPerSecond", kind: "reference" },
  { id: "a.disk_small", scenario: "A", label: "ref: disk append 4 KiB + fdatasync each", unit: "ops/s", task: "disk-small", field: "opsPerSecond", kind: "reference" },
  { id: "a.h2_bulk", scenario: "A", label: "ref: bare node:http2 h2c, server → client", unit: "MB/s", task: "h2-bulk", field: "mbPerSecond", kind: "reference" },
  { id: "a.h2_small", scenario: "A", label: "ref: bare node:http2 h2c, 4 KiB streams", unit: "streams/s", task: "h2-small", field: "streamsPerSecond", kind: "reference" },
  { id: "a.store_put_bulk", scenario: "A", label: "store only (no RPC): put, mixed 1–64 MiB", unit: "MB/s", task: "store-direct", field: "putBulkMbPerSecond", kind: "decomposition" },
  { id: "a.store_get_bulk", scenario: "A", label: "store only: read, mixed 1–64 MiB", unit: "MB/s", task: "store-direct", field: "getBulkMbPerSecond", kind: "decomposition" },
  { id: "a.store_put_small", scenario: "A", label: "store only: put, 4 KiB", unit: "artifacts/s", task: "store-direct", field: "putSmallArtifactsPerSecond", kind: "decomposition", partialField: "putSmallPartial" },
  { id: "a.store_get_small", scenario: "A", label: "store only: read, 4 KiB", unit: "artifacts/s", task: "store-direct", field: "getSmallArtifactsPerSecond", kind: "decomposition", partialField: "getSmallPartial" },
  { id: "a.put_small_done", scenario: "A", label: "Put, 4 KiB: artifacts done within the cap", unit: "artifacts", task: "single-node", field: "putSmallArtifacts", kind: "detail" },
  { id: "a.put_bulk_node_cpu", scenario: "A", label: "Put bulk: node CPU", unit: "core-s/GB", task: "single-node", field: "putBulkServerCpuSecondsPerGb", kind: "detail" },
  { id: "a.get_bulk_node_cpu", scenario: "A", label: "Get bulk: node CPU", unit: "core-s/GB", task: "single-node", field: "getBulkServerCpuSecondsPerGb", kind: "detail" },
  { id: "a.store_put_bulk_cpu", scenario: "A", label: "store only: put bulk CPU", unit: "core-s/GB", task: "store-direct", field: "putBulkCpuSecondsPerGb", kind: "detail" },
  { id: "a.put_small_node_cpu", scenario: "A", label: "Put small: node CPU per artifact", unit: "ms", task: "single-node", field: "putSmallServerCpuMsPerArtifact", kind: "detail" },
  { id: "a.put_small_client_cpu", scenario: "A", label: "Put small: client CPU per artifact", unit: "ms", task: "single-node", field: "putSmallClientCpuMsPerArtifact", kind: "detail" },
  { id: "a.get_small_node_cpu", scenario: "A", label: "Get small: node CPU per artifact", unit: "ms", task: "single-node", field: "getSmallServerCpuMsPerArtifact", kind: "detail" },
  { id: "a.store_put_small_cpu", scenario: "A", label: "store only: put small CPU per artifact", unit: "ms", task: "store-direct", field: "putSmallCpuMsPerArtifact", kind: "detail" },
  { id: "a.disk_small_p99", scenario: "A", label: "ref: 4 KiB append+fdatasync p99", unit: "ms", task: "disk-small", field: "opP99Ms", kind: "detail" },

  // B: fresh-node bootstrap over mTLS.
  { id: "b.bulk", scenario: "B", label: "bootstrap, bulk (1–256 MiB)", unit: "MB/s", task: "bootstrap-bulk-fast", field: "mbPerSecond", kind: "product", target: TARGETS.bootstrapMbPerSecond, partialField: "partial" },
  { id: "b.bulk_serial", scenario: "B", label: "bootstrap, bulk, serial mode", unit: "MB/s", task: "bootstrap-bulk-serial", field: "mbPerSecond", kind: "product", partialField: "partial" },
  { id: "b.bulk_bare", scenario: "B", label: "ref: bare grpc-js mTLS, same bytes", unit: "MB/s", task: "bare-bulk", field: "mbPerSecond", kind: "reference" },
  { id: "b.small", scenario: "B", label: "bootstrap, small (4 KiB)", unit: "artifacts/s", task: "bootstrap-small-fast", field: "artifactsPerSecond", kind: "product", target: TARGETS.smallPerSecond, partialField: "partial" },
  { id: "b.small_serial", scenario: "B", label: "bootstrap, small, serial mode", unit: "artifacts/s", task: "bootstrap-small-serial", field: "artifactsPerSecond", kind: "product", partialField: "partial" },
  { id: "b.small_bare", scenario: "B", label: "ref: bare grpc-js mTLS, same bodies", unit: "bodies/s", task: "bare-small", field: "bodiesPerSecond", kind: "reference" },
  { id: "b.bulk_recv_cpu", scenario: "B", label: "bootstrap bulk: receiver CPU", unit: "core-s/GB", task: "bootstrap-bulk-fast", field: "receiverCpuSecondsPerGb", kind: "product", target: TARGETS.receiveCpu },
  { id: "b.bulk_bare_recv_cpu", scenario: "B", label: "ref: bare transport receiver CPU", unit: "core-s/GB", task: "bare-bulk", field: "receiverCpuSecondsPerGb", kind: "reference" },
  { id: "b.bulk_src_cpu", scenario: "B", label: "bootstrap bulk: source CPU", unit: "core-s/GB", task: "bootstrap-bulk-fast", field: "sourceCpuSecondsPerGb", kind: "detail" },
  { id: "b.bulk_recv_rss", scenario: "B", label: "bootstrap bulk: receiver peak RSS", unit: "MiB", task: "bootstrap-bulk-fast", field: "receiverPeakRssMib", kind: "detail" },
  { id: "b.bulk_ready", scenario: "B", label: "bootstrap bulk: time to ready", unit: "s", task: "bootstrap-bulk-fast", field: "readySeconds", kind: "detail" },
  { id: "b.small_done", scenario: "B", label: "bootstrap small: artifacts held at the end", unit: "artifacts", task: "bootstrap-small-fast", field: "artifacts", kind: "detail" },
  { id: "b.small_recv_cpu", scenario: "B", label: "bootstrap small: receiver CPU per artifact", unit: "ms", task: "bootstrap-small-fast", field: "receiverCpuMsPerArtifact", kind: "detail" },
  { id: "b.small_recv_rss", scenario: "B", label: "bootstrap small: receiver peak RSS", unit: "MiB", task: "bootstrap-small-fast", field: "receiverPeakRssMib", kind: "detail" },
  { id: "b.big_recv_rss", scenario: "B", label: "bootstrap 4 GiB incl. 1 GiB: receiver peak RSS (VmHWM)", unit: "MiB", task: "big-bootstrap", field: "vmHwmMib", kind: "product", target: TARGETS.bigBootstrapRssMib },
  { id: "b.big_recv_rss_sampled", scenario: "B", label: "bootstrap 4 GiB incl. 1 GiB: receiver RSS, sampled max", unit: "MiB", task: "big-bootstrap", field: "rssTimelineMaxMib", kind: "detail" },
  { id: "b.big", scenario: "B", label: "bootstrap 4 GiB incl. 1 GiB", unit: "MB/s", task: "big-bootstrap", field: "mbPerSecond", kind: "detail", partialField: "partial" },
  { id: "b.big_time", scenario: "B", label: "bootstrap 4 GiB incl. 1 GiB: time", unit: "s", task: "big-bootstrap", field: "seconds", kind: "detail", partialField: "partial" },
  { id: "b.close", scenario: "B", label: "receiver close() after bootstrap (grace 2 s)", unit: "s", task: "bootstrap-bulk-fast", field: "receiverCloseSeconds", kind: "detail" },

  // C: live lag, 3 nodes.
  { id: "c.lag_p50", scenario: "C", label: "live lag p50 (Put ack → on nodes 2 and 3)", unit: "ms", task: "live-lag", field: "lagP50Ms", kind: "product", partialField: "partial" },
  { id: "c.lag_p99", scenario: "C", label: "live lag p99", unit: "ms", task: "live-lag", field: "lagP99Ms", kind: "product", target: TARGETS.lagP99Ms, partialField: "partial" },
  { id: "c.lag_max", scenario: "C", label: "live lag max", unit: "ms", task: "live-lag", field: "lagMaxMs", kind: "detail", partialField: "partial" },
  { id: "c.put_p50", scenario: "C", label: "Put latency p50 on node 1", unit: "ms", task: "live-lag", field: "putP50Ms", kind: "detail" },
  { id: "c.put_p99", scenario: "C", label: "Put latency p99 on node 1", unit: "ms", task: "live-lag", field: "putP99Ms", kind: "detail" },
  { id: "c.entries_per_page", scenario: "C", label: "replicas: feed entries per Follow page", unit: "entries", task: "live-lag", field: "followEntriesPerPage", kind: "detail" },
  { id: "c.readbodies_p50", scenario: "C", label: "replicas: ReadBodies call p50", unit: "ms", task: "live-lag", field: "readBodiesP50Ms", kind: "detail" },
  { id: "c.bodies_per_call", scenario: "C", label: "replicas: bodies per ReadBodies call", unit: "bodies", task: "live-lag", field: "readBodiesBodiesPerCall", kind: "detail" },
  { id: "c.rate", scenario: "C", label: "achieved Put rate", unit: "puts/s", task: "live-lag", field: "achievedPutsPerSecond", kind: "detail" },

  // E (issue 4, scenario 5): rejoin catch-up; "large" = BENCH_E_ARTIFACTS (1M), "small" = BENCH_E_SMALL_ARTIFACTS (10k).
  ...rejoinFigures(),
];

function rejoinFigures(): FigureDef[] {
  const E = "E" as FigureDef["scenario"]; // bench/lib/report.ts types A | B | C
  const both = (id: string, label: string, field: string, unit: string, kind: FigureDef["kind"], target?: FigureDef["target"]): FigureDef[] => [
    { id: `e.${id}`, scenario: E, label: `${label}, large mesh`, unit, task: "rejoin-large", field, kind, partialField: "partial", ...(target ? { target } : {}) },
    { id: `e.${id}_small`, scenario: E, label: `${label}, small mesh`, unit, task: "rejoin-small", field, kind: kind === "product" ? "reference" : kind, partialField: "partial" },
  ];
  return [
    ...both("caught_up", "rejoin: B's node start → delta held and following at A's head", "caughtUpSeconds", "s", "product", TARGETS.rejoinSeconds),
    ...both("hello_caught_up", "rejoin: B's first Hello → caught up", "helloToCaughtUpSeconds", "s", "detail"),
    ...both("start_hello", "rejoin: B's node start → first Hello (store open, listeners)", "startToHelloSeconds", "s", "detail"),
    ...both("held", "rejoin: B's node start → every delta artifact held", "deltaHeldSeconds", "s", "detail"),
    ...both("b_cpu", "rejoin: B's CPU until caught up", "bCpuSeconds", "core-s", "detail"),
    ...both("a_cpu", "rejoin: A's CPU while B caught up", "aCpuSeconds", "core-s", "detail"),
    ...both("walked", "rejoin: manifests B walked on A (0 = followed from its cursor)", "listManifestsItems", "manifests", "detail"),
    ...both("artifacts", "rejoin: artifacts B held when caught up", "heldArtifacts", "artifacts", "detail"),
    ...both("cache", "rejoin: seeded data dirs reused from bench/.cache (1 = yes)", "cacheReused", "", "detail"),
  ];
}

const RATIOS: RatioDef[] = [
  { figure: "a.put_bulk", vs: "a.disk_seq", note: "Put vs the disk's append+fsync ceiling" },
  { figure: "a.put_bulk", vs: "a.h2_bulk", note: "Put vs the bare HTTP/2 ceiling" },
  { figure: "a.get_bulk", vs: "a.h2_bulk", note: "Get vs the bare HTTP/2 ceiling" },
  { figure: "a.put_small", vs: "a.disk_small", note: "small Puts/s vs 4 KiB appends with one fdatasync each (>1 means group commit pays)" },
  { figure: "a.put_small", vs: "a.h2_small", note: "small Puts/s vs bare HTTP/2 streams/s" },
  { figure: "a.get_small", vs: "a.h2_small", note: "small Gets/s vs bare HTTP/2 streams/s" },
  { figure: "a.put_bulk", vs: "a.store_put_bulk", note: "what survives the RPC layer, bulk Put" },
  { figure: "a.get_bulk", vs: "a.store_get_bulk", note: "what survives the RPC layer, bulk Get" },
  { figure: "a.put_small", vs: "a.store_put_small", note: "what survives the RPC layer, small Put" },
  { figure: "a.get_small", vs: "a.store_get_small", note: "what survives the RPC layer, small Get" },
  { figure: "a.store_put_bulk", vs: "a.disk_seq", note: "the store's bulk write path vs the raw disk" },
  { figure: "a.store_put_small", vs: "a.disk_small", note: "the store's small writes vs one fdatasync per 4 KiB append" },
  { figure: "b.bulk", vs: "b.bulk_bare", note: "bootstrap vs bare transport, same bytes", target: TARGETS.bootstrapVsBare },
  { figure: "b.bulk", vs: "b.bulk_serial", note: "speed-up over serial mode (10x is a WAN target; loopback has no RTT)" },
  { figure: "b.bulk_serial", vs: "b.bulk_bare", note: "serial mode vs bare transport" },
  { figure: "b.small", vs: "b.small_bare", note: "small bootstrap vs bare transport, same bodies" },
  { figure: "b.small", vs: "b.small_serial", note: "speed-up over serial mode" },
  { figure: "b.bulk_recv_cpu", vs: "b.bulk_bare_recv_cpu", note: "receiver CPU per GB vs the bare transport's" },
  { figure: "e.caught_up", vs: "e.caught_up_small", note: "rejoin: same delta, large mesh vs small mesh (cost follows the delta, not the dataset)", target: TARGETS.rejoinVsSmall },
  { figure: "e.hello_caught_up", vs: "e.hello_caught_up_small", note: "rejoin from the first Hello (store open excluded), large vs small mesh" },
];

interface TaskSpec {
  readonly key: string;
  readonly task: string;
  readonly input: Record<string, unknown>;
  /** Heavier tasks get a larger heap. */
  readonly nodeArgs?: readonly string[];
}

class Runner {
  readonly rounds: RoundOutputs;
  readonly log: Array<{ key: string; round: number; ok: boolean; wallMs: number; load1Before: number; load1After: number; error?: string; output?: Record<string, unknown> }> = [];
  private seq = 0;

  constructor(
    private readonly p: BenchParams,
    private readonly work: string,
    private readonly logDir: string,
  ) {
    this.rounds = Array.from({ length: p.runs }, () => ({}));
  }

  async run(spec: TaskSpec, round: number): Promise<Record<string, unknown> | undefined> {
    const n = ++this.seq;
    const base = join(this.work, "io", `${String(n).padStart(3, "0")}-${spec.key}`);
    const input = { ...spec.input, deadlineMs: this.p.taskTimeoutMs - 5_000, logDir: this.logDir };
    writeFileSync(`${base}.in.json`, JSON.stringify(input));
    const t = new Date().toISOString().slice(11, 19);
    process.stderr.write(`[${t}] round ${round + 1}/${this.p.runs} ${spec.key} ... `);
    const load1Before = Math.round(os.loadavg()[0]! * 100) / 100;
    const r = await runTaskProcess(spec.task, `${base}.in.json`, `${base}.out.json`, join(this.logDir, `${String(n).padStart(3, "0")}-${spec.key}.log`), this.p.taskTimeoutMs, spec.nodeArgs ?? []);
    process.stderr.write(r.ok ? `ok (${(r.wallMs / 1000).toFixed(1)} s)\n` : `FAILED: ${r.error}\n`);
    const load1After = Math.round(os.loadavg()[0]! * 100) / 100;
    this.log.push({ key: spec.key, round: round + 1, ok: r.ok, wallMs: r.wallMs, load1Before, load1After, ...(r.error ? { error: r.error } : {}), ...(r.output ? { output: r.output } : {}) });
    if (round >= 0 && round < this.rounds.length && r.output) this.rounds[round]![spec.key] = r.output;
    return r.output;
  }
}

/** A port that was free a moment ago (bound on 127.0.0.1:0, then released). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

function groupsOf<T>(xs: readonly T[], n: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  if (args.includes("--help") || args.includes("-h")) {
    process.stdout.write(`Usage: node dist-bench/bench/main.js [--smoke]\n\nEnvironment (default full / smoke):\n${paramsHelp()}\n  BENCH_ONLY                  A,B,C         scenarios to run\n  BENCH_TMPDIR                os.tmpdir()   where data dirs and disk references go\n  BENCH_KEEP_WORK             0             1 = keep the work dir (data dirs, task inputs) for a post-mortem\n  BENCH_CPU_PROF              0             1 = V8 CPU profiles of every task and node in <results>/profiles\n${rejoinParamsHelp()}\n  (BENCH_ONLY may also name E: rejoin catch-up; seeded data dirs are cached in bench/.cache/)\n`);
    return 0;
  }
  const profile = args.includes("--smoke") ? "smoke" : "full";
  const { env: paramsEnv, runE } = splitScenarioE();
  const p = resolveParams(profile, paramsEnv);
  const pe = rejoinParams(profile);
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const outDir = join(REPO_ROOT, "bench", "results", `${stamp}${profile === "smoke" ? "-smoke" : ""}`);
  const logDir = join(outDir, "logs");
  mkdirSync(logDir, { recursive: true });
  const work = mkdtempSync(join(process.env["BENCH_TMPDIR"] || os.tmpdir(), "granary-bench-"));
  mkdirSync(join(work, "io"));
  // Temp data goes whatever happens (a killed run included: SIGINT/SIGTERM exit through here).
  const keepWork = process.env["BENCH_KEEP_WORK"] === "1";
  process.once("exit", () => {
    if (!keepWork) rmSync(work, { recursive: true, force: true });
  });
  // BENCH_CPU_PROF=1: every task process and every node it starts writes a V8 CPU profile.
  if (process.env["BENCH_CPU_PROF"] === "1") {
    const profDir = join(outDir, "profiles");
    mkdirSync(profDir, { recursive: true });
    process.env["BENCH_NODE_ARGS"] = `--cpu-prof --cpu-prof-dir=${profDir}`;
  }
  for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => process.exit(130));

  const startedAt = new Date();
  const machine = machineInfo(REPO_ROOT, work);
  process.stderr.write(`granary bench (${profile}): results in ${outDir}\n  work dir ${work}\n`);

  const pkiDir = join(work, "pki");
  const ca = (await initCa({ dir: pkiDir })).certFile;
  const cert = async (name: string): Promise<NodeCert> => {
    const c = await issueCert({ dir: pkiDir, name });
    return { name, cert: c.certFile, key: c.keyFile };
  };
  const runner = new Runner(p, work, logDir);
  const R = p.runs;

  if (p.only.includes("A")) {
    const specs: TaskSpec[] = [
      { key: "disk-seq", task: "disk-seq", input: { dir: work, totalBytes: p.diskBytes, appendBytes: p.diskAppendBytes, syncEveryBytes: p.diskSyncEveryBytes } satisfies DiskSeqInput },
      { key: "h2-bulk", task: "h2-bulk", input: { totalBytes: p.h2Bytes, streams: p.aBulkConcurrency } satisfies H2BulkInput },
      {
        key: "single-node",
        task: "single-node",
        input: {
          dir: work,
          seed: p.seed,
          bulkBytes: p.aBulkBytes,
          bulkMinBytes: p.aBulkMinBytes,
          bulkMaxBytes: p.aBulkMaxBytes,
          bulkConcurrency: p.aBulkConcurrency,
          smallCount: p.aSmallCount,
          smallBytes: p.smallBytes,
          smallConcurrency: p.aSmallConcurrency,
          smallPutMaxSeconds: p.aSmallPutMaxSeconds,
          smallGetMaxSeconds: p.aSmallGetMaxSeconds,
        } satisfies SingleNodeInput,
      },
      {
        key: "store-direct",
        task: "store-direct",
        input: {
          dir: work,
          seed: p.seed,
          bulkBytes: p.aBulkBytes,
          bulkMinBytes: p.aBulkMinBytes,
          bulkMaxBytes: p.aBulkMaxBytes,
          bulkConcurrency: p.aBulkConcurrency,
          smallCount: p.aSmallCount,
          smallBytes: p.smallBytes,
          smallConcurrency: p.aSmallConcurrency,
          smallPutMaxSeconds: p.storeSmallMaxSeconds,
          smallGetMaxSeconds: p.storeSmallMaxSeconds,
        } satisfies StoreDirectInput,
      },
      { key: "disk-small", task: "disk-small", input: { dir: work, opBytes: p.smallBytes, maxOps: p.diskSmallMaxOps, maxMs: p.diskSmallMaxMs } satisfies DiskSmallInput },
      { key: "h2-small", task: "h2-small", input: { count: p.aSmallCount, bytes: p.smallBytes, concurrency: p.aSmallConcurrency } satisfies H2SmallInput },
    ];
    for (let r = 0; r < R; r++) for (const s of specs) await runner.run(s, r);
  }

  if (p.only.includes("B")) {
    const [sourceBulk, sourceSmall, fresh] = await Promise.all([cert("source-bulk"), cert("source-small"), cert("fresh")]);
    const receiverPeerPort = await freePort();
    const datasets = {
      bulk: { dir: join(work, "b-source-bulk"), file: join(work, "b-bulk.json"), source: sourceBulk },
      small: { dir: join(work, "b-source-small"), file: join(work, "b-small.json"), source: sourceSmall },
    };
    const fills: TaskSpec[] = [
      {
        key: "fill-bulk",
        task: "fill-source",
        input: {
          dataDir: datasets.bulk.dir,
          ca,
          source: sourceBulk,
          seed: p.seed,
          label: "b-bulk",
          sizes: { totalBytes: p.bBulkBytes, minBytes: p.bBulkMinBytes, maxBytes: p.bBulkMaxBytes },
          concurrency: p.aBulkConcurrency,
          datasetFile: datasets.bulk.file,
        } satisfies FillSourceInput,
      },
      {
        key: "fill-small",
        task: "fill-source",
        input: {
          dataDir: datasets.small.dir,
          ca,
          source: sourceSmall,
          seed: p.seed,
          label: "b-small",
          sizes: { count: p.bSmallCount, bytes: p.smallBytes },
          concurrency: p.bFillConcurrency,
          datasetFile: datasets.small.file,
        } satisfies FillSourceInput,
      },
    ];
    let filled = true;
    for (const f of fills) filled = (await runner.run(f, -1)) !== undefined && filled;
    if (filled) {
      const sizes = (file: string): number[] => (JSON.parse(readFileSync(file, "utf8")) as ArtifactSpec[]).map((a) => a.size);
      const bulkSizes = sizes(datasets.bulk.file);
      const smallSizes = sizes(datasets.small.file);
      const bare = (key: string, groups: number[][]): TaskSpec => ({
        key,
        task: "bare-grpc",
        input: { ca, serverCert: sourceBulk.cert, serverKey: sourceBulk.key, clientCert: fresh.cert, clientKey: fresh.key, groups, streams: p.bBareStreams } satisfies BareGrpcInput,
      });
      const boot = (kind: "bulk" | "small", mode: "fast" | "serial"): TaskSpec => ({
        key: `bootstrap-${kind}-${mode}`,
        task: "bootstrap",
        input: {
          sourceDataDir: datasets[kind].dir,
          receiverDir: join(work, `b-fresh-${kind}-${mode}`),
          ca,
          source: datasets[kind].source,
          receiver: fresh,
          datasetFile: datasets[kind].file,
          mode,
          receiverPeerPort,
          maxSeconds: p.bMaxSeconds,
        } satisfies BootstrapInput,
      });
      const specs: TaskSpec[] = [
        bare("bare-bulk", bulkSizes.map((s) => [s])),
        boot("bulk", "fast"),
        boot("bulk", "serial"),
        bare("bare-small", groupsOf(smallSizes, p.bBareBatch)),
        boot("small", "fast"),
        boot("small", "serial"),
      ];
      for (let r = 0; r < R; r++) for (const s of specs) await runner.run(s, r);
    }
    for (const d of Object.values(datasets)) rmSync(d.dir, { recursive: true, force: true });

    // Scenario 7: peak RSS of a fresh node bootstrapping 4 GiB that includes one 1 GiB artifact.
    const bigSource = await cert("source-big");
    const big = { dir: join(work, "b-source-big"), file: join(work, "b-big.json") };
    const bigDataset = profile === "smoke" ? { totalBytes: 96 << 20, hugeBytes: 32 << 20, smallBytes: 8 << 20 } : {};
    const bigFill: TaskSpec = { key: "fill-big", task: "big-bootstrap", input: { step: "fill", dataDir: big.dir, source: bigSource, datasetFile: big.file, dataset: bigDataset } satisfies BigBootstrapInput };
    if ((await runner.run(bigFill, -1)) !== undefined) {
      const spec: TaskSpec = {
        key: "big-bootstrap",
        task: "big-bootstrap",
        input: { step: "bootstrap", sourceDataDir: big.dir, receiverDir: join(work, "b-fresh-big"), ca, source: bigSource, receiver: fresh, datasetFile: big.file, receiverPeerPort, maxSeconds: Math.max(p.bMaxSeconds, 900) } satisfies BigBootstrapInput,
      };
      for (let r = 0; r < R; r++) await runner.run(spec, r);
    }
    rmSync(big.dir, { recursive: true, force: true });
  }

  if (p.only.includes("C")) {
    const nodes = (await Promise.all([cert("node1"), cert("node2"), cert("node3")])) as [NodeCert, NodeCert, NodeCert];
    const spec: TaskSpec = {
      key: "live-lag",
      task: "live-lag",
      input: {
        dir: work,
        ca,
        nodes,
        seed: p.seed,
        rate: p.cRate,
        seconds: p.cSeconds,
        bytes: p.smallBytes,
        maxInFlight: p.cMaxInFlight,
        warmupPuts: p.cWarmupPuts,
        drainMaxSeconds: p.cDrainMaxSeconds,
        instrument: true,
      } satisfies LiveLagInput,
    };
    for (let r = 0; r < R; r++) await runner.run(spec, r);
  }

  if (runE) {
    const [a, b] = await Promise.all([cert("rejoin-a"), cert("rejoin-b")]);
    const cacheRoot = join(REPO_ROOT, "bench", ".cache");
    const sizes = { large: pe.eArtifacts, small: pe.eSmallArtifacts };
    let seeded = true;
    for (const [kind, artifacts] of Object.entries(sizes)) {
      // Seeding 1M artifacts takes longer than one task's budget: it resumes, call after call.
      let out: Record<string, unknown> | undefined;
      for (let call = 0; call < 12 && out?.["complete"] !== 1; call++) {
        out = await runner.run({ key: `rejoin-seed-${kind}`, task: "rejoin-seed", input: { cacheRoot, ca, a, b, seed: p.seed, artifacts, minBytes: pe.eMinBytes, maxBytes: pe.eMaxBytes, concurrency: pe.eFillConcurrency } satisfies Omit<RejoinSeedInput, "deadlineMs"> }, -1);
        if (out === undefined) break;
      }
      seeded &&= out?.["complete"] === 1;
    }
    if (seeded) {
      const spec = (kind: "large" | "small"): TaskSpec => ({
        key: `rejoin-${kind}`,
        task: "rejoin",
        input: { cacheRoot, workDir: work, ca, a, b, seed: p.seed, artifacts: sizes[kind], minBytes: pe.eMinBytes, maxBytes: pe.eMaxBytes, delta: pe.eDelta, putConcurrency: p.aSmallConcurrency, maxSeconds: pe.eMaxSeconds, runStartedMs: startedAt.getTime() } satisfies RejoinInput,
      });
      for (let r = 0; r < R; r++) for (const kind of ["large", "small"] as const) await runner.run(spec(kind), r);
    }
  }

  const defs = FIGURES.filter((f) => p.only.includes(f.scenario) || (runE && f.scenario === ("E" as FigureDef["scenario"])));
  const figures = buildFigures(defs, runner.rounds);
  const ids = new Set(defs.map((f) => f.id));
  const ratios = buildRatios(
    RATIOS.filter((r) => ids.has(r.figure) && ids.has(r.vs)),
    figures,
  );
  const finishedAt = new Date();
  const missing = figures.filter((f) => f.runs.length !== R || f.runs.some((v) => v === null));
  const failedTasks = runner.log.filter((t) => !t.ok);
  const results = {
    schema: "granary-bench/1",
    profile,
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    wallSeconds: Math.round((finishedAt.getTime() - startedAt.getTime()) / 100) / 10,
    machine: { ...machine, loadAverageAtEnd: os.loadavg().map((x) => Math.round(x * 100) / 100) },
    parameters: { ...p, ...(runE ? { rejoin: pe } : {}) },
    method: {
      rounds: "every round runs each product measurement and its references back to back, in a fresh process each",
      summary: "median of the runs, with min and max; ratios: median/median and the per-round ratios",
      units: "MB = 10^6 bytes; MiB = 2^20 bytes; CPU = user + system seconds",
    },
    figures,
    ratios,
    tasks: runner.log,
    problems: [...failedTasks.map((t) => `task ${t.key} (round ${t.round}): ${t.error ?? "failed"}`), ...missing.map((f) => `figure ${f.id}: missing in ${f.runs.filter((v) => v === null).length + (R - f.runs.length)} run(s)`)],
  };
  writeFileSync(join(outDir, "results.json"), JSON.stringify(results, null, 2) + "\n");
  const md = [
    `# granary bench (${profile}) — ${startedAt.toISOString()}`,
    "",
    `Machine: ${machine.cpuModel}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.kernel}, Node ${machine.node}; commit ${machine.gitCommit.slice(0, 12)}${machine.gitDirty.length > 0 ? ` (+${machine.gitDirty.length} uncommitted paths)` : ""}; ${R} run(s); wall ${results.wallSeconds} s.`,
    "",
    figuresTable(figures),
    "",
    ratiosTable(ratios, figures),
    "",
    ...(results.problems.length > 0 ? ["Problems:", ...results.problems.map((x) => `- ${x}`), ""] : []),
  ].join("\n");
  writeFileSync(join(outDir, "results.md"), md);
  process.stdout.write(md + "\n");
  process.stderr.write(`wrote ${join(outDir, "results.json")}\n`);
  if (results.problems.length > 0) {
    process.stderr.write(`bench: ${results.problems.length} problem(s); failing\n`);
    return 1;
  }
  return 0;
}

process.exitCode = await main();
