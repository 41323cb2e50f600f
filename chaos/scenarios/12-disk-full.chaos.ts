/**
 * Scenario 12 — disk full. A node's data dir lives on a 64 MiB tmpfs mounted for the scenario
 * (root only; skipped with the reason printed otherwise). A filler file leaves a little room;
 * 64 writers push 8 KiB–2 MiB bodies until the filesystem is full (segment appends and index
 * commits hit ENOSPC wherever they are). Oracle: failed writes end in RESOURCE_EXHAUSTED
 * promptly, every acknowledged put reads back byte for byte while the disk is full, no index
 * entry lacks a verified body, and once the filler is deleted writes succeed again without a
 * restart; after a restart the store is still consistent.
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, rmdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import type { GranaryNode } from "../../src/node/granary-node.js";
import { publicClient } from "../../test/helpers/mesh.js";
import { auditOpenStore, auditStore, bodyBytes, buildSize, codeOf, digestOf, getCas, putCasBody, type BodySpec } from "../lib/artifacts.js";
import { chaosContext, Violations } from "../lib/context.js";
import { captureLog } from "../lib/capture-log.js";
import { startSingleNode } from "../lib/nodes.js";

const ctx = chaosContext("12-disk-full");
const WRITERS = 64;
const FS_BYTES = 64 << 20;
const ROUNDS = ctx.size(2, 10);
const NS = "full";
/** A put or read with no answer for this long is reported as hung. */
const ANSWER_MS = 60_000;

let mountPoint: string | undefined;
let node: GranaryNode | undefined;
afterAll(async () => {
  await node?.close().catch(() => {});
  if (mountPoint) {
    try {
      execFileSync("umount", [mountPoint]);
    } catch {
      // not mounted
    }
    await rmdir(mountPoint).catch(() => {});
  }
});

it("a full disk refuses writes with RESOURCE_EXHAUSTED, keeps reads, indexes no partial body, and recovers without restart", async (t) => {
  if (process.getuid?.() !== 0) {
    const reason = "not root: cannot mount a tmpfs for ENOSPC (run make chaos as root)";
    ctx.log(`SKIPPED: ${reason}`);
    ctx.record({ passed: true, figures: { skipped: true }, violations: [], notes: [reason] });
    t.skip();
    return;
  }
  const v = new Violations();
  const rng = ctx.rng;
  mountPoint = await mkdtemp(join(tmpdir(), "granary-chaos-tmpfs-"));
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${FS_BYTES}`, "tmpfs", mountPoint], { stdio: "pipe" });
  } catch (e) {
    // Root without CAP_SYS_ADMIN (an unprivileged container) cannot mount either.
    const reason = `cannot mount a tmpfs (${String((e as { stderr?: Buffer }).stderr ?? (e as Error).message).trim()}): run make chaos as root with CAP_SYS_ADMIN`;
    await rmdir(mountPoint).catch(() => {});
    mountPoint = undefined;
    ctx.log(`SKIPPED: ${reason}`);
    ctx.record({ passed: true, figures: { skipped: true }, violations: [], notes: [reason] });
    t.skip();
    return;
  }
  const dataDir = join(mountPoint, "data");
  const filler = join(mountPoint, "filler");
  const logs = captureLog("warn");
  node = await startSingleNode(dataDir, {}, { log: logs.log });
  const conn = publicClient(node);
  const acked = new Map<string, BodySpec>();
  const codes: Record<string, number> = {};
  const failLatencyMs: number[] = [];
  const resumeMs: number[] = [];
  let puts = 0;
  let hung = 0;
  for (let round = 0; round < ROUNDS; round++) {
    // Leave 8-24 MiB free for this round.
    const df = (): number => Number(execFileSync("df", ["-B1", "--output=avail", mountPoint!]).toString().split("\n")[1]);
    const leave = rng.int(8 << 20, 24 << 20);
    await writeFile(filler, Buffer.alloc(Math.max(0, df() - leave)));
    let full = 0;
    const writer = async (): Promise<void> => {
      for (let i = 0; i < 200 && full < WRITERS * 2; i++) {
        const spec = { seed: rng.u32(), size: buildSize(rng.next()) };
        // The body is made and hashed before the clock starts: the client's own work, not the put's.
        const body = bodyBytes(spec);
        const digest = digestOf(body);
        const t0 = Date.now();
        puts++;
        // Bounded: a put that never answers is a hang to report, not a run that never ends (seed 4
        // hung here: our client's HTTP/2 session refused its own response headers past Node's
        // 10 MB memory credit; fixed in tuned-session-manager.ts).
        const answer = AbortSignal.timeout(ANSWER_MS);
        try {
          const d = await putCasBody(conn, NS, body, answer, digest);
          acked.set(d, spec);
        } catch (e) {
          if (answer.aborted) {
            hung++;
            v.check(false, `round ${round}: a put on a full disk got no answer within ${ANSWER_MS} ms`);
            return;
          }
          const code = codeOf(e);
          codes[code] = (codes[code] ?? 0) + 1;
          failLatencyMs.push(Date.now() - t0);
          if (code === "ResourceExhausted") full++;
          else {
            const cause = logs.events.filter((x) => x["code"] === code).map((x) => String(x["cause"])).pop();
            v.check(false, `round ${round}: a write on a full disk failed with ${code}: ${(e as Error).message}; node log: ${cause}`);
          }
        }
      }
    };
    await Promise.all(Array.from({ length: WRITERS }, writer));
    if (hung > 0) break; // the node stopped answering: report it rather than wait on every read
    v.check(full > 0, `round ${round}: the disk never filled`);

    // Reads keep working while the disk is full.
    for (const [d, spec] of acked) {
      const r = await getCas(conn, NS, d, AbortSignal.timeout(ANSWER_MS));
      v.check(r.kind === "ok" && r.digest === d && r.length === spec.size, `round ${round}: acknowledged ${d} reads as ${JSON.stringify(r)} on a full disk`);
    }
    const audit = await auditOpenStore(node.store);
    for (const b of audit.bad) v.check(false, `round ${round}: index entry without a verified body: ${b}`);

    // Free the space: writes succeed again, without a restart.
    await rm(filler);
    const freedAt = Date.now();
    let ok = false;
    for (let i = 0; i < 200 && !ok && Date.now() - freedAt < 30_000; i++) {
      const spec = { seed: rng.u32(), size: rng.int(8 << 10, 256 << 10) };
      try {
        acked.set(await putCasBody(conn, NS, bodyBytes(spec), AbortSignal.timeout(ANSWER_MS)), spec);
        ok = true;
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    resumeMs.push(ok ? Date.now() - freedAt : -1);
    v.check(ok && Date.now() - freedAt <= 5000, `round ${round}: writes did not resume within 5 s of freeing space (${Date.now() - freedAt} ms)`);
    ctx.log(`round ${round}: ${acked.size} acked so far, ${full} RESOURCE_EXHAUSTED, resumed in ${resumeMs[resumeMs.length - 1]} ms`);
    // Make room for the next round: the store is bounded by the tmpfs; drop everything.
    if (round < ROUNDS - 1) {
      conn.close();
      await node.close();
      node = undefined;
      await rm(dataDir, { recursive: true, force: true });
      node = await startSingleNode(dataDir, {}, { log: logs.log });
      Object.assign(conn, publicClient(node));
      acked.clear();
    }
  }
  conn.close();
  let entriesAfterRestart = -1;
  if (hung > 0) {
    // A node whose puts hang may not close either: bounded, and no audit of a locked data dir.
    const closing = node.close();
    node = undefined;
    await Promise.race([closing, new Promise((r) => setTimeout(r, 30_000).unref())]);
  } else {
    await node.close();
    node = undefined;
    const finalAudit = await auditStore(dataDir);
    for (const b of finalAudit.bad) v.check(false, `after restart: ${b}`);
    v.check(finalAudit.entries >= acked.size, `after restart ${finalAudit.entries} entries < ${acked.size} acknowledged`);
    entriesAfterRestart = finalAudit.entries;
  }
  failLatencyMs.sort((a, b) => a - b);
  // "RESOURCE_EXHAUSTED within 1 s": asserted at full size (make chaos); the smoke run in CI
  // reports it (a 2-core CI VM's load sets most of a p99 of a few hundred ms).
  const refusalP99 = failLatencyMs[Math.floor(failLatencyMs.length * 0.99)] ?? 0;
  if (ctx.mode === "full") v.check(refusalP99 <= 1000, `refusal p99 ${refusalP99} ms > 1,000 ms`);
  const figures = {
    filesystemBytes: FS_BYTES,
    rounds: ROUNDS,
    writers: WRITERS,
    puts,
    failureCodes: codes,
    failedWriteLatencyMsP50: failLatencyMs[Math.floor(failLatencyMs.length / 2)] ?? 0,
    failedWriteLatencyMsP99: refusalP99,
    failedWriteLatencyMsMax: failLatencyMs[failLatencyMs.length - 1] ?? 0,
    writesResumedAfterMs: resumeMs,
    lastRoundAcknowledged: acked.size,
    indexEntriesAfterRestart: entriesAfterRestart,
    hungRequests: hung,
    indexEntriesWithoutVerifiedBody: v.list.filter((x) => x.includes("index entry") || x.includes("after restart")).length,
  };
  ctx.record({ passed: v.list.length === 0, figures, violations: v.list });
  ctx.log(JSON.stringify(figures));
  expect(v.list).toEqual([]);
});
