import { createHash } from "node:crypto";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  AbortedError,
  DigestMismatchError,
  InvalidArgumentError,
  InvalidRangeError,
  NotFoundError,
  SizeMismatchError,
  StoreClosedError,
} from "../../src/store/errors.js";
import { bytes, collect, once, open, pieces, sha256, streamBody, tempDir, untouchable } from "./helpers.js";

const MiB = 1024 * 1024;

/** A body the test feeds by hand: it yields `first`, then waits until released or failed. */
function stalledBody(first: Uint8Array) {
  let release!: () => void;
  let fail!: (error: Error) => void;
  const gate = new Promise<void>((resolve, reject) => {
    release = resolve;
    fail = reject;
  });
  let started!: () => void;
  const firstChunkTaken = new Promise<void>((resolve) => (started = resolve));
  async function* body(): AsyncGenerator<Uint8Array> {
    yield first;
    started();
    await gate;
  }
  return { body: body(), release, fail, firstChunkTaken };
}

describe("store writes and reads", () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function fresh(options: Parameters<typeof open>[1] = {}) {
    const dir = await tempDir();
    cleanups.push(dir.cleanup);
    const opened = await open(dir.path, options);
    cleanups.push(() => opened.store.close());
    return { ...opened, dir: dir.path };
  }

  it("round-trips a 100 MiB body streamed in 1 MiB chunks", async () => {
    const { store } = await fresh();
    const total = 100 * MiB;
    const expected = createHash("sha256");
    for await (const c of streamBody("big", total, MiB)) expected.update(c);
    const digest = expected.digest("hex");

    const put = await store.put({ namespace: "big", kind: "cas", key: digest, size: total }, streamBody("big", total, MiB));
    expect(put.alreadyPresent).toBe(false);
    expect(put.manifest).toMatchObject({ size: total, digest, key: digest, origin: "node-a" });

    const read = store.read(put.manifest);
    expect(read.length).toBe(total);
    const actual = createHash("sha256");
    let got = 0;
    for await (const c of read.chunks) {
      expect(c.length).toBeLessThanOrEqual(MiB);
      actual.update(c);
      got += c.length;
    }
    expect(got).toBe(total);
    expect(actual.digest("hex")).toBe(digest);
  });

  it("serves ranges and chunk sizes; refuses bad ranges and absent artifacts", async () => {
    const { store } = await fresh();
    const body = bytes("range", 10_000);
    const { manifest } = await store.put({ namespace: "ns", kind: "cas" }, pieces(body, 777));
    const part = await collect(store.read(manifest, { offset: 1234, length: 5000, chunkBytes: 1000 }).chunks);
    expect(part.equals(body.subarray(1234, 6234))).toBe(true);
    expect((await collect(store.read(manifest, { offset: 9000 }).chunks)).equals(body.subarray(9000))).toBe(true);
    expect((await collect(store.read(manifest, { offset: 10_000 }).chunks)).length).toBe(0);
    expect(() => store.read(manifest, { offset: 10_001 })).toThrow(InvalidRangeError);
    expect(() => store.read(manifest, { offset: 5000, length: 5001 })).toThrow(InvalidRangeError);
    expect(() => store.read({ namespace: "ns", kind: "cas", key: "0".repeat(64) })).toThrow(NotFoundError);
    expect(() => store.read({ namespace: "ns", kind: "kv", key: "../x" })).toThrow(InvalidArgumentError);
  });

  it("stores empty bodies", async () => {
    const { store } = await fresh();
    const { manifest } = await store.put({ namespace: "ns", kind: "kv", key: "empty" }, pieces(new Uint8Array(0), 1));
    expect(manifest.size).toBe(0);
    expect(manifest.digest).toBe(sha256(new Uint8Array(0)));
    expect((await collect(store.read(manifest).chunks)).length).toBe(0);
  });

  it("stores nothing on a digest mismatch: same usage, no feed entry", async () => {
    const { store } = await fresh();
    await store.put({ namespace: "ns", kind: "cas" }, once(bytes("x", 100)));
    const before = { usage: store.usage(), head: store.feedHead() };
    const wrongKey = sha256(bytes("other", 10));
    const err = await store.put({ namespace: "ns", kind: "cas", key: wrongKey }, once(bytes("y", 5000))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DigestMismatchError);
    expect(err).toMatchObject({ code: "DIGEST_MISMATCH", expected: wrongKey, actual: sha256(bytes("y", 5000)) });
    expect(store.usage()).toEqual(before.usage);
    expect(store.feedHead()).toBe(before.head);
    expect(store.stat({ namespace: "ns", kind: "cas", key: wrongKey })).toBeUndefined();
  });

  it("enforces the declared size, longer and shorter", async () => {
    const { store } = await fresh();
    const before = store.usage();
    const longer = await store.put({ namespace: "ns", kind: "kv", key: "k", size: 10 }, pieces(bytes("l", 11), 4)).catch((e: unknown) => e);
    expect(longer).toBeInstanceOf(SizeMismatchError);
    expect(longer).toMatchObject({ longer: true, expected: 10 });
    const shorter = await store.put({ namespace: "ns", kind: "kv", key: "k", size: 10 }, pieces(bytes("s", 9), 4)).catch((e: unknown) => e);
    expect(shorter).toBeInstanceOf(SizeMismatchError);
    expect(shorter).toMatchObject({ longer: false, expected: 10, actual: 9 });
    // The first put created the lane's (still empty) segment; no bytes were left in it.
    expect(store.usage()).toEqual({ ...before, segmentCount: 1 });
    expect(store.feedHead()).toBe(0);
    const exact = await store.put({ namespace: "ns", kind: "kv", key: "k", size: 10 }, pieces(bytes("e", 10), 4));
    expect(exact.manifest.size).toBe(10);
  });

  it("an aborted put leaves nothing behind and the lane keeps working", async () => {
    const { store } = await fresh({ lanes: 1 });
    await store.put({ namespace: "ns", kind: "kv", key: "before" }, once(bytes("b", 3000)));
    const before = { usage: store.usage(), head: store.feedHead() };

    const controller = new AbortController();
    const stalled = stalledBody(bytes("partial", 200_000));
    const put = store.put({ namespace: "ns", kind: "kv", key: "aborted" }, stalled.body, controller.signal);
    await stalled.firstChunkTaken;
    // A second put queues for the only lane and is aborted while waiting.
    const queuedController = new AbortController();
    const queued = store.put({ namespace: "ns", kind: "kv", key: "queued" }, untouchable(), queuedController.signal);
    queuedController.abort(new Error("client went away"));
    await expect(queued).rejects.toBeInstanceOf(AbortedError);

    controller.abort(new Error("deadline"));
    const err = await put.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AbortedError);
    expect((err as AbortedError).cause).toEqual(new Error("deadline"));
    expect(store.usage()).toEqual(before.usage);
    expect(store.feedHead()).toBe(before.head);
    expect(store.stat({ namespace: "ns", kind: "kv", key: "aborted" })).toBeUndefined();

    const after = await store.put({ namespace: "ns", kind: "kv", key: "after" }, once(bytes("a", 3000)));
    expect((await collect(store.read(after.manifest).chunks)).equals(bytes("a", 3000))).toBe(true);
    expect((await collect(store.read({ namespace: "ns", kind: "kv", key: "before" }).chunks)).equals(bytes("b", 3000))).toBe(true);
  });

  it("a body iterator that throws fails the put and stores nothing", async () => {
    const { store } = await fresh({ lanes: 1 });
    async function* broken(): AsyncGenerator<Uint8Array> {
      yield bytes("x", 2 * MiB);
      throw new Error("stream reset");
    }
    await expect(store.put({ namespace: "ns", kind: "cas" }, broken())).rejects.toThrow("stream reset");
    expect(store.usage()).toMatchObject({ diskBytes: 0, liveBytes: 0, artifactCount: 0 });
    const ok = await store.put({ namespace: "ns", kind: "cas" }, once(bytes("ok", 10)));
    expect(store.usage().diskBytes).toBe(store.usage().liveBytes);
    expect(ok.alreadyPresent).toBe(false);
  });

  it("writes a CAS key once for 16 concurrent puts of it", async () => {
    const { store } = await fresh({ lanes: 4 });
    const body = bytes("same", 300_000);
    const key = sha256(body);
    const before = store.usage();
    let opened = 0;
    const bodies = Array.from({ length: 16 }, () => ({
      [Symbol.asyncIterator]() {
        opened++;
        return pieces(body, 64 * 1024);
      },
    }));
    const results = await Promise.all(bodies.map((b) => store.put({ namespace: "ns", kind: "cas", key }, b)));
    expect(results.filter((r) => !r.alreadyPresent)).toHaveLength(1);
    expect(opened).toBe(1); // the waiters never started reading their bodies
    const after = store.usage();
    const recordBytes = after.liveBytes - before.liveBytes;
    expect(recordBytes).toBeGreaterThan(body.length);
    expect(recordBytes).toBeLessThan(body.length + 1024);
    expect(after.diskBytes - before.diskBytes).toBe(recordBytes);
    expect(store.feedHead()).toBe(1);
    for (const r of results) expect(r.manifest).toEqual(results[0]?.manifest);
  });

  it("a put of a stored CAS key writes nothing and does not read the body", async () => {
    const { store } = await fresh();
    const body = bytes("dup", 1000);
    const first = await store.put({ namespace: "ns", kind: "cas" }, once(body));
    const usage = store.usage();
    const b = untouchable();
    const again = await store.put({ namespace: "ns", kind: "cas", key: first.manifest.key }, b);
    expect(again).toEqual({ manifest: first.manifest, alreadyPresent: true });
    expect(b.touched).toBe(false);
    // Without a key the body must be read to learn it; the duplicate record is taken back.
    const third = await store.put({ namespace: "ns", kind: "cas" }, once(body));
    expect(third).toEqual({ manifest: first.manifest, alreadyPresent: true });
    expect(store.usage()).toEqual(usage);
    expect(store.feedHead()).toBe(1);
  });

  it("a failed single-flight leader lets a waiter write", async () => {
    const { store } = await fresh();
    const body = bytes("retry", 5000);
    const key = sha256(body);
    const leader = stalledBody(body.subarray(0, 100));
    const first = store.put({ namespace: "ns", kind: "cas", key }, leader.body);
    await leader.firstChunkTaken;
    const second = store.put({ namespace: "ns", kind: "cas", key }, once(body));
    leader.fail(new Error("leader's client disconnected"));
    await expect(first).rejects.toThrow("leader's client disconnected");
    await expect(second).resolves.toMatchObject({ alreadyPresent: false, manifest: { key } });
  });

  it("KV puts overwrite with increasing versions and origin = nodeId", async () => {
    const { store } = await fresh();
    const a = await store.put({ namespace: "ns", kind: "kv", key: "ac/1" }, once(Buffer.from("one")));
    const b = await store.put({ namespace: "ns", kind: "kv", key: "ac/1" }, once(Buffer.from("two")));
    expect(b.manifest.version).toBeGreaterThan(a.manifest.version);
    expect(b.manifest.origin).toBe("node-a");
    expect(store.stat(b.manifest)).toEqual(b.manifest);
    expect((await collect(store.read(b.manifest).chunks)).toString()).toBe("two");
    expect(store.usage().artifactCount).toBe(1);
    expect(store.feedHead()).toBe(2);
  });

  it("close is idempotent, waits for in-flight puts, and refuses later operations", async () => {
    const dir = await tempDir();
    cleanups.push(dir.cleanup);
    const { store } = await open(dir.path);
    const stalled = stalledBody(bytes("inflight", 1000));
    const put = store.put({ namespace: "ns", kind: "kv", key: "k" }, stalled.body);
    await stalled.firstChunkTaken;
    let closed = false;
    const closing = store.close().then(() => (closed = true));
    expect(store.close()).toBe(store.close());
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(closed).toBe(false);
    stalled.release();
    const result = await put;
    await closing;
    expect(result.manifest.size).toBe(1000);
    expect(() => store.stat(result.manifest)).toThrow(StoreClosedError);
    expect(() => store.feedHead()).toThrow(StoreClosedError);
    await expect(store.put({ namespace: "ns", kind: "kv", key: "k" }, untouchable())).rejects.toBeInstanceOf(StoreClosedError);
    const reopened = await open(dir.path);
    expect(reopened.store.stat(result.manifest)).toEqual(result.manifest);
    await reopened.store.close();
  });

  it("starts a new segment when a declared size would overflow the lane's segment", async () => {
    const { store, dir } = await fresh({ lanes: 1, segmentMaxBytes: 8192 });
    const a = await store.put({ namespace: "ns", kind: "kv", key: "a", size: 3000 }, once(bytes("a", 3000)));
    const b = await store.put({ namespace: "ns", kind: "kv", key: "b", size: 6000 }, once(bytes("b", 6000)));
    const files = (await readdir(join(dir, "segments"))).sort();
    expect(files).toEqual(["00000001.seg", "00000002.seg"]);
    expect((await stat(join(dir, "segments", "00000001.seg"))).size).toBeLessThan(4096); // only a's record
    expect((await collect(store.read(a.manifest).chunks)).equals(bytes("a", 3000))).toBe(true);
    expect((await collect(store.read(b.manifest).chunks)).equals(bytes("b", 6000))).toBe(true);
  });

  it("refuses a second open of the same data dir", async () => {
    const { dir } = await fresh();
    await expect(open(dir)).rejects.toMatchObject({ name: "DataDirLockedError" });
  });

  it("stores and returns meta for other layers", async () => {
    const { store } = await fresh();
    expect(store.getMeta("peer/x")).toBeUndefined();
    await store.putMeta("peer/x", { cursor: 42, incarnation: "abc" });
    expect(store.getMeta<{ cursor: number }>("peer/x")).toEqual({ cursor: 42, incarnation: "abc" });
  });

  it("rejects invalid headers before reading the body", async () => {
    const { store } = await fresh();
    const b = untouchable();
    await expect(store.put({ namespace: "Bad", kind: "cas" }, b)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(store.put({ namespace: "ns", kind: "kv" }, b)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(store.put({ namespace: "ns", kind: "kv", key: "k", size: -1 }, b)).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(b.touched).toBe(false);
  });
});
