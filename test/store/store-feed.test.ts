import { afterEach, describe, expect, it } from "vitest";
import {
  DigestMismatchError,
  FeedTrimmedError,
  InvalidArgumentError,
  SizeMismatchError,
  StoreClosedError,
} from "../../src/store/errors.js";
import type { Manifest } from "../../src/store/types.js";
import { bytes, collect, once, open, sha256, tempDir, untouchable } from "./helpers.js";

function kvManifest(key: string, body: Uint8Array, version: bigint, origin: string): Manifest {
  return { namespace: "ns", kind: "kv", key, size: body.length, digest: sha256(body), version, origin };
}

function casManifest(body: Uint8Array, version: bigint, origin = "node-b"): Manifest {
  const digest = sha256(body);
  return { namespace: "ns", kind: "cas", key: digest, size: body.length, digest, version, origin };
}

describe("change feed, listing and replicated apply", () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function fresh(options: Parameters<typeof open>[1] = {}) {
    const dir = await tempDir();
    cleanups.push(dir.cleanup);
    const opened = await open(dir.path, options);
    cleanups.push(() => opened.store.close());
    return opened;
  }

  it("group-commits concurrent puts: each ack is readable at once, with a unique, gap-free feed seq", async () => {
    const { store } = await fresh();
    const n = 300;
    const waited: Array<Promise<void>> = [];
    let woken = 0;
    const waiter = (after: number): void => {
      waited.push(store.waitForFeed(after, new AbortController().signal).then(() => void woken++));
    };
    waiter(0);
    const acks = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        store.put({ namespace: "ns", kind: "cas", size: 100 + i }, once(bytes(`gc${i}`, 100 + i))).then((r) => {
          // Synchronously after the ack: the index row and the feed head are visible.
          expect(store.stat(r.manifest)).toEqual(r.manifest);
          const head = store.feedHead();
          expect(store.readFeed(head - 1, 1)).toHaveLength(1);
          return r;
        }),
      ),
    );
    await Promise.all(waited);
    expect(woken).toBe(1);
    expect(acks.every((a) => !a.alreadyPresent)).toBe(true);
    expect(store.feedHead()).toBe(n);
    const feed = store.readFeed(0, n + 10);
    expect(feed.map((e) => e.seq)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect(new Set(feed.map((e) => e.manifest.key))).toEqual(new Set(acks.map((a) => a.manifest.key)));
  });

  it("lists every artifact exactly once, newest version first, across cursor pages", async () => {
    const { store } = await fresh();
    for (let i = 0; i < 40; i++) {
      if (i % 3 === 0) await store.put({ namespace: "ns", kind: "kv", key: `k${i % 9}` }, once(bytes(`kv${i}`, 20)));
      else await store.put({ namespace: i % 2 ? "a" : "b", kind: "cas" }, once(bytes(`cas${i}`, 50)));
    }
    const count = store.usage().artifactCount;
    const seen: Manifest[] = [];
    let cursor: Uint8Array | undefined;
    let pages = 0;
    for (;;) {
      const page = store.listManifests(cursor, 7, 1_000_000);
      pages++;
      seen.push(...page.manifests);
      cursor = page.nextCursor;
      if (page.done) break;
      expect(page.manifests).toHaveLength(7);
    }
    expect(seen).toHaveLength(count);
    expect(new Set(seen.map((m) => `${m.namespace}/${m.kind}/${m.key}`)).size).toBe(count);
    for (let i = 1; i < seen.length; i++) expect((seen[i - 1] as Manifest).version > (seen[i] as Manifest).version).toBe(true);
    expect(pages).toBe(Math.ceil(count / 7));
    for (const m of seen) expect(store.stat(m)).toEqual(m);
    // A finished cursor stays finished; maxBytes bounds a page but never below one item.
    expect(store.listManifests(cursor, 10, 1_000_000)).toMatchObject({ manifests: [], done: true });
    const tiny = store.listManifests(undefined, 100, 1);
    expect(tiny.manifests).toHaveLength(1);
    expect(tiny.done).toBe(false);
    expect(() => store.listManifests(new Uint8Array([1, 2]), 10, 10)).toThrow(InvalidArgumentError);
  });

  it("applies KV writes last-writer-wins on (version, origin)", async () => {
    const { store } = await fresh();
    const local = await store.put({ namespace: "ns", kind: "kv", key: "ac" }, once(Buffer.from("local")));
    const v = local.manifest.version;

    const older = kvManifest("ac", Buffer.from("older"), v - 1n, "node-z");
    expect(store.has(older)).toBe(true);
    const untouched = untouchable();
    await expect(store.apply(older, untouched)).resolves.toBe("skipped");
    expect(untouched.touched).toBe(false);

    const sameVersionLowerOrigin = kvManifest("ac", Buffer.from("tie-low"), v, "node-0");
    await expect(store.apply(sameVersionLowerOrigin, untouchable())).resolves.toBe("skipped");

    const sameVersionHigherOrigin = kvManifest("ac", Buffer.from("tie-high"), v, "node-z");
    expect(store.has(sameVersionHigherOrigin)).toBe(false);
    await expect(store.apply(sameVersionHigherOrigin, once(Buffer.from("tie-high")))).resolves.toBe("applied");
    expect(store.stat(sameVersionHigherOrigin)).toEqual(sameVersionHigherOrigin);

    const newer = kvManifest("ac", Buffer.from("newer"), v + 10n, "node-b");
    await expect(store.apply(newer, once(Buffer.from("newer")))).resolves.toBe("applied");
    expect(store.stat(newer)).toEqual(newer);
    expect((await collect(store.read(newer).chunks)).toString()).toBe("newer");

    // Feed: the local put and the two applied changes; skips add nothing.
    expect(store.readFeed(0, 10).map((e) => e.manifest)).toEqual([local.manifest, sameVersionHigherOrigin, newer]);
    // A later local put still wins: the clock observed the replicated version.
    const after = await store.put({ namespace: "ns", kind: "kv", key: "ac" }, once(Buffer.from("after")));
    expect(after.manifest.version).toBeGreaterThan(newer.version);
  });

  it("apply is idempotent and keeps the manifest's version and origin", async () => {
    const { store } = await fresh();
    const body = bytes("replicated", 4000);
    const m = casManifest(body, 12345n << 16n);
    expect(store.has(m)).toBe(false);
    await expect(store.apply(m, once(body))).resolves.toBe("applied");
    expect(store.stat(m)).toEqual(m);
    expect(store.has(m)).toBe(true);
    const head = store.feedHead();
    const b = untouchable();
    await expect(store.apply(m, b)).resolves.toBe("skipped");
    await expect(store.apply({ ...m, version: 1n, origin: "node-c" }, untouchable())).resolves.toBe("skipped");
    expect(b.touched).toBe(false);
    expect(store.feedHead()).toBe(head);
    expect(store.readFeed(0, 10)).toEqual([{ seq: 1, manifest: m }]);

    // Concurrent applies of the same change write it once.
    const body2 = bytes("concurrent", 9000);
    const m2 = casManifest(body2, 99n << 16n);
    const outcomes = await Promise.all(Array.from({ length: 8 }, () => store.apply(m2, once(body2))));
    expect(outcomes.filter((o) => o === "applied")).toHaveLength(1);
    expect(store.feedHead()).toBe(head + 1);
  });

  it("apply verifies digest and size and stores nothing when they do not match", async () => {
    const { store } = await fresh();
    const body = bytes("payload", 1000);
    const before = store.usage();
    await expect(store.apply(kvManifest("k", body, 5n, "node-b"), once(bytes("tampered", 1000)))).rejects.toBeInstanceOf(DigestMismatchError);
    await expect(store.apply(kvManifest("k", body, 5n, "node-b"), once(body.subarray(0, 999)))).rejects.toBeInstanceOf(SizeMismatchError);
    await expect(store.apply({ ...casManifest(body, 5n), key: "f".repeat(64) }, once(body))).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(store.usage()).toMatchObject({ liveBytes: before.liveBytes, diskBytes: before.diskBytes, artifactCount: 0 });
    expect(store.feedHead()).toBe(0);
  });

  it("trims the feed to feedMaxEntries, raising and persisting the floor", async () => {
    const dir = await tempDir();
    cleanups.push(dir.cleanup);
    const first = await open(dir.path, { feedMaxEntries: 5 });
    for (let i = 0; i < 12; i++) await first.store.put({ namespace: "ns", kind: "kv", key: `k${i}` }, once(bytes(`v${i}`, 10)));
    expect(first.store.feedHead()).toBe(12);
    expect(first.store.feedFloor()).toBe(7);
    expect(() => first.store.readFeed(6, 10)).toThrow(FeedTrimmedError);
    expect(first.store.readFeed(7, 10).map((e) => e.seq)).toEqual([8, 9, 10, 11, 12]);
    expect(first.store.readFeed(9, 2).map((e) => e.seq)).toEqual([10, 11]);
    expect(first.store.readFeed(12, 10)).toEqual([]);
    expect(first.events.some((e) => e.type === "feed-trimmed")).toBe(true);
    expect(first.store.usage().artifactCount).toBe(12); // trimming the feed never drops artifacts
    await first.store.close();

    const second = await open(dir.path, { feedMaxEntries: 5 });
    expect(second.store.feedFloor()).toBe(7);
    expect(second.store.feedHead()).toBe(12);
    await second.store.close();
  });

  it("waitForFeed resolves when the head passes the cursor, and rejects on abort and close", async () => {
    const { store } = await fresh();
    const controller = new AbortController();
    const waiting = store.waitForFeed(0, controller.signal);
    await store.put({ namespace: "ns", kind: "kv", key: "k" }, once(Buffer.from("x")));
    await expect(waiting).resolves.toBeUndefined();
    await expect(store.waitForFeed(0, controller.signal)).resolves.toBeUndefined();

    const aborted = new AbortController();
    const pending = store.waitForFeed(1, aborted.signal);
    aborted.abort(new Error("peer left"));
    await expect(pending).rejects.toThrow("peer left");

    const atClose = expect(store.waitForFeed(1, new AbortController().signal)).rejects.toBeInstanceOf(StoreClosedError);
    await store.close();
    await atClose;
  });
});
