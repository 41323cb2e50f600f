import { describe, expect, it } from "vitest";
import { StoreIoError } from "../../src/store/errors.js";
import { GroupSync } from "../../src/store/group-sync.js";

/** A fake fdatasync whose completion the test controls. */
function fakeFile() {
  let end = 0;
  const pending: Array<() => void> = [];
  let calls = 0;
  let fail = false;
  const syncer = new GroupSync({
    syncedTo: 0,
    currentEnd: () => end,
    datasync: () => {
      calls++;
      return new Promise<void>((resolve, reject) => pending.push(() => (fail ? reject(new Error("EIO")) : resolve())));
    },
    label: "test segment",
  });
  return {
    syncer,
    write: (n: number) => (end += n),
    truncate: (to: number) => {
      end = to;
      syncer.noteTruncate(to);
    },
    completeOne: () => pending.shift()?.(),
    failNext: () => (fail = true),
    get calls() {
      return calls;
    },
    get waiting() {
      return pending.length;
    },
  };
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("GroupSync", () => {
  it("coalesces writers waiting during an fdatasync into one following fdatasync", async () => {
    const f = fakeFile();
    f.write(10);
    const first = f.syncer.syncTo(10);
    await tick();
    expect(f.calls).toBe(1);
    f.write(10);
    f.write(10);
    const waiters = [f.syncer.syncTo(20), f.syncer.syncTo(30)];
    f.completeOne();
    await first;
    await tick();
    expect(f.calls).toBe(2); // one fdatasync for both later writers
    f.completeOne();
    await Promise.all(waiters);
    expect(f.syncer.syncedTo).toBe(30);
    expect(f.calls).toBe(2);
  });

  it("does not count bytes truncated during an fdatasync as synced", async () => {
    const f = fakeFile();
    f.write(100);
    const p = f.syncer.syncTo(40);
    await tick();
    f.truncate(40); // the owner cut its failed record back while the sync ran
    f.write(60); // and a new record was written over the same range
    f.completeOne();
    await p;
    expect(f.syncer.syncedTo).toBe(40);
    const q = f.syncer.syncTo(100);
    await tick();
    expect(f.calls).toBe(2);
    f.completeOne();
    await q;
  });

  it("stays failed after a failed fdatasync", async () => {
    const f = fakeFile();
    f.write(10);
    f.failNext();
    const p = f.syncer.syncTo(10);
    await tick();
    f.completeOne();
    await expect(p).rejects.toBeInstanceOf(StoreIoError);
    await expect(f.syncer.syncTo(10)).rejects.toBeInstanceOf(StoreIoError);
    expect(f.calls).toBe(1);
  });
});
