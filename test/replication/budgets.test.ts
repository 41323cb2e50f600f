/** Pure logic of the replication engine: staging budget, bandwidth limiter, retry policy, task planning. */
import { describe, expect, it } from "vitest";
import { BandwidthLimiter, type Clock } from "../../src/replication/bandwidth-limiter.js";
import { planTasks, LARGE_BODY_BYTES, BATCH_MAX_BYTES } from "../../src/replication/fetcher.js";
import { backoffDelayMs } from "../../src/replication/retry-policy.js";
import { SingleFlight } from "../../src/replication/single-flight.js";
import { StagingBudget } from "../../src/replication/staging-budget.js";
import type { Manifest } from "../../src/store/types.js";

describe("StagingBudget", () => {
  it("waits instead of failing, FIFO, and never exceeds the budget", async () => {
    const b = new StagingBudget(100);
    const r1 = await b.reserve(60);
    const order: string[] = [];
    const p2 = b.reserve(50).then((r) => (order.push("second"), r));
    const p3 = b.reserve(10).then((r) => (order.push("third"), r));
    expect(b.stats()).toMatchObject({ reservedBytes: 60, waiting: 2 });
    r1();
    const r2 = await p2;
    const r3 = await p3;
    expect(order).toEqual(["second", "third"]);
    expect(b.stats().peakReservedBytes).toBeLessThanOrEqual(100);
    r2();
    r3();
    r3(); // idempotent
    expect(b.stats().reservedBytes).toBe(0);
  });

  it("admits a body larger than the whole budget alone, so it cannot deadlock", async () => {
    const b = new StagingBudget(10);
    const small = await b.reserve(5);
    const big = b.reserve(1000);
    expect(b.stats().waiting).toBe(1);
    small();
    (await big)();
    expect(b.stats().peakReservedBytes).toBe(1000);
  });

  it("a waiting reservation is withdrawn when its signal aborts", async () => {
    const b = new StagingBudget(10);
    const r = await b.reserve(10);
    const ac = new AbortController();
    const p = b.reserve(5, ac.signal);
    ac.abort(new Error("pass abandoned"));
    await expect(p).rejects.toThrow("pass abandoned");
    expect(b.stats().waiting).toBe(0);
    r();
  });
});

describe("BandwidthLimiter", () => {
  function fakeClock(): Clock & { slept: number[] } {
    let now = 0;
    const slept: number[] = [];
    return {
      slept,
      now: () => now,
      sleep: async (ms) => {
        slept.push(ms);
        now += ms;
      },
    };
  }

  it("passes a second's worth at once, then paces to the limit", async () => {
    const clock = fakeClock();
    const l = new BandwidthLimiter(1000, clock);
    await l.take(1000);
    expect(clock.slept).toEqual([]);
    await l.take(500);
    await l.take(500);
    expect(clock.slept.reduce((a, b) => a + b, 0)).toBeCloseTo(1000, 5);
    expect(l.throttledTimeMs()).toBeCloseTo(1000, 5);
  });

  it("is free when off", async () => {
    const clock = fakeClock();
    const l = new BandwidthLimiter(0, clock);
    await l.take(1e12);
    expect(clock.slept).toEqual([]);
  });
});

describe("retry policy", () => {
  it("backs off exponentially up to the cap, with jitter below the base", () => {
    const p = { initialMs: 100, maxMs: 1000, multiplier: 2, jitter: 0.5 };
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffDelayMs(p, n, () => 0))).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(backoffDelayMs(p, 3, () => 1)).toBe(200);
  });
});

describe("SingleFlight", () => {
  it("gives later claimants the first one's promise", async () => {
    const sf = new SingleFlight<number>();
    let runs = 0;
    const a = sf.claim("k", async () => ++runs);
    const b = sf.claim("k", async () => ++runs);
    expect([a.leader, b.leader]).toEqual([true, false]);
    expect(await b.promise).toBe(1);
    expect(sf.has("k")).toBe(false);
  });
});

describe("planTasks", () => {
  const m = (size: number, i: number): { manifest: Manifest } => ({
    manifest: { namespace: "n", kind: "cas", key: String(i).padStart(64, "0"), size, digest: "", version: 0n, origin: "x" },
  });
  it("gives large bodies a stream each and batches small ones within the byte bound", () => {
    const k = 1000 * 1024; // just under LARGE_BODY_BYTES: batched
    const items = [m(LARGE_BODY_BYTES, 0), m(10, 1), m(k, 2), m(k, 3), m(k, 4), m(k, 5), m(k, 6), m(LARGE_BODY_BYTES * 3, 7), m(10, 8)];
    const tasks = planTasks(items).map((t) => t.map((x) => x.manifest.size));
    expect(tasks).toEqual([[LARGE_BODY_BYTES], [10, k, k, k, k], [LARGE_BODY_BYTES * 3], [k, 10]]);
    for (const t of tasks) if (t.length > 1) expect(t.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(BATCH_MAX_BYTES);
  });
});
