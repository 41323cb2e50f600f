/**
 * Read-ahead over an async iterable: a pump pulls items while the consumer is busy and the
 * consumer takes everything that has arrived at once. Bounded: the pump waits while `max`
 * items are buffered, so back-pressure still reaches the source (and the network under it).
 * An error from the source is delivered after the items buffered before it.
 */
export async function* readAhead<T>(src: AsyncIterable<T>, max: number): AsyncGenerator<T[]> {
  if (!(max >= 1)) throw new RangeError(`readAhead: max must be >= 1, got ${max}`);
  const it = src[Symbol.asyncIterator]();
  const buffer: T[] = [];
  let ended = false;
  let failure: { error: unknown } | undefined;
  let stopped = false;
  let wakeConsumer: (() => void) | undefined;
  let wakePump: (() => void) | undefined;
  const pump = (async () => {
    try {
      while (!stopped) {
        if (buffer.length >= max) {
          await new Promise<void>((r) => (wakePump = r));
          continue;
        }
        const r = await it.next();
        if (r.done) break;
        buffer.push(r.value);
        wakeConsumer?.();
      }
    } catch (e) {
      failure = { error: e };
    } finally {
      ended = true;
      wakeConsumer?.();
    }
  })();
  try {
    for (;;) {
      if (buffer.length > 0) {
        const batch = buffer.splice(0, buffer.length);
        wakePump?.();
        yield batch;
        continue;
      }
      if (ended) {
        if (failure) throw failure.error;
        return;
      }
      await new Promise<void>((r) => (wakeConsumer = r));
      wakeConsumer = undefined;
    }
  } finally {
    stopped = true;
    wakePump?.();
    if (!ended) {
      // The pump may be blocked in next(); return() ends the source (its own finally cancels
      // the call). Not awaited: an async generator queues return() behind a pending next().
      void it.return?.()?.catch?.(() => undefined);
    }
    void pump;
  }
}
