/**
 * Which acknowledged writes each node is known to hold, learned incrementally: a node is only
 * ever asked (FindMissing) about the writes it was not yet seen holding, and a write seen on a
 * node stays counted there until that node is wiped. Writes are numbered in the order they
 * were acknowledged, so "every write acknowledged by time t is on node i" is one comparison:
 * the node's first unheld number ≥ the count acknowledged by t.
 *
 * Why not ask each check for everything it cares about: scenario 7 at full size had up to
 * ~20 per-fault checks open at once, each asking every node not yet caught up about all the
 * writes acknowledged by its fault (up to ~45,000 digests, ~3 MB of request) every second.
 * The node lagging behind got all of it — the oracle loaded exactly the node it was timing.
 */
export type FindMissing = (node: number, digests: string[]) => Promise<string[]>;

export class HeldTracker {
  /** Digests in the order they were first acknowledged. */
  readonly order: string[] = [];
  private readonly numberOf = new Map<string, number>();
  private readonly unheld: Array<Set<number>>;
  private readonly first: number[];
  private readonly epoch: number[];
  /** Digests asked about so far (the oracle's own load on the nodes). */
  queried = 0;
  rounds = 0;
  /** Resolved when the round after the current one ends (asked while a round was running). */
  private waiting: Array<() => void> = [];

  constructor(
    private readonly nodes: number,
    private readonly findMissing: FindMissing,
    private readonly batch = 5000,
  ) {
    this.unheld = Array.from({ length: nodes }, () => new Set<number>());
    this.first = new Array<number>(nodes).fill(0);
    this.epoch = new Array<number>(nodes).fill(0);
  }

  /** An acknowledged write (a digest seen before is ignored). */
  add(digest: string): void {
    if (this.numberOf.has(digest)) return;
    const n = this.order.length;
    this.order.push(digest);
    this.numberOf.set(digest, n);
    for (const s of this.unheld) s.add(n);
  }

  /** Node `i` lost its data (wiped): nothing is known to be on it any more. */
  reset(i: number): void {
    this.epoch[i]!++;
    const s = this.unheld[i]!;
    for (let n = 0; n < this.order.length; n++) s.add(n);
    this.first[i] = 0;
  }

  /** Number of the oldest write not known to be on node `i` (order.length when all are). */
  firstUnheld(i: number): number {
    return this.unheld[i]!.size === 0 ? this.order.length : this.first[i]!;
  }

  /** True when node `i` is known to hold every write numbered in `numbers`. */
  holdsAll(i: number, numbers: Iterable<number>): boolean {
    const s = this.unheld[i]!;
    for (const n of numbers) if (s.has(n)) return false;
    return true;
  }

  /** The digests not known to be on node `i`. */
  unheldDigests(i: number): string[] {
    return [...this.unheld[i]!].map((n) => this.order[n]!);
  }

  numberOfDigest(d: string): number | undefined {
    return this.numberOf.get(d);
  }

  /**
   * Asks node `i` about the writes not yet seen on it and drops those it holds. A failed ask
   * (node down) changes nothing; an answer from before a wipe is discarded.
   */
  async poll(i: number): Promise<void> {
    const epoch = this.epoch[i]!;
    const numbers = [...this.unheld[i]!];
    for (let k = 0; k < numbers.length; k += this.batch) {
      const part = numbers.slice(k, k + this.batch);
      this.queried += part.length;
      let missing: string[];
      try {
        missing = await this.findMissing(i, part.map((n) => this.order[n]!));
      } catch {
        return;
      }
      if (this.epoch[i] !== epoch) return;
      const still = new Set(missing);
      for (const n of part) if (!still.has(this.order[n]!)) this.unheld[i]!.delete(n);
    }
    let min = this.order.length;
    for (const n of this.unheld[i]!) if (n < min) min = n;
    this.first[i] = min;
  }

  /** Polls `live()` nodes in rounds, `pauseMs` apart, until `signal` aborts. */
  async run(live: () => number[], pauseMs: number, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const round = this.waiting;
      this.waiting = [];
      await Promise.all(live().map((i) => this.poll(i)));
      this.rounds++;
      for (const resolve of round) resolve();
      await new Promise((r) => setTimeout(r, pauseMs));
    }
    for (const resolve of this.waiting) resolve();
  }

  /** Resolves at the end of a whole round that started after this call. */
  nextRound(): Promise<void> {
    return new Promise((resolve) => this.waiting.push(resolve));
  }
}
