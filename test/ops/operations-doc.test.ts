/**
 * docs/OPERATIONS.md stays complete: every metric name (telemetry/names.ts), every span name,
 * every log `event` written anywhere in src/ and every status field is documented there.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { NodeStatusSchema, PeerStatusSchema, StoreUsageSchema } from "../../src/gen/granary/node/v1/node_pb.js";
import { METRIC, SPAN } from "../../src/telemetry/names.js";

const ROOT = new URL("../../", import.meta.url).pathname;
const doc = readFileSync(join(ROOT, "docs/OPERATIONS.md"), "utf8");

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) return f === "gen" ? [] : sources(p);
    return p.endsWith(".ts") ? [p] : [];
  });
}

describe("docs/OPERATIONS.md", () => {
  it("documents every metric and span", () => {
    for (const m of Object.values(METRIC)) expect(doc, m).toContain(`\`${m}\``);
    for (const s of Object.values(SPAN)) expect(doc, s).toContain(`\`${s}\``);
  });

  it("documents every log event the code writes", () => {
    const events = new Set<string>();
    for (const f of sources(join(ROOT, "src"))) {
      for (const m of readFileSync(f, "utf8").matchAll(/event: "([a-z_.-]+)"/g)) events.add(m[1]!);
    }
    for (const t of ["recovered", "corrupt-record", "evicted", "feed-trimmed"]) events.add(`store.${t}`);
    expect(events.size).toBeGreaterThan(30);
    for (const e of events) expect(doc, e).toContain(`\`${e}\``);
  });

  it("documents every status field", () => {
    for (const f of NodeStatusSchema.fields) if (f.localName !== "store" && f.localName !== "peers") expect(doc, f.localName).toContain(`\`${f.localName}\``);
    for (const f of PeerStatusSchema.fields) expect(doc, f.localName).toMatch(new RegExp(`\`(peers\\[\\]\\.)?${f.localName}\``));
    for (const f of StoreUsageSchema.fields) expect(doc, f.localName).toMatch(new RegExp(`\`(store\\.)?${f.localName}\``));
  });
});
