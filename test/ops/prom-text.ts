/** A small reader of the Prometheus text format, for assertions on a real scrape. */

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Scrape {
  readonly samples: readonly Sample[];
  /** metric family -> TYPE (counter, gauge, histogram). */
  readonly types: ReadonlyMap<string, string>;
  /** Samples of `name` whose labels include `match`. */
  find(name: string, match?: Readonly<Record<string, string>>): Sample[];
  /** The one sample of `name` matching `match`; throws when there is not exactly one. */
  value(name: string, match?: Readonly<Record<string, string>>): number;
}

export function parsePrometheusText(text: string): Scrape {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (line.startsWith("# TYPE ")) {
      const [, , name, type] = line.split(" ");
      types.set(name!, type!);
      continue;
    }
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable metric line: ${line}`);
    const labels: Record<string, string> = {};
    for (const lm of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[lm[1]!] = lm[2]!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    samples.push({ name: m[1]!, labels, value: m[3] === "+Inf" ? Infinity : Number(m[3]) });
  }
  const find = (name: string, match: Readonly<Record<string, string>> = {}): Sample[] =>
    samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v));
  return {
    samples,
    types,
    find,
    value(name, match = {}) {
      const found = find(name, match);
      if (found.length !== 1) throw new Error(`expected one sample of ${name}${JSON.stringify(match)}, found ${found.length}`);
      return found[0]!.value;
    },
  };
}
