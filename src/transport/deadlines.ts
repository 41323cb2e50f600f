/**
 * Per-message deadlines for long streams. gRPC deadlines (connect `timeoutMs`, grpc-js
 * `deadline`) are TOTAL deadlines: a healthy hour-long bootstrap stream must not hit one, and a
 * stalled stream must not live forever. So the deadline is on the gap between messages:
 *
 * - idleTimeout (receiving side): a timer runs only while waiting for the next message from
 *   the network, never while the consumer is busy with the previous one, and is re-armed for
 *   every message. On expiry it calls `onIdle` (abort the call: connect `AbortController`,
 *   grpc-js `call.cancel()`), and the iteration fails with IdleTimeoutError, whatever the
 *   library reports for the cancelled call.
 * - withSendDeadline (sending side, a server stream handler): connect-node suspends the
 *   handler's generator at `yield` until the HTTP/2 write has drained, so a timer armed around
 *   each `yield` measures how long the consumer refuses to take a message. On expiry it calls
 *   `onStall`, which resets the stream (connect-handler.ts resetStream), freeing the memory a
 *   non-reading client would otherwise pin.
 *
 * An idle timer alone does not catch a 1 byte/s trickle: progress watchdogs belong to the
 * replication layer. All timers are unref()ed and always cleared.
 */
import { TransportError } from "./errors.js";

/** No message arrived within the idle limit. `code` is "IDLE_TIMEOUT". */
export class IdleTimeoutError extends TransportError {
  constructor(readonly idleMs: number) {
    super("IDLE_TIMEOUT", `no message for ${idleMs} ms; the stream was abandoned as stalled`);
  }
}

/** The consumer did not take the next message within the send deadline. `code` is "SEND_STALLED". */
export class SendStallError extends TransportError {
  constructor(readonly stallMs: number) {
    super("SEND_STALLED", `the receiver took no message for ${stallMs} ms; the stream was reset`);
  }
}

export interface IdleTimeoutOptions {
  /** Stops waiting: the iteration fails with the signal's reason (the source is abandoned). */
  signal?: AbortSignal;
}

/**
 * Yields `src`'s messages; fails with IdleTimeoutError when the next one takes longer than
 * `idleMs` to arrive, after calling `onIdle` so the caller can cancel the underlying call.
 */
export function idleTimeout<T>(
  src: AsyncIterable<T>,
  idleMs: number,
  onIdle?: (err: IdleTimeoutError) => void,
  options: IdleTimeoutOptions = {},
): AsyncGenerator<T, void, undefined> {
  assertPositive("idleMs", idleMs); // here, not in the generator: a bad limit is the caller's bug, thrown at once
  return idleTimeoutGen(src, idleMs, onIdle, options.signal);
}

async function* idleTimeoutGen<T>(
  src: AsyncIterable<T>,
  idleMs: number,
  onIdle: ((err: IdleTimeoutError) => void) | undefined,
  signal: AbortSignal | undefined,
): AsyncGenerator<T, void, undefined> {
  const it = src[Symbol.asyncIterator]();
  // "open": we may call it.return(); "abandoned": a next() may be pending forever, so return()
  // must not be awaited (an async generator queues it behind that next()); "ended": nothing to do.
  let state: "open" | "abandoned" | "ended" = "open";
  try {
    for (;;) {
      signal?.throwIfAborted();
      let timer: NodeJS.Timeout | undefined;
      let onAbort: (() => void) | undefined;
      const guard = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const err = new IdleTimeoutError(idleMs);
          try {
            onIdle?.(err);
          } catch {
            // The hook's failure must not hide the timeout.
          }
          reject(err);
        }, idleMs);
        timer.unref();
        if (signal !== undefined) {
          onAbort = () => reject(signal.reason);
          signal.addEventListener("abort", onAbort, { once: true });
        }
      });
      let r: IteratorResult<T>;
      try {
        r = await Promise.race([it.next(), guard]);
      } catch (e) {
        state = e instanceof IdleTimeoutError || (signal?.aborted === true && e === signal.reason) ? "abandoned" : "ended";
        throw e;
      } finally {
        clearTimeout(timer);
        if (onAbort !== undefined) signal?.removeEventListener("abort", onAbort);
      }
      if (r.done === true) {
        state = "ended";
        return;
      }
      yield r.value;
    }
  } finally {
    if (state === "open") {
      await it.return?.();
    } else if (state === "abandoned") {
      try {
        it.return?.()?.catch(() => undefined);
      } catch {
        // A synchronous throw from return() changes nothing: the source is given up.
      }
    }
  }
}

/**
 * Yields `src`'s messages to a consumer that must take each one within `ms`; calls `onStall`
 * once when it does not (typically: reset the stream). Time spent producing a message is not
 * counted, only the time the consumer leaves it untaken. With `signal` (the call's), the source
 * is closed (return()) as soon as the call ends, whether or not the consumer ever asks again.
 */
export function withSendDeadline<T>(
  src: AsyncIterable<T>,
  ms: number,
  onStall: (err: SendStallError) => void,
  signal?: AbortSignal,
): AsyncGenerator<T, void, undefined> {
  assertPositive("ms", ms);
  const gen = withSendDeadlineGen(src, ms, onStall);
  if (signal) {
    // A stream that dies (connection reset, RST_STREAM) while its handler waits at a yield is
    // not always closed by the server library: the handler's finally blocks (open files, "cut
    // at byte N" logs) would then wait for the garbage collector. Close it when the call ends.
    const close = (): void => void gen.return(undefined).catch(() => undefined);
    if (signal.aborted) close();
    else signal.addEventListener("abort", close, { once: true });
  }
  return gen;
}

async function* withSendDeadlineGen<T>(
  src: AsyncIterable<T>,
  ms: number,
  onStall: (err: SendStallError) => void,
): AsyncGenerator<T, void, undefined> {
  let timer: NodeJS.Timeout | undefined;
  let stalled = false;
  const fire = (): void => {
    if (stalled) return;
    stalled = true;
    onStall(new SendStallError(ms));
  };
  try {
    for await (const m of src) {
      timer = setTimeout(fire, ms);
      timer.unref();
      yield m;
      clearTimeout(timer);
      timer = undefined;
    }
  } finally {
    clearTimeout(timer);
  }
}

function assertPositive(field: string, v: number): void {
  if (!Number.isFinite(v) || v <= 0) throw new RangeError(`${field}: want a positive number of milliseconds, got ${v}`);
}
