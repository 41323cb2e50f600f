/**
 * Benchmark parameters: one table of knobs, each with its full-size and smoke-size default,
 * overridable by an environment variable (sizes accept 4096, 64MiB, 1GiB, ...).
 * `make bench` runs the full column, `make bench-smoke` the smoke column.
 */
import { parseBytes } from "../../src/util/bytes.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

interface Knob {
  readonly env: string;
  readonly full: number;
  readonly smoke: number;
  readonly bytes?: boolean;
  readonly help: string;
}

/** Every knob; the key is the field name in BenchParams and results.json. */
export const KNOBS = {
  runs: { env: "BENCH_RUNS", full: 3, smoke: 1, help: "runs of every measurement (medians need >= 3)" },
  seed: { env: "BENCH_SEED", full: 20261125, smoke: 20261125, help: "seed of all generated sizes and bytes" },
  smallBytes: { env: "BENCH_SMALL_BYTES", full: 4 * KiB, smoke: 4 * KiB, bytes: true, help: "size of a small artifact" },
  aBulkBytes: { env: "BENCH_A_BULK_BYTES", full: GiB, smoke: 16 * MiB, bytes: true, help: "A: bytes of the bulk Put/Get dataset" },
  aBulkMinBytes: { env: "BENCH_A_BULK_MIN_BYTES", full: MiB, smoke: MiB, bytes: true, help: "A: smallest bulk artifact" },
  aBulkMaxBytes: { env: "BENCH_A_BULK_MAX_BYTES", full: 64 * MiB, smoke: 4 * MiB, bytes: true, help: "A: largest bulk artifact" },
  aBulkConcurrency: { env: "BENCH_A_BULK_CONCURRENCY", full: 4, smoke: 4, help: "A: bulk Puts/Gets in flight on the one connection (and h2 ceiling streams)" },
  aSmallCount: { env: "BENCH_A_SMALL_COUNT", full: 100_000, smoke: 500, help: "A: number of small artifacts" },
  aSmallConcurrency: { env: "BENCH_A_SMALL_CONCURRENCY", full: 32, smoke: 32, help: "A: small Puts/Gets in flight on the one connection" },
  aSmallPutMaxSeconds: { env: "BENCH_A_SMALL_PUT_MAX_S", full: 30, smoke: 30, help: "A: time cap of the small Put phase (rate over what finished)" },
  aSmallGetMaxSeconds: { env: "BENCH_A_SMALL_GET_MAX_S", full: 15, smoke: 15, help: "A: time cap of the small Get phase" },
  storeSmallMaxSeconds: { env: "BENCH_STORE_SMALL_MAX_S", full: 15, smoke: 15, help: "A decomposition: time cap of each small phase of the store-only run" },
  diskBytes: { env: "BENCH_DISK_BYTES", full: GiB, smoke: 16 * MiB, bytes: true, help: "A ref: bytes appended by the sequential disk reference" },
  diskAppendBytes: { env: "BENCH_DISK_APPEND_BYTES", full: MiB, smoke: MiB, bytes: true, help: "A ref: size of one append" },
  diskSyncEveryBytes: { env: "BENCH_DISK_SYNC_EVERY_BYTES", full: 64 * MiB, smoke: 4 * MiB, bytes: true, help: "A ref: fdatasync after this many appended bytes" },
  diskSmallMaxOps: { env: "BENCH_DISK_SMALL_MAX_OPS", full: 20_000, smoke: 200, help: "A ref: most 4 KiB append+fdatasync ops" },
  diskSmallMaxMs: { env: "BENCH_DISK_SMALL_MAX_MS", full: 10_000, smoke: 2_000, help: "A ref: time cap of the 4 KiB append+fdatasync loop" },
  h2Bytes: { env: "BENCH_H2_BYTES", full: GiB, smoke: 16 * MiB, bytes: true, help: "A ref: bytes the bare node:http2 server sends" },
  bBulkBytes: { env: "BENCH_B_BULK_BYTES", full: GiB, smoke: 16 * MiB, bytes: true, help: "B: bytes of the bulk bootstrap dataset" },
  bBulkMinBytes: { env: "BENCH_B_BULK_MIN_BYTES", full: MiB, smoke: MiB, bytes: true, help: "B: smallest bulk artifact" },
  bBulkMaxBytes: { env: "BENCH_B_BULK_MAX_BYTES", full: 256 * MiB, smoke: 8 * MiB, bytes: true, help: "B: largest bulk artifact" },
  bSmallCount: { env: "BENCH_B_SMALL_COUNT", full: 100_000, smoke: 500, help: "B: small artifacts in the bootstrap dataset" },
  bMaxSeconds: { env: "BENCH_B_MAX_S", full: 60, smoke: 60, help: "B: time cap of one bootstrap (rates then over what arrived, marked partial)" },
  bFillConcurrency: { env: "BENCH_B_FILL_CONCURRENCY", full: 32, smoke: 32, help: "B: store.put calls in flight while filling the source (not a figure)" },
  bBareStreams: { env: "BENCH_B_BARE_STREAMS", full: 16, smoke: 16, help: "B ref: concurrent calls of the bare transport (the product's default streams)" },
  bBareBatch: { env: "BENCH_B_BARE_BATCH", full: 256, smoke: 256, help: "B ref: small bodies per bare call (the product's batch size)" },
  cRate: { env: "BENCH_C_RATE", full: 1000, smoke: 50, help: "C: Puts per second on node 1" },
  cSeconds: { env: "BENCH_C_SECONDS", full: 20, smoke: 2, help: "C: seconds of paced Puts" },
  cWarmupPuts: { env: "BENCH_C_WARMUP_PUTS", full: 100, smoke: 20, help: "C: Puts before the measurement, paced at <= 50/s" },
  cDrainMaxSeconds: { env: "BENCH_C_DRAIN_MAX_S", full: 90, smoke: 60, help: "C: most seconds to wait for the replicas after the last Put (then lag = lower bound, marked partial)" },
  cMaxInFlight: { env: "BENCH_C_MAX_IN_FLIGHT", full: 256, smoke: 256, help: "C: Puts in flight before the pacer waits (counted as late)" },
  taskTimeoutMs: { env: "BENCH_TASK_TIMEOUT_MS", full: 600_000, smoke: 120_000, help: "hard cap of one measurement process" },
} as const satisfies Record<string, Knob>;

export type BenchParams = { -readonly [K in keyof typeof KNOBS]: number } & {
  profile: "full" | "smoke";
  /** Scenarios to run: A (single node), B (bootstrap), C (live lag). */
  only: string[];
};

export function resolveParams(profile: "full" | "smoke", env: NodeJS.ProcessEnv = process.env): BenchParams {
  const out: Record<string, unknown> = { profile };
  for (const [name, knob] of Object.entries(KNOBS) as [keyof typeof KNOBS, Knob][]) {
    const text = env[knob.env];
    let v = knob[profile];
    if (text !== undefined && text !== "") {
      v = knob.bytes === true ? parseBytes(text) : Number(text);
      if (!Number.isFinite(v) || v < 0) throw new Error(`${knob.env}: want a number >= 0, got "${text}"`);
    }
    out[name] = v;
  }
  const only = (env["BENCH_ONLY"] ?? "A,B,C").split(",").map((s) => s.trim().toUpperCase()).filter((s) => s !== "");
  for (const s of only) if (!["A", "B", "C"].includes(s)) throw new Error(`BENCH_ONLY: unknown scenario "${s}" (A, B, C)`);
  const p = { ...out, only } as BenchParams;
  if (p.runs < 1) throw new Error("BENCH_RUNS: want >= 1");
  if (p.aBulkMaxBytes < p.aBulkMinBytes || p.bBulkMaxBytes < p.bBulkMinBytes) throw new Error("bulk size range: max < min");
  if (p.bBulkMaxBytes >= 2 ** 32) throw new Error("BENCH_B_BULK_MAX_BYTES: must be < 4 GiB");
  return p;
}

export function paramsHelp(): string {
  return Object.entries(KNOBS)
    .map(([name, k]) => `  ${k.env.padEnd(28)} ${String(k.full).padStart(11)} ${String(k.smoke).padStart(9)}  ${k.help} (${name})`)
    .join("\n");
}
