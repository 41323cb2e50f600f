/**
 * Turns task outputs into figures (runs, median, min, max), ratios measured side by side
 * (ratio of the medians, and the spread of the per-round ratios), target checks, and the
 * markdown tables. Every number is rounded ONCE here; results.json and the tables carry
 * exactly the same values.
 */
import { digitsFor, median, round } from "./stats.js";

export interface Target {
  readonly op: ">=" | "<=";
  readonly value: number;
  readonly source: string;
}

export interface FigureDef {
  readonly id: string;
  readonly scenario: "A" | "B" | "C";
  readonly label: string;
  readonly unit: string;
  /** Task key of the round whose output holds the figure, and the field. */
  readonly task: string;
  readonly field: string;
  readonly kind: "product" | "reference" | "decomposition" | "detail";
  readonly target?: Target;
  /** Field that is 1 when the run hit its time cap (the figure is then over what finished). */
  readonly partialField?: string;
}

export interface RatioDef {
  readonly figure: string;
  readonly vs: string;
  readonly note: string;
  readonly target?: Target;
}

export interface Figure {
  readonly id: string;
  readonly scenario: string;
  readonly label: string;
  readonly unit: string;
  readonly kind: string;
  /** One value per round, in round order; null where that round failed. */
  readonly runs: Array<number | null>;
  readonly median: number | null;
  readonly min: number | null;
  readonly max: number | null;
  readonly target: Target | undefined;
  readonly meetsTarget: boolean | null;
  /** Runs that hit their time cap: the figure is a rate over what finished in the cap. */
  readonly partialRuns: number;
}

export interface Ratio {
  readonly figure: string;
  readonly vs: string;
  readonly note: string;
  /** median(figure) / median(vs). */
  readonly ratioOfMedians: number | null;
  /** figure[r] / vs[r] for every round r where both exist. */
  readonly perRound: Array<number | null>;
  readonly perRoundMedian: number | null;
  readonly perRoundMin: number | null;
  readonly perRoundMax: number | null;
  readonly target: Target | undefined;
  readonly meetsTarget: boolean | null;
}

export type RoundOutputs = Array<Record<string, Record<string, unknown> | undefined>>;

function meets(t: Target | undefined, v: number | null): boolean | null {
  if (!t || v === null) return null;
  return t.op === ">=" ? v >= t.value : v <= t.value;
}

function summary(xs: Array<number | null>): { median: number | null; min: number | null; max: number | null } {
  const ok = xs.filter((x): x is number => x !== null && Number.isFinite(x));
  if (ok.length === 0) return { median: null, min: null, max: null };
  const med = median(ok);
  const d = digitsFor(med);
  return { median: round(med, d), min: round(Math.min(...ok), d), max: round(Math.max(...ok), d) };
}

export function buildFigures(defs: readonly FigureDef[], rounds: RoundOutputs): Figure[] {
  return defs.map((d) => {
    const raw = rounds.map((r) => {
      const v = r[d.task]?.[d.field];
      return typeof v === "number" && Number.isFinite(v) ? v : null;
    });
    const s = summary(raw);
    const digits = s.median === null ? 2 : digitsFor(s.median);
    return {
      id: d.id,
      scenario: d.scenario,
      label: d.label,
      unit: d.unit,
      kind: d.kind,
      runs: raw.map((v) => (v === null ? null : round(v, digits))),
      ...s,
      target: d.target,
      meetsTarget: meets(d.target, s.median),
      partialRuns: d.partialField === undefined ? 0 : rounds.filter((r) => r[d.task]?.[d.partialField!] === 1).length,
    };
  });
}

export function buildRatios(defs: readonly RatioDef[], figures: readonly Figure[]): Ratio[] {
  const byId = new Map(figures.map((f) => [f.id, f]));
  return defs.map((d) => {
    const a = byId.get(d.figure);
    const b = byId.get(d.vs);
    if (!a || !b) throw new Error(`ratio ${d.figure} / ${d.vs}: unknown figure`);
    const perRoundRaw = a.runs.map((x, i) => {
      const y = b.runs[i];
      return x !== null && y !== null && y !== undefined && y !== 0 ? x / y : null;
    });
    const s = summary(perRoundRaw);
    const rom = a.median !== null && b.median !== null && b.median !== 0 ? round(a.median / b.median, 3) : null;
    return {
      figure: d.figure,
      vs: d.vs,
      note: d.note,
      ratioOfMedians: rom,
      perRound: perRoundRaw.map((v) => (v === null ? null : round(v, 3))),
      perRoundMedian: s.median === null ? null : round(s.median, 3),
      perRoundMin: s.min === null ? null : round(s.min, 3),
      perRoundMax: s.max === null ? null : round(s.max, 3),
      target: d.target,
      meetsTarget: meets(d.target, rom),
    };
  });
}

const fmt = (v: number | null): string => (v === null ? "—" : String(v));
const targetText = (t: Target | undefined): string => (t ? `${t.op} ${t.value}` : "");
const meetsText = (m: boolean | null): string => (m === null ? "" : m ? "yes" : "**no**");

export function figuresTable(figures: readonly Figure[]): string {
  const rows = [
    "| scenario | figure | unit | median | min–max | runs | target | meets | note |",
    "|---|---|---|---:|---|---|---|---|---|",
    ...figures.map(
      (f) =>
        `| ${f.scenario} | ${f.label} \`${f.id}\` | ${f.unit} | ${fmt(f.median)} | ${fmt(f.min)}–${fmt(f.max)} | ${f.runs.map(fmt).join(" / ")} | ${targetText(f.target)} | ${meetsText(f.meetsTarget)} | ${f.partialRuns > 0 ? `time cap hit in ${f.partialRuns}/${f.runs.length} runs: ${f.unit === "ms" ? "a lower bound" : "rate over what finished"}` : ""} |`,
    ),
  ];
  return rows.join("\n");
}

export function ratiosTable(ratios: readonly Ratio[], figures: readonly Figure[]): string {
  const label = new Map(figures.map((f) => [f.id, f.id]));
  const rows = [
    "| figure | ÷ reference | ratio of medians | per-round ratios (min–max) | target | meets | what it says |",
    "|---|---|---:|---|---|---|---|",
    ...ratios.map(
      (r) =>
        `| \`${label.get(r.figure)}\` | \`${label.get(r.vs)}\` | ${fmt(r.ratioOfMedians)} | ${r.perRound.map(fmt).join(" / ")} (${fmt(r.perRoundMin)}–${fmt(r.perRoundMax)}) | ${targetText(r.target)} | ${meetsText(r.meetsTarget)} | ${r.note} |`,
    ),
  ];
  return rows.join("\n");
}
