/**
 * Scenario 10 — hostile protobuf, sent raw (node:http2, hand-made gRPC frames) to every RPC of
 * both listeners of a `granary serve` child: random bytes, crafted fields (uint64 above 2^53 and
 * 2^64, 11-byte varints, lengths past the end, deep group nesting, invalid wire types, field 0,
 * empty/huge/path-like strings, nested garbage), and lying frames (length prefix larger than
 * the message, 0xFFFFFFFF, compressed flag without grpc-encoding, two messages on a unary call,
 * a cut prefix). The peer listener is called with a valid mesh certificate, so the decoders and
 * handlers behind the trust check are what is exercised. Oracle: the process never dies, every
 * call gets a gRPC status (never UNKNOWN, never a stack trace), memory stays bounded, the store
 * is unchanged unless a Put was answered OK, and a legitimate client is served afterwards.
 */
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, expect, it } from "vitest";
import { NodeService } from "../../src/gen/granary/node/v1/node_pb.js";
import { connectPublic } from "../../src/transport/public-client.js";
import { makePki } from "../../test/helpers/mesh.js";
import { bodyBytes, putCasBody } from "../lib/artifacts.js";
import { chaosContext, Violations } from "../lib/context.js";
import { scratch } from "../lib/nodes.js";
import { killAll, startNode } from "../lib/processes.js";
import { grpcFrame, lenField, rawCall, rawSession, tag, varintField } from "../lib/raw-grpc.js";

const ctx = chaosContext("10-hostile-protobuf");
const RUNS_PER_RPC = ctx.size(300, 10_000);
const CALL_TIMEOUT_MS = 800;
/** OK (a valid message), CANCELLED/DEADLINE_EXCEEDED (streams cut by the call's timeout), INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED (size limits), FAILED_PRECONDITION (cursors), OUT_OF_RANGE, UNIMPLEMENTED (compression), INTERNAL (undecodable message, as grpc-go/java). Never UNKNOWN, UNAVAILABLE, DATA_LOSS. */
const PROPER = new Set([0, 1, 3, 4, 5, 7, 8, 9, 11, 12, 13]);

const PUBLIC_RPCS = [
  "/granary.artifact.v1.ArtifactService/Put",
  "/granary.artifact.v1.ArtifactService/Get",
  "/granary.artifact.v1.ArtifactService/Stat",
  "/granary.artifact.v1.ArtifactService/FindMissing",
  "/granary.node.v1.NodeService/GetStatus",
  "/granary.node.v1.NodeService/WatchStatus",
  "/grpc.health.v1.Health/Check",
];
const PEER_RPCS = [
  "/granary.replication.v1.ReplicationService/Hello",
  "/granary.replication.v1.ReplicationService/Follow",
  "/granary.replication.v1.ReplicationService/ListManifests",
  "/granary.replication.v1.ReplicationService/ReadBodies",
];

afterAll(killAll);

const HOSTILE_STRINGS = ["", "../../etc/passwd", "a/../b", "/abs/path", "%2F..%2F", "a\u0000b", "\u202eevil", "blobs/", "uploads/x", "__proto__", "constructor", "x".repeat(70_000), "é".repeat(5000)];
const BIG = [0n, 1n, (1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n, 1n << 63n, (1n << 64n) - 1n, 1n << 64n, 1n << 70n];

const fieldArb: fc.Arbitrary<Buffer> = fc.letrec<{ field: Buffer; msg: Buffer }>((tie) => ({
  field: fc.oneof(
    fc.tuple(fc.integer({ min: 1, max: 8 }), fc.oneof(fc.constantFrom(...BIG), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }))).map(([f, v]) => varintField(f, v)),
    fc.tuple(fc.integer({ min: 1, max: 8 }), fc.oneof(fc.constantFrom(...HOSTILE_STRINGS), fc.string({ maxLength: 300 }))).map(([f, s]) => lenField(f, Buffer.from(s, "utf8"))),
    fc.tuple(fc.integer({ min: 1, max: 8 }), fc.uint8Array({ maxLength: 64 }), fc.integer({ min: 1, max: 1 << 30 })).map(([f, p, extra]) => lenField(f, p, p.length + extra)),
    fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 12_000 })).map(([f, depth]) => Buffer.concat(Array.from({ length: depth }, () => tag(f, 3)))),
    fc.tuple(fc.integer({ min: 0, max: 2 ** 29 + 7 }), fc.constantFrom(6, 7, 0, 1, 5)).map(([f, wt]) => Buffer.concat([tag(f, wt), Buffer.from([0xff, 0xff])])),
    fc.constant(Buffer.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])),
    fc.constant(Buffer.concat([tag(1, 0), Buffer.from([0x80, 0x80])])),
    fc.tuple(fc.integer({ min: 1, max: 6 }), tie("msg")).map(([f, inner]) => lenField(f, inner)),
  ),
  msg: fc.array(tie("field"), { maxLength: 4, depthIdentifier: "msg" }).map((fs) => Buffer.concat(fs)),
})).field;

const messageArb: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ maxLength: 2048 }).map((b) => Buffer.from(b)),
  fc.array(fieldArb, { maxLength: 6 }).map((fs) => Buffer.concat(fs)),
);

type FrameKind = "normal" | "lying-prefix" | "max-prefix" | "compressed-flag" | "two-messages" | "empty-body" | "cut-prefix";
const bodyArb = fc.tuple(messageArb, fc.constantFrom<FrameKind>("normal", "normal", "normal", "lying-prefix", "max-prefix", "compressed-flag", "two-messages", "empty-body", "cut-prefix"), fc.integer({ min: 1, max: 1 << 20 })).map(([m, kind, extra]) => {
  switch (kind) {
    case "lying-prefix":
      return { kind, body: grpcFrame(m, m.length + extra) };
    case "max-prefix":
      return { kind, body: grpcFrame(m, 0xffffffff) };
    case "compressed-flag":
      return { kind, body: grpcFrame(m, m.length, 1) };
    case "two-messages":
      return { kind, body: Buffer.concat([grpcFrame(m), grpcFrame(m)]) };
    case "empty-body":
      return { kind, body: Buffer.alloc(0) };
    case "cut-prefix":
      return { kind, body: grpcFrame(m).subarray(0, 3) };
    default:
      return { kind, body: grpcFrame(m) };
  }
});

async function rssBytes(pid: number): Promise<number> {
  const s = await readFile(`/proc/${pid}/status`, "utf8");
  const m = /VmRSS:\s+(\d+) kB/.exec(s);
  return m ? Number(m[1]) * 1024 : 0;
}

it("every RPC of both listeners survives hostile wire bytes with a proper status", async () => {
  const v = new Violations();
  const dir = await scratch("protobuf");
  try {
    const pki = await makePki(join(dir.path, "pki"));
    const certA = await pki.cert("a");
    const certC = await pki.cert("c");
    const child = await startNode(["--data-dir", join(dir.path, "a"), "--peer-listen", "127.0.0.1:0", "--tls-ca", pki.ca, "--tls-cert", certA.cert, "--tls-key", certA.key]);
    await child.waitReady();
    const conn = connectPublic({ server: child.publicAddress });
    // Some data, so Get/ReadBodies/ListManifests have something to chew on.
    for (let i = 0; i < 20; i++) await putCasBody(conn, "default", bodyBytes({ seed: ctx.rng.u32(), size: ctx.rng.int(0, 300_000) }));
    const statusOf = async (): Promise<{ count: bigint; head: bigint }> => {
      const s = (await conn.client(NodeService).getStatus({})).status!;
      return { count: s.store?.artifactCount ?? 0n, head: s.feedHead };
    };
    const before = await statusOf();
    const rssBefore = await rssBytes(child.proc.pid!);
    let rssMax = rssBefore;

    const pub = await rawSession(`http://${child.publicAddress}`);
    const peerOpts = { ca: readFileSync(pki.ca), cert: readFileSync(certC.cert), key: readFileSync(certC.key) };
    let peer = await rawSession(child.peerAddress!, peerOpts);
    let pubS = pub;
    const codes: Record<string, Record<string, number>> = {};
    const frameKinds: Record<string, number> = {};
    let calls = 0;
    let putOk = 0;
    let sessionsReopened = 0;
    const note = (rpc: string, what: string): void => {
      const short = rpc.split("/").pop()!;
      codes[short] ??= {};
      codes[short][what] = (codes[short][what] ?? 0) + 1;
    };
    for (const rpc of [...PUBLIC_RPCS, ...PEER_RPCS]) {
      const isPeer = PEER_RPCS.includes(rpc);
      await fc.assert(
        fc.asyncProperty(bodyArb, async ({ kind, body }) => {
          // A connection the server closed (it may, for garbage) is replaced, and counted.
          if (isPeer && (peer.closed || peer.destroyed)) {
            peer = await rawSession(child.peerAddress!, peerOpts);
            sessionsReopened++;
          }
          if (!isPeer && (pubS.closed || pubS.destroyed)) {
            pubS = await rawSession(`http://${child.publicAddress}`);
            sessionsReopened++;
          }
          const out = await rawCall(isPeer ? peer : pubS, rpc, body, CALL_TIMEOUT_MS);
          calls++;
          frameKinds[kind] = (frameKinds[kind] ?? 0) + 1;
          const what = out.status !== undefined ? `status ${out.status}` : out.timedOut ? "timeout" : `no status (${out.failure})`;
          note(rpc, what);
          if (out.status === 0 && rpc.endsWith("/Put")) putOk++;
          v.check(out.status === undefined || PROPER.has(out.status), `${rpc} (${kind}) answered status ${out.status}: ${out.message}`);
          v.check(!/\n\s+at /.test(out.message), `${rpc} (${kind}) leaked a stack trace: ${out.message.slice(0, 200)}`);
          v.check(out.status !== undefined || out.timedOut, `${rpc} (${kind}) got no gRPC status: ${out.failure}`);
          v.check(child.proc.exitCode === null && child.proc.signalCode === null, `node died after ${rpc} (${kind})`);
        }),
        { numRuns: RUNS_PER_RPC, seed: ctx.rng.u32() | 0 },
      );
      rssMax = Math.max(rssMax, await rssBytes(child.proc.pid!));
    }
    pubS.close();
    peer.close();
    const after = await statusOf();
    v.check(putOk > 0 || (after.count === before.count && after.head === before.head), `store changed (artifacts ${before.count} -> ${after.count}, feed ${before.head} -> ${after.head}) with no Put answered OK`);
    // A legitimate client is still served.
    const d = await putCasBody(conn, "default", bodyBytes({ seed: 7, size: 1000 }));
    v.check(d.length === 64, "legitimate put failed");
    conn.close();
    const rssGrowth = rssMax - rssBefore;
    v.check(rssGrowth < 256 << 20, `RSS grew by ${rssGrowth} bytes`);
    v.check(child.proc.exitCode === null, "node not running at the end");
    const figures = { rpcs: PUBLIC_RPCS.length + PEER_RPCS.length, runsPerRpc: RUNS_PER_RPC, calls, frameKinds, outcomesByRpc: codes, putsAnsweredOk: putOk, storeBefore: { artifacts: Number(before.count), feedHead: Number(before.head) }, storeAfter: { artifacts: Number(after.count), feedHead: Number(after.head) }, sessionsReopened, rssBeforeBytes: rssBefore, rssMaxBytes: rssMax, rssGrowthBytes: rssGrowth, crashes: child.proc.exitCode === null ? 0 : 1 };
    ctx.record({ passed: v.list.length === 0, figures, violations: v.list });
    ctx.log(JSON.stringify(figures));
    expect(await child.kill("SIGTERM")).toBe(0);
  } finally {
    await killAll();
    await dir.cleanup();
  }
  expect(v.list).toEqual([]);
});
