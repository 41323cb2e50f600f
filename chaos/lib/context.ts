/**
 * What every scenario gets: its seed (derived from the run's CHAOS_SEED and the scenario name,
 * so one scenario replays alone), the mode (smoke or full), a seeded PRNG, and a results
 * writer (chaos/results/<run>/<scenario>.json). chaos/run.mjs sets the environment.
 */
import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export type ChaosMode = "smoke" | "full";

/** xorshift128+-like PRNG on 32-bit words (deterministic for a seed). */
export class Rng {
  private s: Uint32Array;
  constructor(seed: string) {
    const h = createHash("sha256").update(seed).digest();
    this.s = new Uint32Array([h.readUInt32LE(0) | 1, h.readUInt32LE(4), h.readUInt32LE(8), h.readUInt32LE(12)]);
  }
  /** Uniform in [0, 1). */
  next(): number {
    const s = this.s;
    let t = s[3]!;
    const x = s[0]!;
    s[3] = s[2]!;
    s[2] = s[1]!;
    s[1] = x;
    t ^= t << 11;
    t ^= t >>> 8;
    s[0] = (t ^ x ^ (x >>> 19)) >>> 0;
    return s[0]! / 4294967296;
  }
  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)]!;
  }
  /** A 32-bit seed for data.ts generators. */
  u32(): number {
    return Math.floor(this.next() * 4294967296) >>> 0;
  }
}

export interface ScenarioResult {
  /** Passed iff every invariant held; the figures say what was measured. */
  readonly passed: boolean;
  readonly figures: Record<string, unknown>;
  readonly violations: readonly string[];
  readonly notes?: readonly string[];
}

export interface ChaosContext {
  readonly name: string;
  readonly mode: ChaosMode;
  readonly runSeed: string;
  readonly seed: string;
  readonly rng: Rng;
  /** smoke or full value. */
  size<T>(smoke: T, full: T): T;
  /** Writes chaos/results/<run>/<name>.json. */
  record(result: ScenarioResult): void;
  /** Prints a progress line (stdout, prefixed with the scenario name). */
  log(msg: string): void;
  /** Writes a diagnostic file beside the result: chaos/results/<run>/<name>.<file>. */
  attach(file: string, text: string): void;
}

/**
 * `part` names a second test of one scenario file: it gets its own seed and result file
 * (`<name>.<part>.json`); the replay still runs the whole file.
 */
export function chaosContext(name: string, part?: string): ChaosContext {
  const mode: ChaosMode = process.env["CHAOS_MODE"] === "full" ? "full" : "smoke";
  const runSeed = process.env["CHAOS_SEED"] ?? "0";
  const seed = part ? `${runSeed}/${name}/${part}` : `${runSeed}/${name}`;
  const label = part ? `${name}.${part}` : name;
  const dir = process.env["CHAOS_RESULTS_DIR"];
  const startedAt = new Date();
  return {
    name,
    mode,
    runSeed,
    seed,
    rng: new Rng(seed),
    size: (smoke, full) => (mode === "full" ? full : smoke),
    record(result) {
      if (!dir) return;
      mkdirSync(dir, { recursive: true });
      const out = {
        scenario: label,
        mode,
        runSeed,
        seed,
        replay: `CHAOS_SEED=${runSeed} CHAOS_ONLY=${name} make ${mode === "full" ? "chaos" : "chaos-smoke"}`,
        startedAt: startedAt.toISOString(),
        durationMs: Date.now() - startedAt.getTime(),
        ...result,
      };
      writeFileSync(join(dir, `${label}.json`), `${JSON.stringify(out, null, 2)}\n`);
    },
    log(msg) {
      process.stdout.write(`[${label}] ${msg}\n`);
    },
    attach(file, text) {
      if (!dir) return;
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, `${label}.${file}`), text);
    },
  };
}

/** Collects invariant violations; `check` records one when `ok` is false. */
export class Violations {
  readonly list: string[] = [];
  check(ok: boolean, what: string): void {
    if (!ok && this.list.length < 200) this.list.push(what);
  }
}
