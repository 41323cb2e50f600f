/**
 * A failed fdatasync (EIO from a failing disk, injected at the "store.segment.datasync"
 * failpoint): the put waiting on it fails with an I/O error and is not indexed; the segment is
 * retired (the kernel may have dropped its dirty pages, so a later fdatasync's success would
 * prove nothing) and the next put goes to a new segment; what was acknowledged before keeps
 * reading back. After a restart the retired segment is scanned like any unsealed one: the failed
 * put's record may come back if its bytes reached the disk whole (an ambiguous failure, as in any
 * database: the client saw an error, not a refusal), but only byte for byte, never altered.
 */
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { StoreIoError } from "../../src/store/errors.js";
import { Failpoints } from "../../src/util/failpoints.js";
import { bytes, collect, once, open, sha256, tempDir } from "./helpers.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

it("a put whose fdatasync fails is refused with an I/O error, not indexed, and the lane moves to a new segment", async () => {
  const dir = await tempDir();
  cleanups.push(dir.cleanup);
  const failpoints = new Failpoints();
  const { store } = await open(dir.path, { lanes: 1, failpoints });
  let storeOpen = true;
  cleanups.push(async () => {
    if (storeOpen) await store.close();
  });
  const a = bytes("eio-a", 300_000);
  const b = bytes("eio-b", 300_000);
  const c = bytes("eio-c", 300_000);
  await store.put({ namespace: "eio", kind: "cas" }, once(a));
  const segmentsBefore = (await readdir(join(dir.path, "segments"))).length;

  failpoints.set("store.segment.datasync", () => {
    failpoints.clear("store.segment.datasync");
    throw Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO", errno: -5 });
  });
  const failed = await store.put({ namespace: "eio", kind: "cas" }, once(b)).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(failed).toBeInstanceOf(StoreIoError);
  expect(String((failed as Error).message)).toMatch(/fdatasync/);
  expect(store.stat({ namespace: "eio", kind: "cas", key: sha256(b) })).toBeUndefined();

  await store.put({ namespace: "eio", kind: "cas" }, once(c));
  expect((await readdir(join(dir.path, "segments"))).length).toBe(segmentsBefore + 1);
  for (const body of [a, c]) {
    const r = store.read({ namespace: "eio", kind: "cas", key: sha256(body) });
    expect(Buffer.from(await collect(r.chunks)).equals(body)).toBe(true);
  }

  await store.close();
  storeOpen = false;
  const again = await open(dir.path, { lanes: 1 });
  cleanups.push(() => again.store.close());
  for (const body of [a, c]) {
    const r = again.store.read({ namespace: "eio", kind: "cas", key: sha256(body) });
    expect(Buffer.from(await collect(r.chunks)).equals(body)).toBe(true);
  }
  const bId = { namespace: "eio", kind: "cas" as const, key: sha256(b) };
  if (again.store.stat(bId)) {
    expect(Buffer.from(await collect(again.store.read(bId).chunks)).equals(b)).toBe(true);
  }
});
