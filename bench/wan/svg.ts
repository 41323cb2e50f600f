/**
 * A hand-written SVG line chart: bytes received over time for each series, beside the link
 * limit (a straight line at the iperf3 goodput measured in the same round).
 */
export interface Series {
  readonly label: string;
  readonly color: string;
  /** [ms, bytes] points, ms ascending. */
  readonly points: ReadonlyArray<readonly [number, number]>;
  readonly dashed?: boolean;
}

const esc = (s: string): string => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");

export function bytesOverTimeSvg(title: string, series: readonly Series[], limitMbPerSecond?: number): string {
  const W = 760;
  const H = 420;
  const L = 70;
  const R = 20;
  const T = 40;
  const B = 50;
  const maxMs = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[0])));
  let maxBytes = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[1])));
  const all: Series[] = [...series];
  if (limitMbPerSecond !== undefined && Number.isFinite(limitMbPerSecond)) {
    all.push({ label: `link limit (iperf3 ${limitMbPerSecond.toFixed(1)} MB/s)`, color: "#888", dashed: true, points: [[0, 0], [maxMs, (limitMbPerSecond * 1e6 * maxMs) / 1000]] });
    maxBytes = Math.max(maxBytes, Math.min((limitMbPerSecond * 1e6 * maxMs) / 1000, maxBytes * 1.5));
  }
  const x = (ms: number): number => L + ((W - L - R) * ms) / maxMs;
  const y = (b: number): number => H - B - ((H - T - B) * Math.min(b, maxBytes)) / maxBytes;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${L}" y="22" font-size="14">${esc(title)}</text>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/>`,
    `<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const ms = (maxMs * i) / 5;
    const b = (maxBytes * i) / 5;
    out.push(`<text x="${x(ms)}" y="${H - B + 16}" text-anchor="middle">${(ms / 1000).toFixed(1)} s</text>`);
    out.push(`<text x="${L - 6}" y="${y(b) + 4}" text-anchor="end">${(b / 1e6).toFixed(0)} MB</text>`);
    out.push(`<line x1="${L}" y1="${y(b)}" x2="${W - R}" y2="${y(b)}" stroke="#eee"/>`);
  }
  all.forEach((s, k) => {
    const pts = s.points.map(([ms, b]) => `${x(ms).toFixed(1)},${y(b).toFixed(1)}`).join(" ");
    out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6,4"' : ""} points="${pts}"/>`);
    out.push(`<line x1="${L + 10}" y1="${T + 10 + 16 * k}" x2="${L + 30}" y2="${T + 10 + 16 * k}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6,4"' : ""}/>`);
    out.push(`<text x="${L + 36}" y="${T + 14 + 16 * k}">${esc(s.label)}</text>`);
  });
  out.push(`<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">time since the fresh node started</text>`);
  out.push("</svg>");
  return out.join("\n") + "\n";
}
