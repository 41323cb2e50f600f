import { describe, expect, it } from "vitest";
import { RequestWindow } from "../../src/transport/request-window.js";

describe("RequestWindow", () => {
  it("admits requests while they fit, queues the rest FIFO, and lets one oversized request in alone", async () => {
    const w = new RequestWindow(100);
    const signal = new AbortController().signal;
    const a = await w.acquire(60, signal);
    const b = await w.acquire(40, signal);
    const order: string[] = [];
    const c = w.acquire(30, signal).then((r) => (order.push("c"), r));
    const d = w.acquire(500, signal).then((r) => (order.push("d"), r));
    expect(w.stats()).toMatchObject({ usedBytes: 100, waiting: 2 });
    a();
    a(); // idempotent
    const rc = await c;
    expect(w.stats()).toMatchObject({ usedBytes: 70, waiting: 1 });
    b();
    rc();
    const rd = await d; // larger than the window: admitted once nothing else is in flight
    expect(order).toEqual(["c", "d"]);
    expect(w.stats()).toMatchObject({ usedBytes: 500, waiting: 0, peakBytes: 500, waits: 2 });
    rd();
    expect(w.stats().usedBytes).toBe(0);
  });

  it("an aborted wait leaves the queue and lets the next one in", async () => {
    const w = new RequestWindow(100);
    const live = new AbortController().signal;
    const a = await w.acquire(80, live);
    const ac = new AbortController();
    const big = w.acquire(50, ac.signal);
    const small = w.acquire(10, live);
    ac.abort(new Error("stopped"));
    await expect(big).rejects.toThrow("stopped");
    const rs = await small;
    expect(w.stats()).toMatchObject({ usedBytes: 90, waiting: 0 });
    a();
    rs();
  });
});
