import { describe, expect, it } from "vitest";
import { HybridClock } from "../../src/store/hlc.js";

describe("HybridClock", () => {
  it("stamps (ms << 16) | counter, strictly increasing within a millisecond", () => {
    let now = 1000;
    const clock = new HybridClock(0n, () => now);
    expect(clock.now()).toBe(1000n << 16n);
    expect(clock.now()).toBe((1000n << 16n) + 1n);
    now = 1001;
    expect(clock.now()).toBe(1001n << 16n);
  });

  it("never goes back when the wall clock does, or after observing a newer version", () => {
    let now = 5000;
    const clock = new HybridClock(0n, () => now);
    const a = clock.now();
    now = 10;
    const b = clock.now();
    expect(b).toBeGreaterThan(a);
    clock.observe(9000n << 16n);
    expect(clock.now()).toBe((9000n << 16n) + 1n);
  });

  it("continues from a persisted latest value across restarts", () => {
    const persisted = (7000n << 16n) + 5n;
    const clock = new HybridClock(persisted, () => 10);
    expect(clock.now()).toBe(persisted + 1n);
  });
});
