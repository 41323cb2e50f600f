import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { NoSpaceError, NotFoundError } from "../../src/store/errors.js";
import type { Manifest } from "../../src/store/types.js";
import { bytes, collect, once, open, tempDir } from "./helpers.js";

/** Five-kilobyte bodies with a 4 KiB segment limit: every record seals its own segment. */
const OPTIONS = { lanes: 1, segmentMaxBytes: 4096, capacityBytes: 4 * 5300 };

async function diskUsage(dir: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(join(dir, "segments"))) total += (await stat(join(dir, "segments", name))).size;
  return total;
}

describe("capacity and eviction", () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function fill(n: number) {
    const dir = await tempDir();
    cleanups.push(dir.cleanup);
    const opened = await open(dir.path, OPTIONS);
    cleanups.push(() => opened.store.close());
    const ms: Manifest[] = [];
    for (let i = 0; i < n; i++) ms.push((await opened.store.put({ namespace: "ns", kind: "cas" }, once(bytes(`r${i}`, 5000)))).manifest);
    return { ...opened, ms, dir: dir.path };
  }

  it("evicts the least recently used sealed segment and keeps recently read ones", async () => {
    const { store, events, ms, dir } = await fill(4);
    expect(store.usage()).toMatchObject({ artifactCount: 4, evictedCount: 0 });
    store.read(ms[0] as Manifest); // touch the oldest: the second one is now least recently used

    const fifth = await store.put({ namespace: "ns", kind: "cas" }, once(bytes("r4", 5000)));
    expect(events.filter((e) => e.type === "evicted")).toEqual([
      expect.objectContaining({ type: "evicted", segment: 2, artifacts: 1 }),
    ]);
    expect(store.stat(ms[1] as Manifest)).toBeUndefined();
    expect(() => store.read(ms[1] as Manifest)).toThrow(NotFoundError);
    for (const m of [ms[0], ms[2], ms[3], fifth.manifest] as Manifest[]) expect(store.stat(m)).toEqual(m);
    const usage = store.usage();
    expect(usage).toMatchObject({ artifactCount: 4, evictedCount: 1, capacityBytes: OPTIONS.capacityBytes });
    expect(usage.diskBytes).toBeLessThanOrEqual(OPTIONS.capacityBytes);
    expect(usage.diskBytes).toBe(await diskUsage(dir));
    // Eviction is local: the feed still lists the evicted artifact; readers get NotFound.
    expect(store.readFeed(0, 10).map((e) => e.manifest.key)).toContain(ms[1]?.key);
  });

  it("keeps serving a read that started before its segment was evicted", async () => {
    const { store, events, ms } = await fill(4);
    const it = store.read(ms[0] as Manifest, { chunkBytes: 1000 }).chunks[Symbol.asyncIterator]();
    const first = await it.next();
    for (const m of ms.slice(1)) store.read(m); // make segment 1 the least recently used
    await store.put({ namespace: "ns", kind: "cas" }, once(bytes("r4", 5000)));
    expect(events).toContainEqual(expect.objectContaining({ type: "evicted", segment: 1 }));
    const rest: Uint8Array[] = [];
    for (let r = await it.next(); !r.done; r = await it.next()) rest.push(r.value);
    expect(Buffer.concat([first.value as Uint8Array, ...rest]).equals(bytes("r0", 5000))).toBe(true);
  });

  it("refuses a write that cannot fit without evicting anything for it", async () => {
    const { store } = await fill(2);
    const before = store.usage();
    await expect(store.put({ namespace: "ns", kind: "kv", key: "huge", size: 30_000 }, once(bytes("huge", 30_000)))).rejects.toBeInstanceOf(NoSpaceError);
    await expect(store.put({ namespace: "ns", kind: "kv", key: "huge" }, once(bytes("huge", 30_000)))).rejects.toBeInstanceOf(NoSpaceError);
    expect(store.usage()).toMatchObject({ evictedCount: 0, diskBytes: before.diskBytes, artifactCount: 2 });
  });

  it("keeps evictions across a restart and accounts disk bytes from the files", async () => {
    const { store, ms, dir } = await fill(6);
    const usage = store.usage();
    expect(usage.evictedCount).toBe(2);
    await store.close();
    const reopened = await open(dir, OPTIONS);
    cleanups.push(() => reopened.store.close());
    expect(reopened.store.usage()).toMatchObject({ artifactCount: 4, evictedCount: 2, diskBytes: usage.diskBytes });
    expect(reopened.store.stat(ms[0] as Manifest)).toBeUndefined();
    for (const m of ms.slice(2)) expect((await collect(reopened.store.read(m).chunks)).length).toBe(5000);
  });

  it("evicts a segment of more artifacts than one eviction transaction takes (2,000), all of them", async () => {
    const dir = await tempDir();
    cleanups.push(dir.cleanup);
    // 4,500 small records go into the first segment (2 MiB), then larger ones push it out.
    const options = { lanes: 1, segmentMaxBytes: 2 << 20, capacityBytes: 5 << 20 };
    const { store, events } = await open(dir.path, options);
    cleanups.push(() => store.close());
    const small: Manifest[] = [];
    for (let i = 0; i < 4500; i += 250) {
      const batch = Array.from({ length: 250 }, (_, j) => store.put({ namespace: "ns", kind: "cas" }, once(bytes(`s${i + j}`, 8))));
      for (const r of await Promise.all(batch)) small.push(r.manifest);
    }
    expect(small.filter((m) => store.stat(m) !== undefined)).toHaveLength(4500);
    expect(events.filter((e) => e.type === "evicted")).toEqual([]);
    for (let i = 0; i < 40 && !events.some((e) => e.type === "evicted"); i++) await store.put({ namespace: "ns", kind: "cas" }, once(bytes(`big${i}`, 500_000)));
    const evicted = events.filter((e) => e.type === "evicted");
    expect(evicted[0]).toMatchObject({ type: "evicted", segment: 1 });
    const inFirst = (evicted[0] as { artifacts: number }).artifacts;
    // Segment 1 held every small record (and the first large ones that still fitted).
    expect(inFirst).toBeGreaterThan(4500);
    expect(small.filter((m) => store.stat(m) !== undefined)).toEqual([]);
    expect(store.usage().evictedCount).toBe(evicted.reduce((n, e) => n + (e as { artifacts: number }).artifacts, 0));
  });
});

describe("eviction vs. commits in flight", () => {
  it("never evicts a segment while a record in it still awaits its index commit", async () => {
    const { Failpoints } = await import("../../src/util/failpoints.js");
    const dir = await tempDir();
    try {
      const failpoints = new Failpoints();
      let releaseA!: () => void;
      const gateA = new Promise<void>((resolve) => (releaseA = resolve));
      let aPaused!: () => void;
      const aAtGate = new Promise<void>((resolve) => (aPaused = resolve));
      failpoints.set("store.put.before-index", (ctx) => {
        if (ctx["segment"] === 1 && ctx["offset"] === 0) {
          aPaused();
          return gateA;
        }
      });
      const { store, events } = await open(dir.path, { lanes: 1, segmentMaxBytes: 4096, capacityBytes: 8000, failpoints });
      try {
        // A is written and synced into segment 1, then held before its index commit.
        const a = store.put({ namespace: "ns", kind: "kv", key: "a" }, once(bytes("a", 3000)));
        await aAtGate;
        // B fills segment 1 and seals it in its own commit.
        const b = await store.put({ namespace: "ns", kind: "kv", key: "b" }, once(bytes("b", 3000)));
        // C needs room; the only sealed segment still has A's commit in flight.
        await expect(store.put({ namespace: "ns", kind: "kv", key: "c" }, once(bytes("c", 3000)))).rejects.toBeInstanceOf(NoSpaceError);
        expect(events.filter((e) => e.type === "evicted")).toEqual([]);
        releaseA();
        const aResult = await a;
        expect((await collect(store.read(aResult.manifest).chunks)).equals(bytes("a", 3000))).toBe(true);
        // Now segment 1 can go, with both of its artifacts.
        await store.put({ namespace: "ns", kind: "kv", key: "c" }, once(bytes("c", 3000)));
        expect(events.filter((e) => e.type === "evicted")).toEqual([expect.objectContaining({ segment: 1, artifacts: 2 })]);
        expect(store.stat(aResult.manifest)).toBeUndefined();
        expect(store.stat(b.manifest)).toBeUndefined();
      } finally {
        await store.close();
      }
      const reopened = await open(dir.path, { lanes: 1, segmentMaxBytes: 4096, capacityBytes: 8000 });
      expect(reopened.events.filter((e) => e.type === "corrupt-record")).toEqual([]);
      expect(reopened.store.usage().artifactCount).toBe(1);
      await reopened.store.close();
    } finally {
      await dir.cleanup();
    }
  });
});
