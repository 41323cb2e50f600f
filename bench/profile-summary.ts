/**
 * Summarises a V8 .cpuprofile (from BENCH_CPU_PROF=1 or node --cpu-prof): self time by
 * bucket (GC, idle, native "(program)", node internals, each npm package, each src/ layer)
 * and the top functions by self time. Used to explain figures in docs/PERFORMANCE.md.
 *
 * Usage: node dist-bench/bench/profile-summary.js FILE.cpuprofile [--top N]
 */
import { readFileSync } from "node:fs";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

function bucketOf(f: CallFrame): string {
  if (f.url === "") {
    if (f.functionName === "(garbage collector)") return "GC";
    if (f.functionName === "(idle)") return "idle";
    if (f.functionName === "(program)") return "(program): native, outside JS";
    return `native ${f.functionName || "(anonymous)"}`;
  }
  if (f.url.startsWith("node:")) return `node:${f.url.slice(5).split("/")[1] ?? f.url.slice(5)}`;
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(f.url);
  if (nm) return nm[1]!;
  const src = /\/src\/([^/]+)\//.exec(f.url);
  if (src) return `src/${src[1]}`;
  const bench = /\/bench\//.exec(f.url);
  if (bench) return "bench harness";
  return f.url;
}

function main(): void {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write("usage: profile-summary FILE.cpuprofile [--top N]\n");
    process.exit(2);
  }
  const topIdx = process.argv.indexOf("--top");
  const top = topIdx > 0 ? Number(process.argv[topIdx + 1]) : 25;
  const p = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  p.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)));
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const buckets = new Map<string, number>();
  const fns = new Map<string, number>();
  for (const [id, us] of self) {
    const f = byId.get(id)!.callFrame;
    const b = bucketOf(f);
    buckets.set(b, (buckets.get(b) ?? 0) + us);
    const short = f.url.replace(/^.*\/(node_modules|src|bench)\//, "$1/");
    const key = `${f.functionName || "(anonymous)"} ${short}${f.url ? `:${f.lineNumber + 1}` : ""}`;
    fns.set(key, (fns.get(key) ?? 0) + us);
  }
  const idle = buckets.get("idle") ?? 0;
  const busy = total - idle;
  const pct = (us: number): string => `${((100 * us) / busy).toFixed(1)}%`.padStart(6);
  process.stdout.write(`${file}\nwall ${(total / 1e6).toFixed(2)} s sampled, busy ${(busy / 1e6).toFixed(2)} s, idle ${(idle / 1e6).toFixed(2)} s (percentages: of busy)\n\nby bucket:\n`);
  for (const [b, us] of [...buckets].filter(([b]) => b !== "idle").sort((a, b) => b[1] - a[1]).slice(0, top)) {
    process.stdout.write(`  ${pct(us)} ${(us / 1e6).toFixed(2).padStart(7)} s  ${b}\n`);
  }
  process.stdout.write(`\ntop functions by self time:\n`);
  for (const [k, us] of [...fns].filter(([k]) => !k.startsWith("(idle)")).sort((a, b) => b[1] - a[1]).slice(0, top)) {
    process.stdout.write(`  ${pct(us)} ${(us / 1e6).toFixed(2).padStart(7)} s  ${k}\n`);
  }
}

main();
