/**
 * Scenario 5 — body streams cut mid-body during a bootstrap. Node B fills itself from node A
 * through a TCP fault proxy while bodies are cut, at a random chunk of a random body, in every
 * way the issue names:
 *   - stream error: the serving handler fails (failpoint error; gRPC error status mid-stream);
 *   - stream reset: A sends RST_STREAM (INTERNAL_ERROR) on the body's stream;
 *   - GOAWAY: A ends the whole connection with GOAWAY (INTERNAL_ERROR) and closes it;
 *   - connection reset: the proxy resets the TCP connection after a random number of bytes;
 *   - peer killed: the proxy closes both sides with FIN after a random number of bytes, what
 *     the kernel of a killed peer process sends (a kill with unread bytes is the reset above);
 *   - short OK: a lying peer ends a body stream OK after fewer bytes than its header declared
 *     (wrapped client on B).
 * Oracle: B ends Ready with every artifact, byte for byte; every index entry on B has a verified
 * body (0 partial applies); every cut is logged with its offset (A logs peer.body_cut at the
 * byte it stopped; B logs the body it lost or resumed with the byte it was cut at); bytes
 * fetched again <= 2 x bytes cut.
 */
import { constants as h2 } from "node:http2";
import { join } from "node:path";
import type { ContextValues } from "@connectrpc/connect";
import { afterAll, expect, it } from "vitest";
import type { ReadBodiesResponse } from "../../src/gen/granary/replication/v1/replication_pb.js";
import type { GranaryNode } from "../../src/node/granary-node.js";
import { kHttp2Stream } from "../../src/transport/connect-handler.js";
import { createGrpcJsPeerClient } from "../../src/transport/peer-client-grpcjs.js";
import type { PeerClient } from "../../src/transport/peer-client.js";
import { Failpoints } from "../../src/util/failpoints.js";
import { makePki, peerTlsPem, publicClient, startMeshNode, waitForArtifacts, waitReady } from "../../test/helpers/mesh.js";
import { auditOpenStore, bodyBytes, buildSize, getCas, putCasBody } from "../lib/artifacts.js";
import { captureLog } from "../lib/capture-log.js";
import { chaosContext, Violations } from "../lib/context.js";
import { startFaultProxy, type FaultProxy } from "../lib/fault-proxy.js";
import { scratch } from "../lib/nodes.js";

const ctx = chaosContext("05-cut-streams");
const CUTS = ctx.size(24, 100);
const ARTIFACTS = ctx.size(120, 600);
const LARGE = ctx.size(6, 24);
const NS = "cuts";

const cleanups: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

type CutKind = "stream-error" | "rst-stream" | "goaway" | "connection-reset" | "peer-closed" | "short-ok";
/** Cuts made on A's side at a chunk (the rest: the lying client on B). */
const SERVER_KINDS = ["stream-error", "rst-stream", "goaway", "connection-reset", "peer-closed"] as const;

it(`bootstrap completes through ${CUTS} mid-body cuts with 0 partial applies`, async () => {
  const v = new Violations();
  const rng = ctx.rng;
  const dir = await scratch("cuts");
  cleanups.push(dir.cleanup);
  const pki = await makePki(join(dir.path, "pki"));
  const proxy: FaultProxy = await startFaultProxy();
  cleanups.push(() => proxy.close());
  const cuts: Array<{ kind: CutKind; key: string; offset: number }> = [];
  // Each kind gets a sixth of the cuts (short OK the rest).
  const each = Math.floor(CUTS / 6);
  const budget: Record<CutKind, number> = { "stream-error": each, "rst-stream": each, goaway: each, "connection-reset": each, "peer-closed": each, "short-ok": CUTS - 5 * each };
  const left = (): number => Object.values(budget).reduce((x, y) => x + y, 0);
  const fpA = new Failpoints();
  const logA = captureLog();
  const logB = captureLog();

  const a: GranaryNode = await startMeshNode({ name: "a", pki, root: dir.path, config: { advertiseAddress: `https://127.0.0.1:${proxy.port}` }, hooks: { failpoints: fpA, processMetrics: false }, log: logA.log });
  cleanups.push(() => a.close());
  proxy.setTarget(a.peerListener!.address().port);

  // Data on A: build-like bodies plus a few large ones (several 1 MiB chunks each).
  const want = new Map<string, number>();
  const conn = publicClient(a);
  const specs = Array.from({ length: ARTIFACTS }, (_, i) => ({ seed: rng.u32(), size: i < LARGE ? rng.int(4 << 20, 12 << 20) : buildSize(rng.next()) }));
  for (let i = 0; i < specs.length; i += 16) {
    await Promise.all(specs.slice(i, i + 16).map(async (s) => want.set(await putCasBody(conn, NS, bodyBytes(s)), s.size)));
  }
  conn.close();
  const totalBytes = [...want.values()].reduce((x, y) => x + y, 0);

  // Cuts on the serving side, at a random chunk: fail the stream, RST it, GOAWAY the connection,
  // or arm a TCP reset / FIN close a random number of bytes further.
  let turn = 0;
  fpA.set("peer.read-bodies.chunk", (c) => {
    if (rng.next() > 0.08) return;
    // The kinds take turns, so each is used even if the bootstrap ends before the budget.
    const kinds = SERVER_KINDS.filter((k) => budget[k] > 0);
    if (kinds.length === 0) return;
    const kind = kinds[turn++ % kinds.length]!;
    const key = String(c["key"]);
    const offset = Number(c["offset"]);
    const stream = (c["values"] as ContextValues | undefined)?.get(kHttp2Stream);
    switch (kind) {
      case "stream-error":
        budget[kind]--;
        cuts.push({ kind, key, offset });
        throw new Error(`chaos: stream cut at byte ${offset} of ${key}`);
      case "rst-stream":
      case "goaway":
        if (stream === undefined || stream.destroyed) return;
        budget[kind]--;
        cuts.push({ kind, key, offset });
        if (kind === "rst-stream") stream.close(h2.NGHTTP2_INTERNAL_ERROR);
        // destroy(error, code) sends a last GOAWAY with that code, then closes the connection.
        else stream.session?.destroy(new Error(`chaos: GOAWAY at byte ${offset} of ${key}`), h2.NGHTTP2_INTERNAL_ERROR);
        // The handler stops at this byte (and logs peer.body_cut with it).
        throw new Error(`chaos: ${kind} at byte ${offset} of ${key}`);
      case "connection-reset":
      case "peer-closed": {
        budget[kind]--;
        const after = rng.int(1, 2 << 20);
        cuts.push({ kind, key, offset: offset + after });
        if (kind === "connection-reset") proxy.cutAfter(after);
        else proxy.closeAfter(after);
        return;
      }
    }
  });

  // The lying peer, on B's side of the wire: a body stream that ends OK early.
  const tls = await peerTlsPem(pki, "b");
  const factory = (address: string, serverName?: string): PeerClient => {
    const inner = createGrpcJsPeerClient(address, { tls, idleTimeoutMs: 10_000 }, serverName);
    return {
      address: inner.address,
      hello: (r, s) => inner.hello(r, s),
      follow: (r, s) => inner.follow(r, s),
      listManifests: (r, s) => inner.listManifests(r, s),
      counters: () => inner.counters(),
      close: () => inner.close(),
      readBodies: (r, s) => ({
        async *[Symbol.asyncIterator](): AsyncGenerator<ReadBodiesResponse> {
          let lieAt: number | undefined;
          let sent = 0;
          let key = "";
          // A resumed stream starts at the header's offset; B logs where the body was cut.
          let base = 0;
          for await (const f of inner.readBodies(r, s)) {
            if (f.frame.case === "header") {
              sent = 0;
              base = Number(f.frame.value.offset);
              key = f.frame.value.manifest?.key ?? "";
              const len = Number(f.frame.value.length);
              lieAt = budget["short-ok"] > 0 && len > 1 && rng.next() < 0.15 ? rng.int(0, len - 1) : undefined;
              // The budget is spent when the lie is decided (concurrent streams would overspend it
              // otherwise); the stream may still die of another cut first.
              if (lieAt !== undefined) budget["short-ok"]--;
            } else if (f.frame.case === "chunk" && lieAt !== undefined && sent + f.frame.value.length > lieAt) {
              if (lieAt > sent) yield { ...f, frame: { case: "chunk", value: f.frame.value.subarray(0, lieAt - sent) } } as ReadBodiesResponse;
              cuts.push({ kind: "short-ok", key, offset: base + lieAt });
              return; // ends the stream "OK", short
            }
            if (f.frame.case === "chunk") sent += f.frame.value.length;
            yield f;
          }
        },
      }),
    };
  };

  const started = Date.now();
  const b = await startMeshNode({
    name: "b",
    pki,
    root: dir.path,
    peers: [`https://127.0.0.1:${proxy.port}`],
    hooks: { peerClientFactory: factory, replication: { retry: { initialMs: 100, maxMs: 2000, multiplier: 2, jitter: 0.5 } }, processMetrics: false },
    log: logB.log,
  });
  cleanups.push(() => b.close());
  const limit = AbortSignal.timeout(ctx.size(240_000, 900_000));
  await waitReady(b, limit);
  await waitForArtifacts(b, NS, [...want.keys()], limit);
  const bootstrapMs = Date.now() - started;
  fpA.clear("peer.read-bodies.chunk");

  // Oracle: every artifact on B byte for byte, every index entry verified.
  const connB = publicClient(b);
  let oracleReads = 0;
  for (const [digest, size] of want) {
    const r = await getCas(connB, NS, digest);
    oracleReads++;
    v.check(r.kind === "ok" && r.digest === digest && r.length === size, `B serves ${digest} as ${JSON.stringify(r)}`);
  }
  connB.close();
  const audit = await auditOpenStore(b.store);
  for (const x of audit.bad) v.check(false, `partial apply on B: ${x}`);
  v.check(audit.entries === want.size, `B indexes ${audit.entries} artifacts, A had ${want.size}`);

  // Every cut logged with its offset: A for the serving-side cuts, B for the lies.
  const cutEvents = logA.events.filter((e) => e["event"] === "peer.body_cut");
  for (const c of cuts.filter((x) => x.kind === "stream-error" || x.kind === "rst-stream" || x.kind === "goaway")) {
    v.check(cutEvents.some((e) => e["key"] === c.key && e["offset"] === c.offset), `${c.kind} of ${c.key} at ${c.offset} not logged by A with its offset`);
  }
  const failedOnB = logB.events.filter((e) => e["event"] === "replication.body_failed");
  const resumedOnB = logB.events.filter((e) => e["event"] === "replication.body_resumed");
  for (const c of cuts.filter((x) => x.kind === "short-ok")) {
    v.check(
      [...failedOnB, ...resumedOnB].some((e) => e["key"] === c.key && String(e["cause"]).includes(`ended OK at byte ${c.offset} of`)),
      `short OK stream of ${c.key} at ${c.offset} not logged by B with its offset`,
    );
  }
  // B's side of every cut: a lost body says where it was cut; a resumed one, where it resumed.
  const cutOnB = failedOnB.filter((e) => /cut at byte \d+ of|ended OK at byte \d+ of/.test(String(e["cause"]))).length + resumedOnB.filter((e) => Number.isInteger(e["offset"])).length;
  const byKind = (k: CutKind): number => cuts.filter((c) => c.kind === k).length;
  // A reset or close may land between bodies or after A had written a whole body into the
  // windows; when it cut a body, one side or the other logged where.
  const proxyCuts = byKind("connection-reset") + byKind("peer-closed");
  v.check(proxyCuts === 0 || cutEvents.some((e) => e["callerGone"] === true) || cutOnB > 0, "connection resets and closes left no cut logged with its offset on either side");
  for (const k of ["stream-error", "rst-stream", "goaway", "connection-reset", "peer-closed", "short-ok"] as const) v.check(byKind(k) > 0, `no ${k} cut happened`);
  v.check(cuts.length >= Math.min(CUTS, 1), `only ${cuts.length} cuts happened`);

  const link = b.replication!.allLinks()[0]!;
  const bytesFetched = link.stats.bytesFetched;
  const bytesCutServer = cutEvents.reduce((n, e) => n + Number(e["offset"]), 0);
  const bytesCutLies = cuts.filter((c) => c.kind === "short-ok").reduce((n, c) => n + c.offset, 0);
  const figures = {
    artifacts: want.size,
    totalBytes,
    cutsPlanned: CUTS,
    cutsInjected: cuts.length,
    cutsByKind: Object.fromEntries((["stream-error", "rst-stream", "goaway", "connection-reset", "peer-closed", "short-ok"] as const).map((k) => [k, byKind(k)])),
    cutsNotUsed: left(),
    proxyResets: proxy.stats.cuts,
    proxyFinCloses: proxy.stats.closes,
    bodiesResumedOnB: resumedOnB.length,
    // What B's grpc-js said about the cuts (the cause chains of lost and resumed bodies).
    causesOnB: Object.fromEntries(
      [["GOAWAY (session closed with a code)", /GOAWAY|Session closed with error code/i], ["RST_STREAM", /RST_STREAM/i], ["ECONNRESET", /ECONNRESET/], ["ended OK short", /ended OK at byte/], ["stream error status", /chaos: stream cut/]].map(([name, re]) => [
        name as string,
        [...failedOnB, ...resumedOnB].filter((e) => (re as RegExp).test(String(e["cause"]))).length,
      ]),
    ),
    serverCutEventsLogged: cutEvents.length,
    bodyFailuresLoggedOnB: failedOnB.length,
    bodyCutsWithOffsetLoggedOnB: cutOnB,
    partialApplies: audit.bad.length,
    oracleReads,
    bootstrapMs,
    bytesFetched,
    retriedBytes: Math.max(0, bytesFetched - totalBytes),
    bytesCut: bytesCutServer + bytesCutLies,
    retriedOverCut: bytesCutServer + bytesCutLies === 0 ? 0 : Math.max(0, bytesFetched - totalBytes) / (bytesCutServer + bytesCutLies),
    passes: link.stats.passes,
  };
  v.check(figures.retriedBytes <= 2 * figures.bytesCut, `bytes fetched again ${figures.retriedBytes} > 2 x bytes cut ${figures.bytesCut}`);
  ctx.record({ passed: v.list.length === 0, figures, violations: v.list });
  // B's replication log (passes, failures with their causes, resumes), to diagnose the figures.
  ctx.attach("b-replication.log", `${logB.events.filter((e) => String(e["event"]).startsWith("replication.")).map((e) => JSON.stringify(e)).join("\n")}\n`);
  ctx.log(JSON.stringify(figures));
  expect(v.list).toEqual([]);
});
