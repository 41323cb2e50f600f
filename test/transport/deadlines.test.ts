/**
 * idleTimeout and withSendDeadline against in-memory sources on a fake clock: the idle timer
 * runs only while waiting, is re-armed per message and always cleared; the send timer runs only
 * while the consumer leaves a message untaken.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { IdleTimeoutError, idleTimeout, withSendDeadline, type SendStallError } from "../../src/transport/deadlines.js";
import { deferred, drain } from "./fixtures.js";

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

/** A source whose messages the test releases one by one. */
function manual<T>(): { src: AsyncIterable<T>; push(v: T): void; end(): void; fail(e: unknown): void; returned: () => boolean } {
  const queue: IteratorResult<T>[] = [];
  let waiting: ((r: IteratorResult<T>) => void) | undefined;
  let failWaiting: ((e: unknown) => void) | undefined;
  let returned = false;
  const deliver = (r: IteratorResult<T>): void => {
    if (waiting) {
      const w = waiting;
      waiting = undefined;
      w(r);
    } else queue.push(r);
  };
  return {
    src: {
      [Symbol.asyncIterator]: () => ({
        next: () => {
          const r = queue.shift();
          if (r) return Promise.resolve(r);
          return new Promise<IteratorResult<T>>((resolve, reject) => {
            waiting = resolve;
            failWaiting = reject;
          });
        },
        return: () => {
          returned = true;
          return Promise.resolve({ done: true, value: undefined });
        },
      }),
    },
    push: (v) => deliver({ done: false, value: v }),
    end: () => deliver({ done: true, value: undefined }),
    fail: (e) => failWaiting?.(e),
    returned: () => returned,
  };
}

describe("idleTimeout", () => {
  it("passes messages through, re-arms per message, and leaves no timer behind", async () => {
    const m = manual<number>();
    const out = drain(idleTimeout(m.src, 1000, () => expect.fail("not idle")));
    for (let i = 0; i < 5; i++) {
      await vi.advanceTimersByTimeAsync(900); // each gap is under the limit; the total is not
      m.push(i);
    }
    await vi.advanceTimersByTimeAsync(900);
    m.end();
    expect(await out).toEqual([0, 1, 2, 3, 4]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("does not count the consumer's own time", async () => {
    const m = manual<number>();
    const it = idleTimeout(m.src, 1000)[Symbol.asyncIterator]();
    m.push(1);
    expect((await it.next()).value).toBe(1);
    expect(vi.getTimerCount()).toBe(0); // suspended at yield: no timer while we "work"
    await vi.advanceTimersByTimeAsync(5000);
    m.push(2);
    expect((await it.next()).value).toBe(2);
    await it.return();
    expect(m.returned()).toBe(true);
  });

  it("fails a stalled source with IdleTimeoutError after calling onIdle once, and lets go of it", async () => {
    const m = manual<number>();
    const onIdle = vi.fn();
    const it = idleTimeout(m.src, 300, onIdle)[Symbol.asyncIterator]();
    m.push(1);
    await it.next();
    const next = it.next().catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(300);
    const err = await next;
    expect(err).toBeInstanceOf(IdleTimeoutError);
    expect(err).toMatchObject({ code: "IDLE_TIMEOUT", idleMs: 300 });
    expect(onIdle).toHaveBeenCalledOnce();
    expect(onIdle.mock.calls[0]?.[0]).toBe(err);
    expect(m.returned()).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("reports the source's own error, not an idle timeout", async () => {
    const m = manual<number>();
    const next = idleTimeout(m.src, 300)[Symbol.asyncIterator]().next();
    m.fail(new Error("stream reset"));
    await expect(next).rejects.toThrow("stream reset");
    expect(vi.getTimerCount()).toBe(0);
  });

  it("stops waiting when its signal is aborted", async () => {
    const m = manual<number>();
    const ac = new AbortController();
    const next = idleTimeout(m.src, 10_000, undefined, { signal: ac.signal })[Symbol.asyncIterator]().next();
    const reason = new Error("shutting down");
    ac.abort(reason);
    await expect(next).rejects.toBe(reason);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("rejects a nonsensical limit at once", () => {
    expect(() => idleTimeout(manual<number>().src, 0)).toThrow(RangeError);
    expect(() => withSendDeadline(manual<number>().src, Number.NaN, () => undefined)).toThrow(RangeError);
  });
});

describe("withSendDeadline", () => {
  it("calls onStall once when the consumer leaves a message untaken", async () => {
    const stalls: SendStallError[] = [];
    async function* three(): AsyncGenerator<number> {
      yield* [1, 2, 3];
    }
    const it = withSendDeadline(three(), 500, (e) => stalls.push(e))[Symbol.asyncIterator]();
    expect((await it.next()).value).toBe(1);
    await vi.advanceTimersByTimeAsync(499);
    expect(stalls).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(stalls).toHaveLength(1);
    expect(stalls[0]).toMatchObject({ code: "SEND_STALLED", stallMs: 500 });
    await it.return();
    expect(vi.getTimerCount()).toBe(0);
  });

  it("does not count the time the source takes to produce a message", async () => {
    const gate = deferred();
    async function* slowProducer(): AsyncGenerator<number> {
      yield 1;
      await gate.promise;
      yield 2;
    }
    const onStall = vi.fn();
    const it = withSendDeadline(slowProducer(), 500, onStall)[Symbol.asyncIterator]();
    await it.next();
    const second = it.next(); // taken at once; now the producer is slow
    await vi.advanceTimersByTimeAsync(10_000);
    gate.resolve();
    expect((await second).value).toBe(2);
    expect((await it.next()).done).toBe(true);
    expect(onStall).not.toHaveBeenCalled();
    expect(vi.getTimerCount()).toBe(0);
  });
});
