/**
 * Found by the reliability suite (chaos scenario 5): a server stream whose connection was reset
 * while its handler waited at a yield was never closed, so the handler's finally blocks (the
 * open segment file, the "cut at byte N" log) waited for the garbage collector. withSendDeadline
 * with the call's signal closes the source when the call ends.
 */
import { describe, expect, it } from "vitest";
import { withSendDeadline } from "../../src/transport/deadlines.js";

describe("withSendDeadline closes its source when the call ends", () => {
  it("runs the source's finally when the signal aborts while the consumer never asks again", async () => {
    const events: string[] = [];
    async function* source(): AsyncGenerator<number> {
      try {
        for (let i = 0; i < 10; i++) yield i;
      } finally {
        events.push("closed");
      }
    }
    const ac = new AbortController();
    const out = withSendDeadline(source(), 60_000, () => events.push("stalled"), ac.signal);
    expect(await out.next()).toEqual({ value: 0, done: false });
    // The consumer (a dead HTTP/2 stream) never calls next() or return() again.
    ac.abort();
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(events).toEqual(["closed"]);
  });

  it("closes a source whose call had already ended", async () => {
    let closed = false;
    async function* source(): AsyncGenerator<number> {
      try {
        yield 1;
      } finally {
        closed = true;
      }
    }
    const s = source();
    const out = withSendDeadline(s, 60_000, () => {}, AbortSignal.abort());
    expect(await out.next()).toEqual({ value: undefined, done: true });
    // Never started: nothing to finalise, and the wrapper is done.
    expect(closed).toBe(false);
  });
});
