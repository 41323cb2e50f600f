/**
 * `make bench-wan`: the WAN lab (issue 4). Builds the emulated WAN (bench/wan/netns.ts: one
 * namespace per node, a router namespace with the TUN delay line, tbf, optional loss), then
 * measures each product figure beside its references ON THE SAME PATH IN THE SAME ROUND:
 *
 *   W1 bulk bootstrap at RATE/RTT  ÷ iperf3 -R single flow, vs rsync daemon time, ÷ serial
 *      mode (1 stream, 64 KiB windows), ÷ bare grpc-js transport; disk append+fsync beside it;
 *      receiver CPU per GB (scenario 8 over the WAN) and peak RSS; a chart of bytes over time.
 *   W3 small artifacts (4 KiB) bootstrap at RTT.
 *   W4 manifest walk at RTT (scaled count; the 1.4M-manifest time is extrapolated from the rate).
 *   W9 CUBIC senders at 0 / 0.1 % / 1 % loss: bootstrap as a fraction of clean; iperf3 with 1
 *      and 16 flows (what more connections per peer would change).
 *
 * Without root it says why and exits 0 (the loopback benchmark, make bench, is separate).
 * Output: bench/results/<timestamp>-wan[-smoke]/results.json, results.md, *.svg, logs/.
 *
 * Usage: node dist-bench/bench/wan/main.js [--smoke] [--help]   (knobs: WAN_* env, see --help)
 */
import { spawn } from "node:child_process";
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { initCa, issueCert } from "../../src/certs/dev-pki.js";
import { parseBytes } from "../../src/util/bytes.js";
import type { ArtifactSpec } from "../lib/data.js";
import { machineInfo } from "../lib/machine.js";
import { runTaskProcess } from "../lib/proc.js";
import { buildFigures, buildRatios, figuresTable, ratiosTable, type FigureDef, type RatioDef, type RoundOutputs, type Target } from "../lib/report.js";
import type { FillSourceInput, NodeCert } from "../tasks/bootstrap.js";
import type { DiskSeqInput } from "../tasks/references.js";
import { WanTopology, wanUnavailableReason, type Host } from "./netns.js";
import { iperf3, rsyncPull } from "./refs.js";
import { bytesOverTimeSvg } from "./svg.js";
import type { WanBareInput, WanBootstrapInput, WanWalkInput } from "./tasks.js";

const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

interface Knob {
  readonly env: string;
  readonly full: number | string;
  readonly smoke: number | string;
  readonly kind?: "bytes" | "list";
  readonly help: string;
}

const KNOBS = {
  runs: { env: "WAN_RUNS", full: 3, smoke: 1, help: "rounds (every figure and its references once per round)" },
  seed: { env: "WAN_SEED", full: 20261125, smoke: 20261125, help: "seed of all generated sizes and bytes" },
  rttMs: { env: "WAN_RTT_MS", full: 50, smoke: 50, help: "round-trip time added by the router" },
  rateMbit: { env: "WAN_RATE_MBIT", full: 200, smoke: 200, help: "tbf rate toward every host, Mbit/s" },
  iperfSeconds: { env: "WAN_IPERF_S", full: 10, smoke: 2, help: "seconds of each iperf3 run" },
  bulkBytes: { env: "WAN_BULK_BYTES", full: 512 * MiB, smoke: 24 * MiB, kind: "bytes", help: "W1: bytes of the bulk dataset" },
  bulkMinBytes: { env: "WAN_BULK_MIN_BYTES", full: MiB, smoke: MiB, kind: "bytes", help: "W1: smallest bulk artifact" },
  bulkMaxBytes: { env: "WAN_BULK_MAX_BYTES", full: 64 * MiB, smoke: 4 * MiB, kind: "bytes", help: "W1: largest bulk artifact" },
  bulkMaxSeconds: { env: "WAN_BULK_MAX_S", full: 180, smoke: 30, help: "W1: time cap of one bootstrap / rsync / bare run" },
  serialMaxSeconds: { env: "WAN_SERIAL_MAX_S", full: 20, smoke: 3, help: "W1: time cap of the serial-mode run (rate over what arrived)" },
  bareStreams: { env: "WAN_BARE_STREAMS", full: 16, smoke: 16, help: "W1: concurrent calls of the bare transport" },
  diskBytes: { env: "WAN_DISK_BYTES", full: GiB, smoke: 16 * MiB, kind: "bytes", help: "W1 ref: bytes appended by the disk reference" },
  smallCount: { env: "WAN_SMALL_COUNT", full: 50_000, smoke: 500, help: "W3: 4 KiB artifacts in the small dataset" },
  smallBytes: { env: "WAN_SMALL_BYTES", full: 4 * KiB, smoke: 4 * KiB, kind: "bytes", help: "W3: size of a small artifact" },
  smallMaxSeconds: { env: "WAN_SMALL_MAX_S", full: 60, smoke: 10, help: "W3: time cap of the small bootstrap" },
  walkCount: { env: "WAN_WALK_COUNT", full: 200_000, smoke: 2_000, help: "W4: manifests the source holds (1400000 = the issue's full size)" },
  walkBodyBytes: { env: "WAN_WALK_BODY_BYTES", full: 64, smoke: 64, kind: "bytes", help: "W4: body size of the walk dataset (bodies are not fetched)" },
  walkMaxSeconds: { env: "WAN_WALK_MAX_S", full: 120, smoke: 20, help: "W4: time cap of one walk" },
  lossPercents: { env: "WAN_LOSS_PERCENTS", full: "0.1,1", smoke: "1", kind: "list", help: "W9: loss levels, % (each also measured clean)" },
  lossBytes: { env: "WAN_LOSS_BYTES", full: 256 * MiB, smoke: 16 * MiB, kind: "bytes", help: "W9: bytes of the loss dataset" },
  lossConnections: { env: "WAN_LOSS_CONNECTIONS", full: "4,16", smoke: "4", kind: "list", help: "W9: also bootstrap with this many TCP connections per peer (the peer client's connections)" },
  lossMaxSeconds: { env: "WAN_LOSS_MAX_S", full: 30, smoke: 5, help: "W9: time cap of one bootstrap under loss (rate over what arrived)" },
  taskTimeoutMs: { env: "WAN_TASK_TIMEOUT_MS", full: 600_000, smoke: 120_000, help: "hard cap of one measurement process" },
} as const satisfies Record<string, Knob>;

type Params = { [K in keyof typeof KNOBS]: (typeof KNOBS)[K] extends { kind: "list" } ? number[] : number } & { profile: "full" | "smoke"; only: string[] };

function resolveParams(profile: "full" | "smoke"): Params {
  const out: Record<string, unknown> = { profile };
  for (const [name, k] of Object.entries(KNOBS) as [string, Knob][]) {
    const text = process.env[k.env];
    const raw = text !== undefined && text !== "" ? text : k[profile];
    if (k.kind === "list") {
      out[name] = String(raw).split(",").map((s) => Number(s.trim())).filter((n) => Number.isFinite(n) && n > 0);
    } else {
      const v = typeof raw === "number" ? raw : k.kind === "bytes" ? parseBytes(raw) : Number(raw);
      if (!Number.isFinite(v) || v < 0) throw new Error(`${k.env}: want a number >= 0, got "${String(raw)}"`);
      out[name] = v;
    }
  }
  const only = (process.env["WAN_ONLY"] ?? "W1,W3,W4,W9").split(",").map((s) => s.trim().toUpperCase()).filter(Boolean);
  for (const s of only) if (!["W1", "W3", "W4", "W9"].includes(s)) throw new Error(`WAN_ONLY: unknown scenario "${s}" (W1, W3, W4, W9)`);
  return { ...out, only } as Params;
}

const T = {
  vsIperf: { op: ">=", value: 0.9, source: "issue 4 §1: bootstrap goodput >= 0.90 x iperf3" },
  vsRsync: { op: "<=", value: 1.0, source: "issue 4 §1: bootstrap time <= rsync time" },
  vsSerial: { op: ">=", value: 10, source: "issue 4 §1: >= 10 x serial mode" },
  small: { op: ">=", value: 5000, source: "issue 4 §3: >= 5,000 small artifacts/s at 50 ms RTT" },
  walk: { op: "<=", value: 60, source: "issue 4 §4: 1.4M-manifest walk <= 60 s at 50 ms RTT" },
  cpu: { op: "<=", value: 3, source: "issue 4 §8: receive CPU <= 3 core-s/GB" },
  loss01: { op: ">=", value: 0.6, source: "perf-anchors §5.6: >= 0.6 x clean at 0.1 % loss, one connection" },
  loss1: { op: ">=", value: 0.3, source: "perf-anchors §5.6: >= 0.3 x clean at 1 % loss" },
} as const satisfies Record<string, Target>;

type Def = Omit<FigureDef, "scenario"> & { scenario: string };

function figureDefs(p: Params): { figures: Def[]; ratios: RatioDef[] } {
  const figures: Def[] = [
    { id: "w1.iperf3", scenario: "W1", label: "ref: iperf3 -R, 1 flow (link limit)", unit: "MB/s", task: "w1-iperf3", field: "mbPerSecond", kind: "reference" },
    { id: "w1.bootstrap", scenario: "W1", label: "bootstrap, bulk (1–64 MiB), node defaults", unit: "MB/s", task: "w1-bootstrap", field: "mbPerSecond", kind: "product", partialField: "partial" },
    { id: "w1.bootstrap_s", scenario: "W1", label: "bootstrap, bulk: time", unit: "s", task: "w1-bootstrap", field: "seconds", kind: "product", partialField: "partial" },
    { id: "w1.rsync_s", scenario: "W1", label: "ref: rsync daemon pull of the source's data dir: time", unit: "s", task: "w1-rsync", field: "seconds", kind: "reference" },
    { id: "w1.rsync", scenario: "W1", label: "ref: rsync daemon pull", unit: "MB/s", task: "w1-rsync", field: "mbPerSecond", kind: "reference" },
    { id: "w1.serial", scenario: "W1", label: "bootstrap, bulk, serial mode (1 stream, 64 KiB windows): bytes on the wire", unit: "MB/s", task: "w1-serial", field: "wireMbPerSecond", kind: "product", partialField: "partial" },
    { id: "w1.bare", scenario: "W1", label: "ref: bare grpc-js mTLS (no store), same sizes", unit: "MB/s", task: "w1-bare", field: "mbPerSecond", kind: "reference", partialField: "partial" },
    { id: "w1.disk", scenario: "W1", label: "ref: disk append 1 MiB, fdatasync / 64 MiB", unit: "MB/s", task: "w1-disk", field: "mbPerSecond", kind: "reference" },
    { id: "w8.recv_cpu", scenario: "W8", label: "bootstrap bulk over the WAN: receiver CPU", unit: "core-s/GB", task: "w1-bootstrap", field: "receiverCpuSecondsPerGb", kind: "product", target: T.cpu },
    { id: "w1.recv_rss", scenario: "W1", label: "bootstrap bulk: receiver peak RSS", unit: "MiB", task: "w1-bootstrap", field: "receiverPeakRssMib", kind: "detail" },
    { id: "w1.iperf3_retx", scenario: "W1", label: "iperf3 retransmits (tbf drops)", unit: "segments", task: "w1-iperf3", field: "retransmits", kind: "detail" },
    { id: "w3.small", scenario: "W3", label: `bootstrap, small (${p.smallBytes} B)`, unit: "artifacts/s", task: "w3-small", field: "artifactsPerSecond", kind: "product", target: T.small, partialField: "partial" },
    { id: "w3.small_rtt0", scenario: "W3", label: "ref: the same small bootstrap, same path, delay line at 0 ms", unit: "artifacts/s", task: "w3-small-rtt0", field: "artifactsPerSecond", kind: "reference", partialField: "partial" },
    { id: "w3.small_recv_cpu", scenario: "W3", label: "bootstrap, small: receiver CPU per artifact", unit: "ms", task: "w3-small", field: "receiverCpuMsPerArtifact", kind: "detail" },
    { id: "w3.small_src_cpu", scenario: "W3", label: "bootstrap, small: source CPU per artifact", unit: "ms", task: "w3-small", field: "sourceCpuMsPerArtifact", kind: "detail" },
    { id: "w3.small_mb", scenario: "W3", label: "bootstrap, small: goodput", unit: "MB/s", task: "w3-small", field: "mbPerSecond", kind: "detail", partialField: "partial" },
    { id: "w4.walk", scenario: "W4", label: `manifest walk (${p.walkCount} manifests)`, unit: "manifests/s", task: "w4-walk", field: "manifestsPerSecond", kind: "product", partialField: "partial" },
    { id: "w4.walk_1_4m", scenario: "W4", label: "1.4M-manifest walk at that rate (extrapolated unless WAN_WALK_COUNT=1400000)", unit: "s", task: "w4-walk", field: "seconds1400k", kind: "product", target: T.walk, partialField: "partial" },
    { id: "w4.page_ms", scenario: "W4", label: "manifest walk: time per page", unit: "ms", task: "w4-walk", field: "msPerPage", kind: "detail" },
  ];
  const ratios: RatioDef[] = [
    { figure: "w1.bootstrap", vs: "w1.iperf3", note: "bootstrap goodput vs the link limit (single TCP flow)", target: T.vsIperf },
    { figure: "w1.bootstrap_s", vs: "w1.rsync_s", note: "bootstrap time vs rsync of the same data", target: T.vsRsync },
    { figure: "w1.bootstrap", vs: "w1.serial", note: "speed-up over serial mode", target: T.vsSerial },
    { figure: "w1.bootstrap", vs: "w1.bare", note: "bootstrap vs bare transport on the same path" },
    { figure: "w1.bare", vs: "w1.iperf3", note: "bare transport vs the link limit" },
    { figure: "w1.rsync", vs: "w1.iperf3", note: "rsync vs the link limit" },
    { figure: "w3.small", vs: "w3.small_rtt0", note: "small artifacts at the RTT vs at ~0 ms on the same path (1 = the RTT costs nothing)" },
    { figure: "w1.bootstrap", vs: "w1.disk", note: "bootstrap vs the disk (<< 1: the disk is not the bound)" },
  ];
  const levels = [0, ...p.lossPercents];
  for (const l of levels) {
    const k = String(l);
    figures.push(
      { id: `w9.iperf3_1_${k}`, scenario: "W9", label: `ref: iperf3 CUBIC 1 flow, ${l} % loss`, unit: "MB/s", task: `w9-iperf3-1-${k}`, field: "mbPerSecond", kind: "reference" },
      { id: `w9.iperf3_16_${k}`, scenario: "W9", label: `ref: iperf3 CUBIC 16 flows, ${l} % loss`, unit: "MB/s", task: `w9-iperf3-16-${k}`, field: "mbPerSecond", kind: "reference" },
      { id: `w9.bootstrap_${k}`, scenario: "W9", label: `bootstrap, CUBIC source, ${l} % loss: bytes on the wire`, unit: "MB/s", task: `w9-bootstrap-${k}`, field: "wireMbPerSecond", kind: "product", partialField: "partial" },
      { id: `w9.bare_${k}`, scenario: "W9", label: `ref: bare grpc-js, 1 connection, CUBIC, ${l} % loss`, unit: "MB/s", task: `w9-bare-${k}`, field: "mbPerSecond", kind: "reference", partialField: "partial" },
      ...p.lossConnections.map((c): Def => ({ id: `w9.bootstrap_c${c}_${k}`, scenario: "W9", label: `bootstrap, ${c} connections per peer, ${l} % loss: bytes on the wire`, unit: "MB/s", task: `w9-bootstrap-c${c}-${k}`, field: "wireMbPerSecond", kind: "product", partialField: "partial" })),
    );
    for (const c of p.lossConnections) ratios.push({ figure: `w9.bootstrap_c${c}_${k}`, vs: `w9.bootstrap_${k}`, note: `${c} connections per peer vs 1 at ${l} % loss` });
    if (l > 0) {
      const target = l <= 0.1 ? T.loss01 : l >= 1 ? T.loss1 : undefined;
      ratios.push(
        { figure: `w9.bootstrap_${k}`, vs: "w9.bootstrap_0", note: `bootstrap at ${l} % loss as a fraction of clean (CUBIC, 1 connection)`, ...(target ? { target } : {}) },
        { figure: `w9.iperf3_1_${k}`, vs: "w9.iperf3_1_0", note: `1 TCP flow at ${l} % loss vs clean` },
        { figure: `w9.iperf3_16_${k}`, vs: "w9.iperf3_16_0", note: `16 TCP flows at ${l} % loss vs clean (what 16 connections per peer would give)` },
        { figure: `w9.iperf3_16_${k}`, vs: `w9.iperf3_1_${k}`, note: `16 flows vs 1 at ${l} % loss` },
        { figure: `w9.bootstrap_${k}`, vs: `w9.iperf3_1_${k}`, note: `bootstrap vs 1 CUBIC flow at ${l} % loss` },
        { figure: `w9.bare_${k}`, vs: `w9.iperf3_1_${k}`, note: `bare grpc-js vs 1 CUBIC flow at ${l} % loss (the stack under loss)` },
        { figure: `w9.bare_${k}`, vs: "w9.bare_0", note: `bare grpc-js at ${l} % loss vs clean` },
      );
    }
  }
  return { figures: figures.filter((f) => p.only.some((s) => f.scenario === s || (s === "W1" && f.scenario === "W8"))), ratios };
}

interface LogEntry {
  key: string;
  round: number;
  ok: boolean;
  wallMs: number;
  load1: [number, number];
  error?: string;
  output?: Record<string, unknown>;
}

const load1 = (): number => Math.round(os.loadavg()[0]! * 100) / 100;
const stamp = (): string => new Date().toISOString().slice(11, 19);

/** Runs a WAN task (bench/wan/task.js) inside namespace `ns`, in its own process group, bounded by timeoutMs. */
async function runInNs(ns: string, name: string, inputFile: string, outputFile: string, logFile: string, timeoutMs: number): Promise<{ ok: boolean; output?: Record<string, unknown>; error?: string }> {
  const script = fileURLToPath(new URL("./task.js", import.meta.url));
  mkdirSync(dirname(logFile), { recursive: true });
  const log = createWriteStream(logFile, { flags: "a" });
  await new Promise<void>((r) => log.once("open", () => r()));
  const extra = (process.env["BENCH_NODE_ARGS"] ?? "").split(/\s+/).filter(Boolean);
  const proc = spawn("ip", ["netns", "exec", ns, process.execPath, ...extra, script, name], {
    detached: true,
    stdio: ["ignore", log, log],
    env: { ...process.env, BENCH_TASK_INPUT: inputFile, BENCH_TASK_OUTPUT: outputFile },
  });
  const killGroup = (): void => {
    try {
      process.kill(-proc.pid!, "SIGKILL");
    } catch {
      // gone
    }
  };
  process.once("exit", killGroup);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup();
  }, timeoutMs);
  const code = await new Promise<number | null>((r) => proc.once("exit", (c) => r(c)));
  clearTimeout(timer);
  killGroup();
  process.removeListener("exit", killGroup);
  log.end();
  let output: Record<string, unknown> | undefined;
  try {
    output = JSON.parse(readFileSync(outputFile, "utf8")) as Record<string, unknown>;
  } catch {
    output = undefined;
  }
  if (timedOut) return { ok: false, error: `timed out after ${timeoutMs} ms; see ${logFile}` };
  if (code !== 0 || !output || typeof output["error"] === "string") return { ok: false, error: `${typeof output?.["error"] === "string" ? output["error"] : `exit code ${code}`}; see ${logFile}` };
  return { ok: true, output };
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  if (args.includes("--help") || args.includes("-h")) {
    const rows = Object.entries(KNOBS).map(([n, k]) => `  ${k.env.padEnd(22)} ${String(k.full).padStart(11)} ${String(k.smoke).padStart(9)}  ${k.help} (${n})`);
    process.stdout.write(`Usage: node dist-bench/bench/wan/main.js [--smoke]   (as root)\n\nEnvironment (default full / smoke):\n${rows.join("\n")}\n  WAN_ONLY               W1,W3,W4,W9  scenarios to run\n  BENCH_TMPDIR           os.tmpdir()  where data dirs go\n`);
    return 0;
  }
  const profile = args.includes("--smoke") ? "smoke" : "full";
  const p = resolveParams(profile);
  const why = wanUnavailableReason();
  if (why !== undefined) {
    process.stderr.write(`bench-wan: WAN scenarios skipped: ${why}\n`);
    return 0;
  }
  const startedAt = new Date();
  const outDir = join(REPO_ROOT, "bench", "results", `${startedAt.toISOString().replace(/[:.]/g, "-")}-wan${profile === "smoke" ? "-smoke" : ""}`);
  const logDir = join(outDir, "logs");
  mkdirSync(logDir, { recursive: true });
  const work = mkdtempSync(join(process.env["BENCH_TMPDIR"] || os.tmpdir(), "granary-wan-"));
  mkdirSync(join(work, "io"));
  process.once("exit", () => rmSync(work, { recursive: true, force: true }));
  const machine = machineInfo(REPO_ROOT, work);
  process.stderr.write(`granary bench-wan (${profile}): results in ${outDir}\n  work dir ${work}\n`);

  const pkiDir = join(work, "pki");
  const ca = (await initCa({ dir: pkiDir })).certFile;
  const cert = async (name: string): Promise<NodeCert> => {
    const c = await issueCert({ dir: pkiDir, name });
    return { name, cert: c.certFile, key: c.keyFile };
  };
  const [srcCert, rcvCert] = await Promise.all([cert("wan-source"), cert("wan-fresh")]);

  const rounds: RoundOutputs = Array.from({ length: p.runs }, () => ({}));
  const log: LogEntry[] = [];
  let seq = 0;
  const record = (key: string, round: number, r: { ok: boolean; output?: Record<string, unknown> | undefined; error?: string | undefined }, t0: number, l0: number): Record<string, unknown> | undefined => {
    const wallMs = Date.now() - t0;
    process.stderr.write(r.ok ? `ok (${(wallMs / 1000).toFixed(1)} s) ${summary(r.output)}\n` : `FAILED: ${r.error}\n`);
    log.push({ key, round: round + 1, ok: r.ok, wallMs, load1: [l0, load1()], ...(r.error ? { error: r.error } : {}), ...(r.output ? { output: { ...r.output, samples: undefined, wireSamples: undefined } } : {}) });
    if (round >= 0 && r.output) rounds[round]![key] = r.output;
    return r.output;
  };
  const announce = (key: string, round: number): [number, number] => {
    process.stderr.write(`[${stamp()}] round ${round + 1}/${p.runs} ${key} (load ${load1()}) ... `);
    return [Date.now(), load1()];
  };
  /** A harness task (bench/task.js) in the root namespace: dataset fills and the disk reference. */
  const hostTask = async (key: string, task: string, input: Record<string, unknown>, round: number): Promise<Record<string, unknown> | undefined> => {
    const [t0, l0] = announce(key, round);
    const base = join(work, "io", `${String(++seq).padStart(3, "0")}-${key}`);
    writeFileSync(`${base}.in.json`, JSON.stringify({ ...input, deadlineMs: p.taskTimeoutMs - 5_000, logDir }));
    mkdirSync(logDir, { recursive: true });
    const r = await runTaskProcess(task, `${base}.in.json`, `${base}.out.json`, join(logDir, `${String(seq).padStart(3, "0")}-${key}.log`), p.taskTimeoutMs);
    return record(key, round, { ok: r.ok, output: r.output, error: r.error }, t0, l0);
  };
  const nsTask = async (key: string, ns: string, task: string, input: Record<string, unknown>, round: number): Promise<Record<string, unknown> | undefined> => {
    const [t0, l0] = announce(key, round);
    const base = join(work, "io", `${String(++seq).padStart(3, "0")}-${key}`);
    writeFileSync(`${base}.in.json`, JSON.stringify({ ...input, deadlineMs: p.taskTimeoutMs - 5_000, logDir }));
    const r = await runInNs(ns, task, `${base}.in.json`, `${base}.out.json`, join(logDir, `${String(seq).padStart(3, "0")}-${key}.log`), p.taskTimeoutMs);
    return record(key, round, r, t0, l0);
  };
  const inline = async (key: string, round: number, fn: () => Promise<Record<string, number>>): Promise<Record<string, unknown> | undefined> => {
    const [t0, l0] = announce(key, round);
    try {
      return record(key, round, { ok: true, output: await fn() }, t0, l0);
    } catch (e) {
      return record(key, round, { ok: false, error: e instanceof Error ? e.message : String(e) }, t0, l0);
    }
  };

  // Datasets: filled through the store in the root namespace (how the source got its data is not measured).
  const fill = async (label: string, sizes: FillSourceInput["sizes"]): Promise<{ dir: string; file: string } | undefined> => {
    const d = { dir: join(work, `src-${label}`), file: join(work, `${label}.json`) };
    const out = await hostTask(`fill-${label}`, "fill-source", { dataDir: d.dir, ca, source: srcCert, seed: p.seed, label: `wan-${label}`, sizes, concurrency: 32, datasetFile: d.file } satisfies FillSourceInput, -1);
    return out ? d : undefined;
  };
  const bulk = p.only.includes("W1") ? await fill("bulk", { totalBytes: p.bulkBytes, minBytes: p.bulkMinBytes, maxBytes: p.bulkMaxBytes }) : undefined;
  const small = p.only.includes("W3") ? await fill("small", { count: p.smallCount, bytes: p.smallBytes }) : undefined;
  const walk = p.only.includes("W4") ? await fill("walk", { count: p.walkCount, bytes: p.walkBodyBytes }) : undefined;
  const lossDs = p.only.includes("W9") ? await fill("loss", { totalBytes: p.lossBytes, minBytes: p.bulkMinBytes, maxBytes: p.bulkMaxBytes }) : undefined;

  const topo = await WanTopology.create(2, { rttMs: p.rttMs, rateMbit: p.rateMbit, lossPercent: 0 });
  const [src, rcv] = topo.hosts as [Host, Host];
  const defaultCc = topo.congestionControl(src);
  process.stderr.write(`  topology ${topo.prefix}*: ${src.ns} ${src.address} (source) → router (RTT ${p.rttMs} ms, tbf ${p.rateMbit} Mbit/s) → ${rcv.ns} ${rcv.address} (receiver); default congestion control ${defaultCc}\n`);
  const samples: Record<string, Array<[number, number]>> = {};
  const boot = (ds: { dir: string; file: string }, mode: "fast" | "serial", maxSeconds: number): WanBootstrapInput => ({
    source: { ns: src.ns, address: src.address, dataDir: ds.dir, cert: srcCert },
    address: rcv.address,
    receiverDir: join(work, `fresh-${mode}`),
    ca,
    receiver: rcvCert,
    datasetFile: ds.file,
    mode,
    maxSeconds,
    sampleMs: 250,
  });
  const keep = (key: string, round: number, out: Record<string, unknown> | undefined): void => {
    if (round === 0 && Array.isArray(out?.["samples"])) samples[key] = out["samples"] as Array<[number, number]>;
    if (round === 0 && Array.isArray(out?.["wireSamples"])) samples[`${key}:wire`] = out["wireSamples"] as Array<[number, number]>;
  };

  try {
    for (let r = 0; r < p.runs; r++) {
      if (bulk) {
        await inline("w1-iperf3", r, () => iperf3(topo, src, rcv, { seconds: p.iperfSeconds, parallel: 1 }));
        keep("w1-bootstrap", r, await nsTask("w1-bootstrap", rcv.ns, "wan-bootstrap", { ...boot(bulk, "fast", p.bulkMaxSeconds) }, r));
        await inline("w1-rsync", r, () => rsyncPull(topo, src, rcv, bulk.dir, work, p.bulkMaxSeconds));
        keep("w1-serial", r, await nsTask("w1-serial", rcv.ns, "wan-bootstrap", { ...boot(bulk, "serial", p.serialMaxSeconds) }, r));
        const sizes = (JSON.parse(readFileSync(bulk.file, "utf8")) as ArtifactSpec[]).map((a) => [a.size]);
        await nsTask("w1-bare", rcv.ns, "wan-bare", { sourceNs: src.ns, sourceAddress: src.address, ca, serverCert: srcCert, clientCert: rcvCert, groups: sizes, streams: p.bareStreams, maxSeconds: p.bulkMaxSeconds } satisfies WanBareInput, r);
        await hostTask("w1-disk", "disk-seq", { dir: work, totalBytes: p.diskBytes, appendBytes: MiB, syncEveryBytes: 64 * MiB } satisfies DiskSeqInput, r);
      }
      if (small) {
        await nsTask("w3-small", rcv.ns, "wan-bootstrap", { ...boot(small, "fast", p.smallMaxSeconds) }, r);
        // The same path with the delay line at 0 ms: what the RTT itself costs small artifacts.
        await topo.setRtt(0);
        try {
          await nsTask("w3-small-rtt0", rcv.ns, "wan-bootstrap", { ...boot(small, "fast", p.smallMaxSeconds) }, r);
        } finally {
          await topo.setRtt(p.rttMs);
        }
      }
      if (walk) {
        const out = await nsTask("w4-walk", rcv.ns, "wan-walk", { source: { ns: src.ns, address: src.address, dataDir: walk.dir, cert: srcCert }, ca, receiver: rcvCert, expect: p.walkCount, maxSeconds: p.walkMaxSeconds } satisfies WanWalkInput, r);
        if (out && typeof out["manifestsPerSecond"] === "number") out["seconds1400k"] = 1_400_000 / out["manifestsPerSecond"];
      }
      if (lossDs) {
        topo.setCongestionControl("cubic");
        try {
          for (const l of [0, ...p.lossPercents]) {
            topo.applyLoss(l);
            await inline(`w9-iperf3-1-${l}`, r, () => iperf3(topo, src, rcv, { seconds: p.iperfSeconds, parallel: 1 }));
            await inline(`w9-iperf3-16-${l}`, r, () => iperf3(topo, src, rcv, { seconds: p.iperfSeconds, parallel: 16 }));
            keep(`w9-bootstrap-${l}`, r, await nsTask(`w9-bootstrap-${l}`, rcv.ns, "wan-bootstrap", { ...boot(lossDs, "fast", p.lossMaxSeconds) }, r));
            const lossSizes = (JSON.parse(readFileSync(lossDs.file, "utf8")) as ArtifactSpec[]).map((a) => [a.size]);
            await nsTask(`w9-bare-${l}`, rcv.ns, "wan-bare", { sourceNs: src.ns, sourceAddress: src.address, ca, serverCert: srcCert, clientCert: rcvCert, groups: lossSizes, streams: p.bareStreams, maxSeconds: p.lossMaxSeconds } satisfies WanBareInput, r);
            for (const c of p.lossConnections) await nsTask(`w9-bootstrap-c${c}-${l}`, rcv.ns, "wan-bootstrap", { ...boot(lossDs, "fast", p.lossMaxSeconds), connections: c } satisfies WanBootstrapInput, r);
          }
        } finally {
          topo.applyLoss(0);
          topo.setCongestionControl(defaultCc as "bbr");
        }
      }
    }
  } finally {
    topo.close();
  }

  // Results folders may have been tidied away by someone else meanwhile.
  mkdirSync(logDir, { recursive: true });
  const { figures: defs, ratios: ratioDefs } = figureDefs(p);
  const figures = buildFigures(defs as FigureDef[], rounds);
  const ids = new Set(defs.map((f) => f.id));
  const ratios = buildRatios(ratioDefs.filter((x) => ids.has(x.figure) && ids.has(x.vs)), figures);
  const byId = new Map(figures.map((f) => [f.id, f]));
  // Charts: bytes over time of round 1 beside the link limit measured in that round.
  const charts: string[] = [];
  const chart = (file: string, title: string, keys: Array<[string, string, string]>, limitId: string): void => {
    const series = keys.filter(([k]) => samples[k]).map(([k, label, color]) => ({ label, color, points: samples[k]! }));
    if (series.length === 0) return;
    const limit = byId.get(limitId)?.runs[0] ?? undefined;
    writeFileSync(join(outDir, file), bytesOverTimeSvg(title, series, limit ?? undefined));
    charts.push(file);
  };
  chart("w1-bulk-bootstrap.svg", `W1 bulk bootstrap, ${p.rateMbit} Mbit/s, RTT ${p.rttMs} ms (round 1)`, [["w1-bootstrap:wire", "bootstrap: bytes on the wire (eth0 rx)", "#1f77b4"], ["w1-bootstrap", "bootstrap: bytes handed to the store", "#17becf"], ["w1-serial:wire", "serial mode: on the wire", "#d62728"]], "w1.iperf3");
  chart("w9-loss-bootstrap.svg", `W9 bootstrap with CUBIC under loss, ${p.rateMbit} Mbit/s, RTT ${p.rttMs} ms (round 1)`, [0, ...p.lossPercents].map((l, i) => [`w9-bootstrap-${l}:wire`, `${l} % loss, on the wire`, ["#1f77b4", "#ff7f0e", "#d62728", "#2ca02c"][i % 4]!] as [string, string, string]), "w9.iperf3_1_0");

  const finishedAt = new Date();
  const missing = figures.filter((f) => f.runs.some((v) => v === null));
  const results = {
    schema: "granary-bench-wan/1",
    profile,
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    wallSeconds: Math.round((finishedAt.getTime() - startedAt.getTime()) / 100) / 10,
    machine: { ...machine, loadAverageAtEnd: os.loadavg().map((x) => Math.round(x * 100) / 100) },
    parameters: p,
    path: {
      topology: "host namespace per node ↔ veth ↔ router namespace ↔ veth ↔ host namespace",
      delay: `user-space TUN delay line (bench/wan/tundelay.py), ${p.rttMs / 2} ms per direction`,
      rate: `tbf ${p.rateMbit} Mbit/s on every router→host egress`,
      loss: "nftables numgen in the router's forward chain, both directions",
      congestionControl: `W1/W3/W4: the namespace default (${defaultCc}, the kernel's); W9: cubic as every host namespace's default (the nodes' sockets use it; iperf3 too)`,
    },
    method: {
      rounds: "each round measures every product figure and its references back to back on the same path",
      summary: "median of the runs with min and max; ratios: median/median and per-round",
      units: "MB = 10^6 bytes; Mbit = 10^6 bits; CPU = user + system seconds",
      load: "each task's 1-minute load average before/after is in tasks[].load1",
    },
    figures,
    ratios,
    charts,
    tasks: log,
    problems: [...log.filter((t) => !t.ok).map((t) => `task ${t.key} (round ${t.round}): ${t.error ?? "failed"}`), ...missing.map((f) => `figure ${f.id}: missing in ${f.runs.filter((v) => v === null).length} run(s)`)],
  };
  writeFileSync(join(outDir, "results.json"), JSON.stringify(results, null, 2) + "\n");
  const loads = log.map((t) => `${t.key}#${t.round}: ${t.load1[0]}→${t.load1[1]}`).join("; ");
  const md = [
    `# granary bench-wan (${profile}) — ${startedAt.toISOString()}`,
    "",
    `Machine: ${machine.cpuModel}, ${machine.cores} cores, ${machine.kernel}, Node ${machine.node}; commit ${machine.gitCommit.slice(0, 12)}; ${p.runs} round(s); wall ${results.wallSeconds} s. Path: ${results.path.delay}; ${results.path.rate}; ${results.path.congestionControl}.`,
    "",
    figuresTable(figures),
    "",
    ratiosTable(ratios, figures),
    "",
    `Load average (1 min) before→after each task: ${loads}`,
    "",
    ...(charts.length > 0 ? [`Charts: ${charts.join(", ")}`, ""] : []),
    ...(results.problems.length > 0 ? ["Problems:", ...results.problems.map((x) => `- ${x}`), ""] : []),
  ].join("\n");
  writeFileSync(join(outDir, "results.md"), md);
  process.stdout.write(md + "\n");
  process.stderr.write(`wrote ${join(outDir, "results.json")}\n`);
  return results.problems.length > 0 ? 1 : 0;
}

function summary(o: Record<string, unknown> | undefined): string {
  if (!o) return "";
  const pick = ["mbPerSecond", "artifactsPerSecond", "manifestsPerSecond", "seconds", "partial"].filter((k) => typeof o[k] === "number");
  return pick.map((k) => `${k}=${Math.round((o[k] as number) * 100) / 100}`).join(" ");
}

process.exitCode = await main();
