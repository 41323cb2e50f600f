/**
 * Scenario 7 (issue 4): peak RSS of a fresh node bootstrapping 4 GiB that includes one 1 GiB
 * artifact (target <= 300 MiB), on loopback over real mTLS, with the product's default settings.
 *
 * One task, two steps (each its own process, so the receiver's high-water mark holds nothing
 * of the fill):
 *  - step "fill": the source's data dir is filled through the store itself (openStore in this
 *    process) with a deterministic dataset: one 1 GiB artifact, the rest 1–64 MiB bulk and
 *    4–256 KiB small artifacts, in a seeded order (the walk is newest first, so the order decides
 *    where the 1 GiB body falls). Bodies are streamed from the AES-CTR keystream (bench/lib/data.ts)
 *    and never held whole, so the fill itself stays small even for the 1 GiB body.
 *  - step "bootstrap": bootstrap.ts's `bootstrap()` (source as a child process, fresh receiver in
 *    this process, mode "fast" = node defaults), with /proc/self/status sampled every
 *    `sampleEveryMs`: VmRSS (the timeline; its max is reported beside the kernel's VmHWM and
 *    process.resourceUsage().maxRSS) while the bootstrap runs.
 */
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { openStore } from "../../src/store/store.js";
import { mbPerSecond, NAMESPACE, pool } from "../lib/common.js";
import { keystreamChunks, mixedSizes, prng, type ArtifactSpec } from "../lib/data.js";
import { bootstrap, type BootstrapInput, type NodeCert } from "./bootstrap.js";
import type { TaskContext } from "./task-context.js";

const MiB = 1 << 20;
const GiB = 1 << 30;

export interface BigDatasetSpec {
  readonly seed: number;
  readonly label: string;
  /** Bytes of the whole dataset (the sizes add up to at least this). Default 4 GiB. */
  readonly totalBytes: number;
  /** The one huge artifact. Default 1 GiB. */
  readonly hugeBytes: number;
  /** Bytes of small artifacts (4–256 KiB) inside totalBytes. Default 256 MiB. */
  readonly smallBytes: number;
  readonly bulkMinBytes: number;
  readonly bulkMaxBytes: number;
}

export const DEFAULT_BIG_DATASET: BigDatasetSpec = {
  seed: 20261125,
  label: "big-bootstrap",
  totalBytes: 4 * GiB,
  hugeBytes: 1 * GiB,
  smallBytes: 256 * MiB,
  bulkMinBytes: 1 * MiB,
  bulkMaxBytes: 64 * MiB,
};

export type BigBootstrapInput =
  | {
      readonly step: "fill";
      readonly dataDir: string;
      readonly source: NodeCert;
      readonly dataset?: Partial<BigDatasetSpec>;
      readonly concurrency?: number;
      /** Where to write the dataset's [{digest, size}] (bootstrap.ts's format). */
      readonly datasetFile: string;
    }
  | ({ readonly step: "bootstrap"; readonly sampleEveryMs?: number; readonly timelineFile?: string } & Omit<BootstrapInput, "mode">);

/** Sizes of the dataset in fill order (seeded): the huge one lands in the middle third. */
export function bigDatasetSizes(spec: BigDatasetSpec): number[] {
  const rest = Math.max(0, spec.totalBytes - spec.hugeBytes);
  const small = Math.min(rest, spec.smallBytes);
  const sizes = [
    ...(rest - small > 0 ? mixedSizes(spec.seed, `${spec.label}/bulk`, rest - small, spec.bulkMinBytes, spec.bulkMaxBytes) : []),
    ...(small > 0 ? mixedSizes(spec.seed, `${spec.label}/small`, small, 4 << 10, 256 << 10) : []),
  ];
  // Fisher–Yates with the seeded PRNG, then the huge artifact somewhere in the middle third.
  const rnd = prng(spec.seed, `${spec.label}/order`);
  for (let i = sizes.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [sizes[i], sizes[j]] = [sizes[j]!, sizes[i]!];
  }
  if (spec.hugeBytes > 0) sizes.splice(Math.floor(sizes.length / 3 + rnd() * (sizes.length / 3)), 0, spec.hugeBytes);
  return sizes;
}

function artifactLabel(spec: BigDatasetSpec, i: number): string {
  return `${spec.label}/${i}`;
}

async function fill(input: Extract<BigBootstrapInput, { step: "fill" }>, ctx: TaskContext): Promise<Record<string, number>> {
  const spec: BigDatasetSpec = { ...DEFAULT_BIG_DATASET, ...input.dataset };
  const sizes = bigDatasetSizes(spec);
  const store = await openStore({ dataDir: input.dataDir, nodeId: input.source.name });
  const list: ArtifactSpec[] = new Array<ArtifactSpec>(sizes.length);
  try {
    const t0 = performance.now();
    // Puts in order one lane at a time would serialise the fill; versions still follow the
    // order closely enough (the huge one stays in the middle).
    await pool(
      sizes.length,
      input.concurrency ?? 4,
      async (i) => {
        const size = sizes[i]!;
        const h = createHash("sha256");
        for (const c of keystreamChunks(spec.seed, artifactLabel(spec, i), size)) h.update(c);
        const digest = h.digest("hex");
        list[i] = { digest, size };
        const body = async function* (): AsyncGenerator<Uint8Array> {
          yield* keystreamChunks(spec.seed, artifactLabel(spec, i), size);
        };
        await store.put({ namespace: NAMESPACE, kind: "cas", key: digest, size }, body(), ctx.signal);
      },
      ctx.signal,
    );
    const ms = performance.now() - t0;
    writeFileSync(input.datasetFile, JSON.stringify(list));
    const totalBytes = sizes.reduce((n, s) => n + s, 0);
    return { artifacts: sizes.length, bytes: totalBytes, largestBytes: Math.max(...sizes), fillSeconds: ms / 1000, fillMbPerSecond: mbPerSecond(totalBytes, ms) };
  } finally {
    await store.close();
  }
}

/** VmRSS and VmHWM of this process in MiB, from /proc/self/status. */
export function procStatusMib(): { rss: number; hwm: number } {
  const s = readFileSync("/proc/self/status", "utf8");
  const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(s)?.[1] ?? NaN);
  return { rss: kb("VmRSS") / 1024, hwm: kb("VmHWM") / 1024 };
}

async function bootstrapSampled(input: Extract<BigBootstrapInput, { step: "bootstrap" }>, ctx: TaskContext): Promise<Record<string, number>> {
  const every = input.sampleEveryMs ?? 100;
  const t0 = performance.now();
  // [ms, VmRSS, V8 heap used, ArrayBuffers (Buffers: chunks held in JS), other external] in MiB.
  const timeline: Array<[number, number, number, number, number]> = [];
  let maxRss = 0;
  let atMax: { heapUsed: number; arrayBuffers: number; external: number } = { heapUsed: 0, arrayBuffers: 0, external: 0 };
  let maxArrayBuffers = 0;
  const r1 = (x: number): number => Math.round(x * 10) / 10;
  const sample = (): void => {
    const { rss } = procStatusMib();
    const m = process.memoryUsage();
    const mem = { heapUsed: m.heapUsed / MiB, arrayBuffers: m.arrayBuffers / MiB, external: (m.external - m.arrayBuffers) / MiB };
    if (rss > maxRss) atMax = mem;
    maxRss = Math.max(maxRss, rss);
    maxArrayBuffers = Math.max(maxArrayBuffers, mem.arrayBuffers);
    timeline.push([Math.round(performance.now() - t0), r1(rss), r1(mem.heapUsed), r1(mem.arrayBuffers), r1(mem.external)]);
  };
  sample();
  const before = procStatusMib();
  const timer = setInterval(sample, every);
  let out: Record<string, number>;
  try {
    const { step: _step, sampleEveryMs: _e, timelineFile: _f, ...rest } = input;
    out = await bootstrap({ ...rest, mode: "fast" }, ctx);
  } finally {
    clearInterval(timer);
  }
  sample();
  const end = procStatusMib();
  const timelineFile = input.timelineFile ?? join(ctx.logDir, `big-bootstrap-rss-${process.pid}.json`);
  writeFileSync(timelineFile, JSON.stringify({ sampleEveryMs: every, columns: ["ms", "vmRssMib", "heapUsedMib", "arrayBuffersMib", "otherExternalMib"], samples: timeline }));
  return {
    ...out,
    rssBeforeMib: before.rss,
    rssTimelineMaxMib: maxRss,
    heapUsedAtRssMaxMib: atMax.heapUsed,
    arrayBuffersAtRssMaxMib: atMax.arrayBuffers,
    otherExternalAtRssMaxMib: atMax.external,
    arrayBuffersMaxMib: maxArrayBuffers,
    rssSamples: timeline.length,
    vmHwmMib: end.hwm,
    rssAtEndMib: end.rss,
  };
}

export async function bigBootstrap(input: BigBootstrapInput, ctx: TaskContext): Promise<Record<string, number>> {
  return input.step === "fill" ? fill(input, ctx) : bootstrapSampled(input, ctx);
}
