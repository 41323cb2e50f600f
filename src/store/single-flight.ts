/**
 * Single-flight for writes of the same artifact: the first caller writes, later callers wait
 * for it to finish and then re-check the index (present: they are done without reading their
 * body; absent because it failed: one of them writes). Owns only the in-flight map.
 */
import { abortedError } from "./writer-lanes.js";

export class SingleFlight {
  readonly #inFlight = new Map<string, Promise<void>>();

  get size(): number {
    return this.#inFlight.size;
  }

  /** The in-flight write of `key`, which settles (never rejects) when it finishes. */
  current(key: string): Promise<void> | undefined {
    return this.#inFlight.get(key);
  }

  /** Registers the caller as the writer of `key`; call the returned function when done. */
  begin(key: string): () => void {
    let done!: () => void;
    const flight = new Promise<void>((resolve) => {
      done = resolve;
    });
    this.#inFlight.set(key, flight);
    return () => {
      if (this.#inFlight.get(key) === flight) this.#inFlight.delete(key);
      done();
    };
  }
}

/** Waits for `flight`, or rejects with AbortedError when `signal` fires first. */
export function waitForFlight(flight: Promise<void>, signal: AbortSignal | undefined, what: "put" | "apply"): Promise<void> {
  if (!signal) return flight;
  if (signal.aborted) return Promise.reject(abortedError(signal, what));
  return new Promise<void>((resolve, reject) => {
    const onAbort = (): void => reject(abortedError(signal, what));
    signal.addEventListener("abort", onAbort, { once: true });
    void flight.then(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    });
  });
}
