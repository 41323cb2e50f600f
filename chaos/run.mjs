#!/usr/bin/env node
// Runner of the reliability suite: `node chaos/run.mjs [--smoke]` (make chaos-smoke / make chaos).
// Picks the seed (or takes CHAOS_SEED), prints it, runs every chaos/**/*.chaos.ts through
// vitest with CHAOS_MODE / CHAOS_SEED / CHAOS_RESULTS_DIR set, then writes summary.json beside
// the per-scenario results and prints how to replay. CHAOS_ONLY=<scenario file stem> runs one.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const mode = process.argv.includes("--smoke") ? "smoke" : "full";
const seed = process.env.CHAOS_SEED && process.env.CHAOS_SEED !== "" ? process.env.CHAOS_SEED : randomBytes(4).toString("hex");
const stamp = new Date().toISOString().replace(/[:.]/g, "-");
const dir = join("chaos", "results", `${stamp}-${mode}`);
mkdirSync(dir, { recursive: true });
const only = process.env.CHAOS_ONLY ?? "";
const replay = `CHAOS_SEED=${seed} make ${mode === "full" ? "chaos" : "chaos-smoke"}`;

console.log(`chaos: mode=${mode} seed=${seed} results=${dir}${only ? ` only=${only}` : ""}`);
console.log(`chaos: replay with: ${replay}`);
const started = Date.now();
const args = ["node_modules/vitest/vitest.mjs", "run", "-c", "vitest.chaos.config.ts"];
if (only) args.push(only);
const r = spawnSync(process.execPath, args, {
  stdio: "inherit",
  env: { ...process.env, CHAOS_MODE: mode, CHAOS_SEED: seed, CHAOS_RESULTS_DIR: join(process.cwd(), dir) },
});
const scenarios = existsSync(dir)
  ? readdirSync(dir)
      .filter((f) => f.endsWith(".json") && f !== "summary.json")
      .map((f) => JSON.parse(readFileSync(join(dir, f), "utf8")))
  : [];
const passed = r.status === 0 && scenarios.every((s) => s.passed);
const summary = { mode, seed, replay, startedAt: new Date(started).toISOString(), durationMs: Date.now() - started, passed, vitestExit: r.status, scenarios: scenarios.map((s) => ({ scenario: s.scenario, passed: s.passed, durationMs: s.durationMs, violations: s.violations.length, figures: s.figures })) };
writeFileSync(join(dir, "summary.json"), `${JSON.stringify(summary, null, 2)}\n`);
console.log(`\nchaos: ${passed ? "PASSED" : "FAILED"} in ${Math.round((Date.now() - started) / 1000)} s; seed=${seed}; results in ${dir}`);
for (const s of scenarios) console.log(`  ${s.passed ? "ok  " : "FAIL"} ${s.scenario} (${Math.round(s.durationMs / 1000)} s)${s.violations.length ? `: ${s.violations.slice(0, 3).join("; ")}` : ""}`);
console.log(`chaos: replay with: ${replay}`);
process.exit(passed ? 0 : 1);
