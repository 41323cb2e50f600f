/**
 * Scenario 1 — crash during writes. A `granary serve` child takes 64 concurrent writers
 * (bodies 8 KiB–2 MiB) and is killed with SIGKILL at a random point: after a random delay, or
 * by a failpoint mid-record ("store.record.write", before the record's prefix is written) or
 * between the data fdatasync and the index commit ("store.put.before-index"). It restarts on
 * the same data dir, again and again. Oracle per epoch: every acknowledged put reads back byte
 * for byte through the public API, and every index entry has a body that hashes to its digest.
 */
import { rm, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { connectPublic } from "../../src/transport/public-client.js";
import { auditStore, bodyBytes, buildSize, getCas, putCasBody, type BodySpec } from "../lib/artifacts.js";
import { chaosContext, Violations } from "../lib/context.js";
import { exitOf, killAll, startNode } from "../lib/processes.js";

const ctx = chaosContext("01-crash-writes");
const KILLS = ctx.size(8, 1000);
const KILLS_PER_EPOCH = ctx.size(8, 25);
const WRITERS = 64;
const NS = "crash";

afterAll(killAll);

type KillKind = "timer" | "mid-record" | "before-index";

it(`survives ${KILLS} kill -9 points with every acknowledged put readable`, async () => {
  const v = new Violations();
  const rng = ctx.rng;
  const root = await mkdtemp(join(tmpdir(), "granary-chaos-crash-"));
  const kinds: Record<KillKind, number> = { timer: 0, "mid-record": 0, "before-index": 0 };
  let acked = 0;
  let attempted = 0;
  let failedPuts = 0;
  let oracleReads = 0;
  let auditEntries = 0;
  let recoveredEvents = 0;
  let epoch = 0;
  const restartMs: number[] = [];
  try {
    for (let kill = 0; kill < KILLS; epoch++) {
      const dataDir = join(root, `epoch-${epoch}`);
      const ackedHere = new Map<string, BodySpec>();
      for (let k = 0; k < KILLS_PER_EPOCH && kill < KILLS; k++, kill++) {
        const kind: KillKind = rng.pick(["timer", "mid-record", "before-index"] as const);
        const fp = kind === "mid-record" ? `store.record.write=abort@${rng.int(1, 400)}` : kind === "before-index" ? `store.put.before-index=abort@${rng.int(1, 120)}` : undefined;
        const t0 = Date.now();
        const child = await startNode(["--data-dir", dataDir], fp);
        restartMs.push(Date.now() - t0);
        recoveredEvents += child.lines.filter((l) => l.includes('"store.recovered"')).length;
        const conn = connectPublic({ server: child.publicAddress });
        const dead = exitOf(child);
        let stop = false;
        void dead.then(() => (stop = true));
        const writer = async (): Promise<void> => {
          for (let n = 0; n < 10_000 && !stop; n++) {
            const spec = { seed: rng.u32(), size: buildSize(rng.next()) };
            attempted++;
            try {
              const digest = await putCasBody(conn, NS, bodyBytes(spec));
              ackedHere.set(digest, spec);
              acked++;
            } catch {
              failedPuts++;
              if (stop) return;
            }
          }
        };
        const writers = Array.from({ length: WRITERS }, writer);
        // A failpoint that is not reached in time, or the timer kind: kill -9 after a random delay.
        const delay = kind === "timer" ? rng.int(100, 2500) : 8000;
        let byTimer = false;
        const timer = setTimeout(() => {
          byTimer = true;
          void child.kill("SIGKILL");
        }, delay);
        const how = await dead;
        clearTimeout(timer);
        stop = true;
        await Promise.all(writers);
        conn.close();
        v.check(how === "SIGKILL", `kill ${kill}: child ended with ${how}, not SIGKILL`);
        kinds[byTimer ? "timer" : kind]++;
      }
      // Oracle: restart once more, read every acknowledged put of the epoch byte for byte.
      const child = await startNode(["--data-dir", dataDir]);
      const conn = connectPublic({ server: child.publicAddress });
      const specs = [...ackedHere.entries()];
      for (let i = 0; i < specs.length; i += 16) {
        await Promise.all(
          specs.slice(i, i + 16).map(async ([digest, spec]) => {
            const r = await getCas(conn, NS, digest);
            oracleReads++;
            if (r.kind !== "ok") v.check(false, `acknowledged ${digest} (${spec.size} B) not readable: ${r.code}`);
            else v.check(r.digest === digest && r.length === spec.size, `acknowledged ${digest}: got ${r.length} B hashing to ${r.digest}`);
          }),
        );
      }
      conn.close();
      expect(await child.kill("SIGTERM")).toBe(0);
      const audit = await auditStore(dataDir);
      auditEntries += audit.entries;
      for (const b of audit.bad) v.check(false, `index entry without a verified body: ${b}`);
      v.check(audit.entries >= ackedHere.size, `epoch ${epoch}: ${audit.entries} index entries < ${ackedHere.size} acknowledged`);
      ctx.log(`epoch ${epoch}: ${ackedHere.size} acked, ${audit.entries} indexed, ${audit.bad.length} bad`);
      await rm(dataDir, { recursive: true, force: true });
    }
  } finally {
    await killAll();
    await rm(root, { recursive: true, force: true });
  }
  restartMs.sort((a, b) => a - b);
  const figures = {
    killPoints: KILLS,
    killsByKind: kinds,
    epochs: epoch,
    writers: WRITERS,
    putsAttempted: attempted,
    putsAcknowledged: acked,
    putsFailedByKill: failedPuts,
    oracleReads,
    wrongOrShortBodies: v.list.filter((x) => x.startsWith("acknowledged")).length,
    indexEntriesAudited: auditEntries,
    indexEntriesWithoutVerifiedBody: v.list.filter((x) => x.startsWith("index entry")).length,
    acknowledgedReadablePct: acked === 0 ? 0 : (100 * (oracleReads - v.list.filter((x) => x.startsWith("acknowledged")).length)) / oracleReads,
    startupsWithRecoveryEvents: recoveredEvents,
    restartMsP50: restartMs[Math.floor(restartMs.length / 2)] ?? 0,
  };
  ctx.record({ passed: v.list.length === 0 && acked > 0, figures, violations: v.list });
  ctx.log(JSON.stringify(figures));
  expect(v.list).toEqual([]);
  expect(acked).toBeGreaterThan(0);
});
