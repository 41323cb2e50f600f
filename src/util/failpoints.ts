/**
 * Named failpoints: places in the node where a test can inject a delay, an error or a count.
 * With no handler registered a hit is one Map lookup. Handlers are registered only by tests
 * and benchmarks (in-process), never by configuration in production.
 */
export type FailpointContext = Readonly<Record<string, unknown>>;
export type FailpointHandler = (ctx: FailpointContext) => void | Promise<void>;

export class Failpoints {
  private readonly handlers = new Map<string, FailpointHandler>();
  private readonly hits = new Map<string, number>();

  set(name: string, handler: FailpointHandler): void {
    this.handlers.set(name, handler);
  }

  clear(name: string): void {
    this.handlers.delete(name);
  }

  /** Times `name` was hit while a handler was registered. */
  count(name: string): number {
    return this.hits.get(name) ?? 0;
  }

  /** Runs the handler of `name`, if any; its rejection is the injected failure. */
  hit(name: string, ctx: FailpointContext): void | Promise<void> {
    const h = this.handlers.get(name);
    if (!h) return;
    this.hits.set(name, (this.hits.get(name) ?? 0) + 1);
    return h(ctx);
  }
}
