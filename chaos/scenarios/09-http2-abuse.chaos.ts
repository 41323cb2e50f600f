/**
 * Scenario 9 — HTTP/2 abuse on both listeners of a `granary serve` child, with raw frames:
 * rapid reset (10,000 HEADERS+RST_STREAM), CONTINUATION flood, PING and SETTINGS floods,
 * streams beyond max_concurrent_streams, a 256 KiB header list, invalid frames, and a reader
 * that opens a large Get with a zero window and never reads. A legitimate client runs all the
 * while. Oracle: the node never dies; the connection of every attack that must be refused is
 * closed (GOAWAY or close) within 1 s; RSS growth stays under 64 MiB; the legitimate client's
 * calls all succeed, and their p99 under attack stays within LEGIT_P99_FACTOR x the baseline.
 *
 * The baseline is measured in the same run, interleaved: before every attack a quiet window of
 * the same legitimate loop, so both sides see the same machine load (the suite shares 2 cores
 * with other work). Every window holds at least WINDOW_ROUNDS calls; the p99s compared are
 * over all quiet windows and over all attack windows (hundreds of calls each, so one scheduler
 * hiccup is not the p99). A baseline of a few ms would make 2x a few ms, below the noise of a
 * loaded VM, so the bound is never under LEGIT_P99_FLOOR_MS.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { ArtifactService, Kind } from "../../src/gen/granary/artifact/v1/artifact_pb.js";
import { connectPublic } from "../../src/transport/public-client.js";
import { makePki } from "../../test/helpers/mesh.js";
import { bodyBytes, putCasBody } from "../lib/artifacts.js";
import { chaosContext, Violations } from "../lib/context.js";
import { F, frame, grpcRequestHeaders, headerBlock, rawConnect, rst, settings, T, type RawConn } from "../lib/h2-frames.js";
import { scratch } from "../lib/nodes.js";
import { killAll, startNode } from "../lib/processes.js";
import { grpcFrame, lenField, rawCall, rawSession, varintField } from "../lib/raw-grpc.js";

const ctx = chaosContext("09-http2-abuse");
/** Measured rounds; round 0 before them is a warm-up whose own RSS growth is reported, not bounded. */
const ROUNDS = ctx.size(1, 5);
/** Legitimate p99 under attack may be this many times the quiet p99... */
const LEGIT_P99_FACTOR = 2;
/** ...but the bound is never below this (ms): a baseline of a few ms doubled is scheduler noise. */
const LEGIT_P99_FLOOR_MS = 50;
/** Legitimate calls in each quiet window, and at least in each attack window. */
const WINDOW_ROUNDS = 25;
afterAll(killAll);

interface Attack {
  readonly name: string;
  /** Must the server close this connection (within 1 s)? */
  readonly mustClose: boolean;
  run(c: RawConn, path: string, authority: string): Promise<void>;
}

/** Writes, then waits for the socket to drain or close; removes both listeners either way (a flood awaits thousands of times). */
const drainWrite = async (c: RawConn, b: Buffer): Promise<void> => {
  if (c.write(b) || c.socket.destroyed) return;
  await new Promise<void>((resolve) => {
    const done = (): void => {
      c.socket.off("drain", done);
      c.socket.off("close", done);
      resolve();
    };
    c.socket.once("drain", done);
    c.socket.once("close", done);
  });
};

const ATTACKS: Attack[] = [
  {
    name: "rapid reset (10,000 HEADERS+RST_STREAM)",
    mustClose: true,
    async run(c, path, authority) {
      const block = headerBlock(grpcRequestHeaders(path, authority));
      for (let i = 0; i < 10_000 && !c.socket.destroyed; i += 100) {
        const batch: Buffer[] = [];
        for (let k = 0; k < 100; k++) {
          const id = 2 * (i + k) + 1;
          batch.push(frame(T.HEADERS, F.END_HEADERS, id, block), rst(id));
        }
        await drainWrite(c, Buffer.concat(batch));
      }
    },
  },
  {
    name: "CONTINUATION flood (100,000 frames, no END_HEADERS)",
    mustClose: true,
    async run(c, path, authority) {
      await drainWrite(c, frame(T.HEADERS, 0, 1, headerBlock(grpcRequestHeaders(path, authority))));
      const junk = frame(T.CONTINUATION, 0, 1, headerBlock([["x-junk", "y".repeat(16)]]));
      for (let i = 0; i < 100_000 && !c.socket.destroyed; i += 500) await drainWrite(c, Buffer.concat(Array.from({ length: 500 }, () => junk)));
    },
  },
  {
    name: "PING flood (10,000)",
    mustClose: false,
    async run(c) {
      const ping = frame(T.PING, 0, 0, Buffer.alloc(8));
      for (let i = 0; i < 10_000 && !c.socket.destroyed; i += 500) await drainWrite(c, Buffer.concat(Array.from({ length: 500 }, () => ping)));
    },
  },
  {
    name: "SETTINGS flood (10,000)",
    mustClose: false,
    async run(c) {
      const s = settings([[4, 65535]]);
      for (let i = 0; i < 10_000 && !c.socket.destroyed; i += 500) await drainWrite(c, Buffer.concat(Array.from({ length: 500 }, () => s)));
    },
  },
  {
    name: "streams beyond the limit (1,000 open streams)",
    mustClose: true,
    async run(c, path, authority) {
      const block = headerBlock(grpcRequestHeaders(path, authority));
      for (let i = 0; i < 1000 && !c.socket.destroyed; i++) await drainWrite(c, frame(T.HEADERS, F.END_HEADERS, 2 * i + 1, block));
    },
  },
  {
    name: "256 KiB header list",
    mustClose: true,
    async run(c, path, authority) {
      const block = headerBlock([...grpcRequestHeaders(path, authority), ...Array.from({ length: 64 }, (_, i): [string, string] => [`x-big-${i}`, "z".repeat(4096)])]);
      // Split into 16 KiB frames: HEADERS then CONTINUATIONs.
      const parts: Buffer[] = [];
      for (let o = 0; o < block.length; o += 16_384) parts.push(block.subarray(o, o + 16_384));
      await drainWrite(c, frame(T.HEADERS, parts.length === 1 ? F.END_HEADERS : 0, 1, parts[0]!));
      for (let i = 1; i < parts.length; i++) await drainWrite(c, frame(T.CONTINUATION, i === parts.length - 1 ? F.END_HEADERS : 0, 1, parts[i]!));
    },
  },
  {
    name: "invalid frames (1,000 DATA frames on idle streams)",
    mustClose: true,
    async run(c) {
      for (let i = 0; i < 1000 && !c.socket.destroyed; i++) await drainWrite(c, frame(T.DATA, 0, 2 * i + 101, Buffer.alloc(8)));
    },
  },
];

async function rss(pid: number): Promise<number> {
  const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : 0;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

function p99(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * 0.99))] ?? 0;
}

it("abusive HTTP/2 connections are closed, the node survives and keeps serving", async () => {
  const v = new Violations();
  const dir = await scratch("h2abuse");
  try {
    const pki = await makePki(join(dir.path, "pki"));
    const a = await pki.cert("a");
    const c = await pki.cert("c");
    const child = await startNode(["--data-dir", join(dir.path, "a"), "--peer-listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0", "--tls-ca", pki.ca, "--tls-cert", a.cert, "--tls-key", a.key]);
    await child.waitReady();
    const opsAddress = String((await child.event((e) => e["event"] === "listening", "listening"))["opsAddress"]);
    /** The node's worst event-loop delay since the last call (prom-client resets it on each scrape), ms. */
    const loopMaxMs = async (): Promise<number> => {
      const text = await (await fetch(`http://${opsAddress}/metrics`)).text();
      const m = /^nodejs_eventloop_lag_max_seconds\s+([0-9.e+-]+)/m.exec(text);
      return m ? Math.round(Number(m[1]) * 1000) : -1;
    };
    const pid = child.proc.pid!;
    const publicPort = Number(child.publicAddress.split(":").pop());
    const peerPort = Number(child.peerAddress!.split(":").pop());
    const peerTls = { ca: await readFile(pki.ca), cert: await readFile(c.cert), key: await readFile(c.key), servername: "localhost" };
    const conn = connectPublic({ server: child.publicAddress });
    const big = await putCasBody(conn, "default", bodyBytes({ seed: 1, size: 32 << 20 }));

    // Legitimate traffic: Stat on the public listener and Hello on the peer listener, in a loop.
    const peerLegit = await rawSession(child.peerAddress!, peerTls);
    peerLegit.on("error", () => {});
    const legit = { ok: 0, failed: 0, latencies: [] as number[], failures: [] as string[] };
    const legitRound = async (): Promise<void> => {
      const t0 = performance.now();
      try {
        await conn.client(ArtifactService).stat({ refs: [{ namespace: "default", kind: Kind.CAS, key: big }] });
        const out = await rawCall(peerLegit, "/granary.replication.v1.ReplicationService/Hello", grpcFrame(new Uint8Array(0)), 5000);
        if (out.status !== 0) throw new Error(`Hello: ${JSON.stringify(out)}`);
        legit.ok++;
        legit.latencies.push(performance.now() - t0);
      } catch (e) {
        legit.failed++;
        if (legit.failures.length < 5) legit.failures.push((e as Error).message);
      }
    };
    for (let i = 0; i < 20; i++) await legitRound(); // warm-up (JIT, connections), not counted
    legit.latencies.length = 0;
    const quiet: number[] = [];
    const underAttack: number[] = [];
    /** A quiet window: WINDOW_ROUNDS legitimate calls with no attack running. */
    const quietLoopMaxMs: number[] = [];
    const quietWindow = async (): Promise<void> => {
      await loopMaxMs();
      const before = legit.latencies.length;
      for (let i = 0; i < WINDOW_ROUNDS; i++) await legitRound();
      quiet.push(...legit.latencies.slice(before));
      quietLoopMaxMs.push(await loopMaxMs());
    };
    // RSS: a node fresh from start grows ~45 MiB on first use of its paths (TLS sessions, handler
    // code, heap growth; measured per attack, seed 20261125), then levels off (+11, +8, +5, +2 MiB
    // in the next rounds). The bound is on growth over the measured rounds, from the end of a
    // warm-up round of every attack on both listeners: a leak per attack shows there.
    const rssCold = await rss(pid);
    let rssBefore = rssCold;
    let rssMax = rssCold;

    const results: Array<{ listener: string; attack: string; round: number; closedAfterMs: number | null; how: string; framesReceived: Record<number, number>; legitCalls: number; legitP99Ms: number; nodeLoopMaxMs: number; rssMib: number }> = [];
    for (let round = 0; round <= ROUNDS; round++) {
      if (round === 1) rssBefore = rssMax = await rss(pid);
      for (const listener of ["public", "peer"] as const) {
        for (const attack of ATTACKS) {
          await quietWindow();
          await loopMaxMs();
          const rc = await rawConnect(listener === "public" ? publicPort : peerPort, listener === "peer" ? peerTls : undefined);
          rc.socket.on("error", () => {});
          const before = legit.latencies.length;
          let legitRunning = true;
          // Runs while the attack does, and for at least WINDOW_ROUNDS calls.
          const legitLoop = (async () => {
            for (let i = 0; i < 10_000 && (legitRunning || i < WINDOW_ROUNDS); i++) await legitRound();
          })();
          const t0 = Date.now();
          const path = "/granary.artifact.v1.ArtifactService/Stat";
          await attack.run(rc, path, "127.0.0.1").catch(() => {});
          const closed = await Promise.race([rc.closed(t0), new Promise<undefined>((r) => setTimeout(() => r(undefined), 3000))]);
          legitRunning = false;
          await legitLoop;
          const rssNow = await rss(pid);
          rssMax = Math.max(rssMax, rssNow);
          const window = legit.latencies.slice(before);
          underAttack.push(...window);
          results.push({ listener, attack: attack.name, round, closedAfterMs: closed?.afterMs ?? null, how: closed?.how ?? "still open after 3 s", framesReceived: { ...rc.received.frames }, legitCalls: window.length, legitP99Ms: Math.round(p99(window)), nodeLoopMaxMs: await loopMaxMs(), rssMib: Math.round(rssNow / 2 ** 20) });
          rc.destroy();
          if (attack.mustClose) v.check(closed !== undefined && closed.afterMs <= 1000, `${listener}: ${attack.name}: connection ${closed ? `closed after ${closed.afterMs} ms` : "not closed"}`);
          v.check(child.proc.exitCode === null && child.proc.signalCode === null, `${listener}: node died during ${attack.name}`);
        }
        // Zero-window reader: a Get of 32 MiB with a 0 initial window, never read.
        await quietWindow();
        await loopMaxMs();
        const rc = await rawConnect(listener === "public" ? publicPort : peerPort, listener === "peer" ? peerTls : undefined);
        rc.socket.on("error", () => {});
        rc.write(settings([[4, 0]]));
        const getReq = Buffer.concat([lenField(1, Buffer.from("default")), varintField(2, 1n), lenField(3, Buffer.from(big))]);
        rc.write(frame(T.HEADERS, F.END_HEADERS, 1, headerBlock(grpcRequestHeaders("/granary.artifact.v1.ArtifactService/Get", "127.0.0.1"))));
        rc.write(frame(T.DATA, F.END_STREAM, 1, grpcFrame(getReq)));
        rc.socket.pause(); // never read
        const before = legit.latencies.length;
        for (let i = 0; i < Math.max(40, WINDOW_ROUNDS); i++) await legitRound();
        const rssNow = await rss(pid);
        rssMax = Math.max(rssMax, rssNow);
        const window = legit.latencies.slice(before);
        underAttack.push(...window);
        results.push({ listener, attack: "zero-window reader (32 MiB Get, never read)", round, closedAfterMs: null, how: "held open (send deadline resets the stream later)", framesReceived: {}, legitCalls: window.length, legitP99Ms: Math.round(p99(window)), nodeLoopMaxMs: await loopMaxMs(), rssMib: Math.round(rssNow / 2 ** 20) });
        rc.destroy();
      }
    }
    v.check(legit.failed === 0, `${legit.failed} legitimate calls failed: ${legit.failures.join("; ")}`);
    const rssGrowth = rssMax - rssBefore;
    v.check(rssGrowth <= 64 << 20, `RSS grew by ${rssGrowth} bytes (> 64 MiB)`);
    v.check(child.proc.exitCode === null, "node not running at the end");
    peerLegit.close();
    conn.close();
    const baselineP99 = p99(quiet);
    const attackP99 = p99(underAttack);
    const legitBoundMs = Math.max(LEGIT_P99_FACTOR * baselineP99, LEGIT_P99_FLOOR_MS);
    v.check(attackP99 <= legitBoundMs, `legitimate p99 under attack ${attackP99.toFixed(1)} ms > bound ${legitBoundMs.toFixed(1)} ms (${LEGIT_P99_FACTOR} x quiet p99 ${baselineP99.toFixed(1)} ms, floor ${LEGIT_P99_FLOOR_MS} ms)`);
    const figures = {
      rounds: ROUNDS,
      results,
      legitimateCalls: legit.ok,
      legitimateFailures: legit.failed,
      legitimateQuietCalls: quiet.length,
      legitimateQuietP50Ms: round1(median(quiet)),
      legitimateBaselineP99Ms: round1(baselineP99),
      legitimateUnderAttackCalls: underAttack.length,
      legitimateUnderAttackP50Ms: round1(median(underAttack)),
      legitimateP99MsUnderAttack: round1(attackP99),
      legitimateP99BoundMs: round1(legitBoundMs),
      legitimateP99Ratio: round1(attackP99 / baselineP99),
      // The node's own worst event-loop delay per window (prom-client, 10 ms resolution): what a
      // handler-start storm costs every client, separate from the load of the machine.
      nodeLoopMaxMsQuiet: Math.max(...quietLoopMaxMs),
      nodeLoopMaxMsUnderAttack: Math.max(...results.map((r) => r.nodeLoopMaxMs)),
      rssColdBytes: rssCold,
      warmupGrowthBytes: rssBefore - rssCold,
      rssBeforeBytes: rssBefore,
      rssMaxBytes: rssMax,
      rssGrowthBytes: rssGrowth,
      crashes: 0,
    };
    ctx.record({ passed: v.list.length === 0, figures, violations: v.list, notes: [`Legitimate p99 under attack (all attack windows) <= max(${LEGIT_P99_FACTOR} x p99 of the interleaved quiet windows, ${LEGIT_P99_FLOOR_MS} ms) is asserted; each window's p99 (its slowest call or so) is reported.`] });
    ctx.log(JSON.stringify(figures));
    expect(await child.kill("SIGTERM")).toBe(0);
  } finally {
    await killAll();
    await dir.cleanup();
  }
  expect(v.list).toEqual([]);
});
