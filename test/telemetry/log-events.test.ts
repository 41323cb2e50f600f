/**
 * Every silent transition gets a log event: staging budget exhausted/relieved, readiness
 * changes (ready, and draining at shutdown), and errors carry their whole cause chain. The
 * status page's ring of recent warnings is fed from the same log calls.
 */
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StagingBudget, type StagingPressure } from "../../src/replication/staging-budget.js";
import { createLogger, errFields } from "../../src/telemetry/logger.js";
import { RecentEvents } from "../../src/telemetry/recent-events.js";
import { makePki, startMeshNode, type Pki } from "../helpers/mesh.js";
import { tempDir } from "../helpers/temp.js";

function capture(recent?: RecentEvents): { log: ReturnType<typeof createLogger>; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new PassThrough();
  let buf = "";
  sink.on("data", (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      lines.push(JSON.parse(buf.slice(0, i)) as Record<string, unknown>);
      buf = buf.slice(i + 1);
    }
  });
  return { log: createLogger({ level: "debug", destination: sink, ...(recent ? { recent } : {}) }), lines };
}

let pki: Pki;
let root: string;
let cleanup: () => Promise<void>;
beforeAll(async () => {
  const t = await tempDir("granary-log-events-");
  root = t.path;
  cleanup = t.cleanup;
  pki = await makePki(`${root}/pki`);
});
afterAll(async () => cleanup?.());

describe("log events of silent transitions", () => {
  it("staging budget: exhausted once when fetches start waiting, relieved once when the last one got in", async () => {
    const seen: StagingPressure[] = [];
    const budget = new StagingBudget(100, (p) => seen.push(p));
    const r1 = await budget.reserve(80);
    const w1 = budget.reserve(50);
    const w2 = budget.reserve(10);
    expect(seen.map((p) => p.state)).toEqual(["exhausted"]);
    expect(seen[0]).toMatchObject({ budgetBytes: 100, reservedBytes: 80, wantBytes: 50 });
    r1();
    const [r2, r3] = await Promise.all([w1, w2]);
    expect(seen.map((p) => p.state)).toEqual(["exhausted", "relieved"]);
    r2();
    r3();
    expect(seen).toHaveLength(2);
    // An aborted waiter that was the last one also relieves the budget.
    const r4 = await budget.reserve(100);
    const ac = new AbortController();
    const w4 = budget.reserve(1, ac.signal);
    ac.abort(new Error("pass stopped"));
    await expect(w4).rejects.toThrow("pass stopped");
    expect(seen.map((p) => p.state)).toEqual(["exhausted", "relieved", "exhausted", "relieved"]);
    r4();
  });

  it("readiness changes are logged with the reason, including the drain at shutdown", async () => {
    const { log, lines } = capture();
    const n = await startMeshNode({ name: "log-a", pki, root, log, hooks: { processMetrics: false } });
    await n.close();
    const readiness = lines.filter((l) => l["event"] === "readiness.changed").map((l) => [l["ready"], l["reason"]]);
    expect(readiness).toEqual([
      [false, "catching up with peers"],
      [true, "no peers known at start"],
      [false, "shutting down"],
    ]);
  });

  it("errors carry their cause chain; warnings and errors reach the recent-events ring", () => {
    const recent = new RecentEvents(2);
    const { log, lines } = capture(recent);
    const err = new Error("bootstrap pass aborted", { cause: new Error("store apply failed", { cause: Object.assign(new Error("ENOSPC: no space left on device"), { code: "ENOSPC" }) }) });
    log.error({ event: "replication.pass_aborted", peer: "https://p:7443", ...errFields(err) }, "store error: pass aborted");
    log.info({ event: "replication.pass_started" }, "not kept: info");
    log.warn({ event: "replication.retry", address: "https://q:7443" }, "retrying");
    log.warn({ event: "third" }, "pushes the oldest out");
    expect(lines[0]!["cause"]).toBe("bootstrap pass aborted: store apply failed: ENOSPC: no space left on device");
    expect((lines[0]!["err"] as { message: string }).message).toBe("bootstrap pass aborted");
    const kept = recent.list();
    expect(kept.map((e) => e.event)).toEqual(["third", "replication.retry"]);
    expect(kept[1]).toMatchObject({ level: "warn", peer: "https://q:7443", msg: "retrying" });
  });
});
