import { describe, expect, it } from "vitest";
import { readAhead } from "../../src/util/read-ahead.js";

async function* source(n: number, failAt?: number): AsyncGenerator<number> {
  for (let i = 0; i < n; i++) {
    if (i === failAt) throw new Error(`boom at ${i}`);
    await Promise.resolve();
    yield i;
  }
}

describe("readAhead", () => {
  it("delivers every item once, in order, in batches of what arrived while the consumer was busy", async () => {
    const seen: number[] = [];
    let batches = 0;
    for await (const batch of readAhead(source(100), 16)) {
      batches++;
      expect(batch.length).toBeGreaterThan(0);
      expect(batch.length).toBeLessThanOrEqual(16);
      seen.push(...batch);
      // A busy consumer: let the pump run for a while.
      for (let i = 0; i < 50; i++) await Promise.resolve();
    }
    expect(seen).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(batches).toBeLessThan(100);
  });

  it("delivers what arrived before a failure, then the failure", async () => {
    const seen: number[] = [];
    await expect(
      (async () => {
        for await (const batch of readAhead(source(10, 7), 4)) seen.push(...batch);
      })(),
    ).rejects.toThrow("boom at 7");
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });

  it("stops the source when the consumer stops early", async () => {
    let finished = false;
    async function* src(): AsyncGenerator<number> {
      try {
        for (let i = 0; ; i++) {
          await Promise.resolve();
          yield i;
        }
      } finally {
        finished = true;
      }
    }
    for await (const batch of readAhead(src(), 8)) if (batch.includes(20)) break;
    // The pump is parked on a full buffer or in next(); either way return() reaches the source.
    for (let i = 0; i < 100 && !finished; i++) await Promise.resolve();
    expect(finished).toBe(true);
  });
});
