// The reliability suite (`make chaos`, `make chaos-smoke`): run through chaos/run.mjs, which
// picks and prints the seed and the results folder. One scenario file at a time: several of
// them measure timings and kill processes, and the CI machine has 2 cores.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["chaos/**/*.chaos.ts"],
    testTimeout: 3_600_000,
    hookTimeout: 120_000,
    pool: "forks",
    fileParallelism: false,
    globalSetup: ["test/global-setup.ts"],
    reporters: ["default"],
  },
});
