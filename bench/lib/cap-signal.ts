/** A time cap on an abort signal that Node 20 cannot lose (see capSignal). */
/**
 * `parent`, or a time cap of `ms`, whichever aborts first. Not AbortSignal.any([parent,
 * AbortSignal.timeout(ms)]): on Node 20 the combined signal holds its sources weakly, a
 * collected timeout signal takes its timer with it, and the cap never fires (a W9 reference ran
 * minutes past its 60 s cap). Call clear() when done.
 */
export function capSignal(parent: AbortSignal, ms: number, reason = `time cap of ${ms} ms`): { signal: AbortSignal; clear: () => void } {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(new Error(reason)), ms);
  const onParent = (): void => ac.abort(parent.reason);
  if (parent.aborted) ac.abort(parent.reason);
  else parent.addEventListener("abort", onParent, { once: true });
  return {
    signal: ac.signal,
    clear: () => {
      clearTimeout(timer);
      parent.removeEventListener("abort", onParent);
    },
  };
}
