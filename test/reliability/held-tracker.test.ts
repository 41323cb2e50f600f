/**
 * The chaos oracle's tracker of which writes each node holds (chaos/lib/held-tracker.ts):
 * pure logic over a table of what each fake node holds.
 */
import { describe, expect, it } from "vitest";
import { HeldTracker } from "../../chaos/lib/held-tracker.js";

function fakeMesh(nodes: number): { holds: Array<Set<string>>; asked: string[][]; find: (i: number, d: string[]) => Promise<string[]> } {
  const holds = Array.from({ length: nodes }, () => new Set<string>());
  const asked: string[][] = [];
  return {
    holds,
    asked,
    find: async (i, digests) => {
      asked.push(digests);
      return digests.filter((d) => !holds[i]!.has(d));
    },
  };
}

describe("HeldTracker", () => {
  it("asks a node only about writes not yet seen on it, and orders writes by acknowledgement", async () => {
    const mesh = fakeMesh(2);
    const t = new HeldTracker(2, mesh.find, 2);
    for (const d of ["a", "b", "c", "a"]) t.add(d);
    expect(t.order).toEqual(["a", "b", "c"]);
    mesh.holds[0]!.add("a").add("c");
    await t.poll(0);
    expect(t.firstUnheld(0)).toBe(1);
    expect(t.unheldDigests(0)).toEqual(["b"]);
    mesh.asked.length = 0;
    mesh.holds[0]!.add("b");
    await t.poll(0);
    expect(mesh.asked).toEqual([["b"]]);
    expect(t.firstUnheld(0)).toBe(3);
    expect(t.holdsAll(0, [0, 1, 2])).toBe(true);
    expect(t.holdsAll(1, [0])).toBe(false);
    expect(t.queried).toBe(4);
  });

  it("forgets everything about a wiped node, including an answer that was in flight", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const t = new HeldTracker(1, async () => {
      await gate;
      return [];
    });
    t.add("a");
    t.add("b");
    const inFlight = t.poll(0);
    t.reset(0);
    release();
    await inFlight;
    expect(t.firstUnheld(0)).toBe(0);
    expect(t.unheldDigests(0).sort()).toEqual(["a", "b"]);
  });

  it("keeps what it knew when a node does not answer", async () => {
    const t = new HeldTracker(1, () => Promise.reject(new Error("down")));
    t.add("a");
    await t.poll(0);
    expect(t.firstUnheld(0)).toBe(0);
  });

  it("resolves nextRound only after a whole round that began after the call", async () => {
    // Each ask answers from what the node held when the ask was made, and waits to be let go.
    const held = new Set<string>();
    const gates: Array<() => void> = [];
    const asked: Array<Promise<void>> = [];
    let onAsk!: () => void;
    const t = new HeldTracker(1, async (_i, digests) => {
      const answer = digests.filter((d) => !held.has(d));
      await new Promise<void>((r) => gates.push(r));
      return answer;
    });
    t.add("a");
    const stop = new AbortController();
    asked.push(new Promise<void>((r) => (onAsk = r)));
    const running = t.run(
      () => {
        onAsk();
        asked.push(new Promise<void>((r) => (onAsk = r)));
        return [0];
      },
      0,
      stop.signal,
    );
    await asked[0];
    // A round is asking (before "a" arrived); the caller waits from now on.
    const next = t.nextRound();
    held.add("a");
    gates.shift()!();
    await asked[1];
    expect(t.firstUnheld(0)).toBe(0);
    gates.shift()!();
    await next;
    expect(t.firstUnheld(0)).toBe(1);
    stop.abort();
    await running;
  });
});
