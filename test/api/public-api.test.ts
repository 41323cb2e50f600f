import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { ArtifactService, Kind, PutRequestSchema, type PutRequest } from "../../src/gen/granary/artifact/v1/artifact_pb.js";
import { NodeService } from "../../src/gen/granary/node/v1/node_pb.js";
import { ReplicationService } from "../../src/gen/granary/replication/v1/replication_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.js";
import { formatHostPort, resolveNodeConfig } from "../../src/node/config.js";
import { GranaryNode } from "../../src/node/granary-node.js";
import { silentLogger } from "../../src/telemetry/logger.js";
import { connectPublic, type PublicConnection } from "../../src/transport/public-client.js";
import { bytes, deterministicChunks, sha256Hex } from "../helpers/data.js";
import { tempDir } from "../helpers/temp.js";

let node: GranaryNode;
let conn: PublicConnection;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  const dir = await tempDir();
  cleanup = dir.cleanup;
  node = await GranaryNode.start(resolveNodeConfig({ dataDir: dir.path, listen: "127.0.0.1:0", nodeId: "api-test" }), silentLogger());
  conn = connectPublic({ server: `http://${formatHostPort(node.publicAddress)}` });
});

afterAll(async () => {
  conn?.close();
  await node?.close();
  await cleanup?.();
});

async function* putStream(ns: string, kind: Kind, key: string, chunks: Iterable<Uint8Array>, size?: number): AsyncGenerator<PutRequest> {
  yield create(PutRequestSchema, { msg: { case: "header", value: { namespace: ns, kind, key, ...(size === undefined ? {} : { size: BigInt(size) }) } } });
  for (const c of chunks) yield create(PutRequestSchema, { msg: { case: "chunk", value: c } });
}

async function expectCode(p: Promise<unknown>, code: Code): Promise<ConnectError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${Code[code]}`).toBeInstanceOf(ConnectError);
  expect(Code[(err as ConnectError).code]).toBe(Code[code]);
  return err as ConnectError;
}

async function getAll(ns: string, kind: Kind, key: string, offset = 0n, limit = 0n): Promise<{ header: unknown; body: Buffer }> {
  const parts: Uint8Array[] = [];
  let header: unknown;
  for await (const res of conn.client(ArtifactService).get({ namespace: ns, kind, key, offset, limit })) {
    if (res.msg.case === "header") header = res.msg.value;
    else if (res.msg.case === "chunk") parts.push(res.msg.value);
  }
  return { header, body: Buffer.concat(parts) };
}

describe("public ArtifactService", () => {
  it("streams a 128 MiB artifact in and out, byte-exact, without holding it whole", async () => {
    const size = 128 << 20;
    const digest = sha256Hex(deterministicChunks(7, size));
    const client = conn.client(ArtifactService);
    const res = await client.put(putStream("big", Kind.CAS, digest, deterministicChunks(7, size), size));
    expect(res.manifest?.digest).toBe(digest);
    expect(res.manifest?.size).toBe(BigInt(size));
    expect(res.alreadyPresent).toBe(false);
    const h = createHash("sha256");
    let n = 0;
    let sawHeader = false;
    for await (const m of client.get({ namespace: "big", kind: Kind.CAS, key: digest })) {
      if (m.msg.case === "header") {
        sawHeader = true;
        expect(m.msg.value.length).toBe(BigInt(size));
      } else if (m.msg.case === "chunk") {
        h.update(m.msg.value);
        n += m.msg.value.length;
      }
    }
    expect(sawHeader).toBe(true);
    expect(n).toBe(size);
    expect(h.digest("hex")).toBe(digest);
  });

  it("serves byte ranges", async () => {
    const body = bytes(11, 3 * 1024 * 1024 + 17);
    const digest = sha256Hex([body]);
    await conn.client(ArtifactService).put(putStream("ranges", Kind.CAS, digest, [body]));
    const mid = await getAll("ranges", Kind.CAS, digest, 1_000_000n, 2_000_000n);
    expect(Buffer.compare(mid.body, Buffer.from(body.subarray(1_000_000, 3_000_000)))).toBe(0);
    const tail = await getAll("ranges", Kind.CAS, digest, BigInt(body.length - 5));
    expect([...tail.body]).toEqual([...body.subarray(body.length - 5)]);
    await expectCode(getAll("ranges", Kind.CAS, digest, BigInt(body.length + 1)), Code.OutOfRange);
  });

  it("answers a second put of the same CAS body with alreadyPresent", async () => {
    const body = bytes(12, 5000);
    const digest = sha256Hex([body]);
    const a = await conn.client(ArtifactService).put(putStream("dup", Kind.CAS, digest, [body]));
    const b = await conn.client(ArtifactService).put(putStream("dup", Kind.CAS, digest, [body]));
    expect(a.alreadyPresent).toBe(false);
    expect(b.alreadyPresent).toBe(true);
  });

  it("computes the digest when the header names none", async () => {
    const body = bytes(13, 777);
    const res = await conn.client(ArtifactService).put(putStream("nodigest", Kind.CAS, "", [body]));
    expect(res.manifest?.key).toBe(sha256Hex([body]));
  });

  it("overwrites KV values, last writer wins, with increasing versions", async () => {
    const client = conn.client(ArtifactService);
    const a = await client.put(putStream("kv", Kind.KV, "action/abc", [Buffer.from("one")]));
    const b = await client.put(putStream("kv", Kind.KV, "action/abc", [Buffer.from("two!")]));
    expect(b.manifest!.version > a.manifest!.version).toBe(true);
    const got = await getAll("kv", Kind.KV, "action/abc");
    expect(got.body.toString()).toBe("two!");
  });

  it("Stat and FindMissing report present and absent artifacts in order", async () => {
    const body = bytes(14, 100);
    const digest = sha256Hex([body]);
    const absent = "0".repeat(64);
    const client = conn.client(ArtifactService);
    await client.put(putStream("stat", Kind.CAS, digest, [body]));
    const s = await client.stat({ refs: [{ namespace: "stat", kind: Kind.CAS, key: absent }, { namespace: "stat", kind: Kind.CAS, key: digest }] });
    expect(s.results.map((r) => r.manifest?.size)).toEqual([undefined, 100n]);
    const f = await client.findMissing({ namespace: "stat", digests: [digest, absent] });
    expect(f.missingDigests).toEqual([absent]);
  });

  it("rejects bad input with the right code and stores nothing", async () => {
    const client = conn.client(ArtifactService);
    const before = node.store.usage();
    const body = bytes(15, 4096);
    const digest = sha256Hex([body]);
    await expectCode(client.put(putStream("Bad NS", Kind.CAS, digest, [body])), Code.InvalidArgument);
    await expectCode(client.put(putStream("ok", Kind.CAS, "xyz", [body])), Code.InvalidArgument);
    await expectCode(client.put(putStream("ok", Kind.KV, "../etc/passwd", [body])), Code.InvalidArgument);
    await expectCode(client.put(putStream("ok", Kind.UNSPECIFIED, digest, [body])), Code.InvalidArgument);
    const mismatch = await expectCode(client.put(putStream("ok", Kind.CAS, "a".repeat(64), [body])), Code.InvalidArgument);
    expect(mismatch.rawMessage).toMatch(/hash|digest/i);
    await expectCode(client.put(putStream("ok", Kind.CAS, digest, [body], 4095)), Code.InvalidArgument);
    await expectCode(client.put(putStream("ok", Kind.CAS, digest, [body], 5000)), Code.InvalidArgument);
    await expectCode(
      client.put((async function* () {
        yield create(PutRequestSchema, { msg: { case: "chunk", value: body } });
      })()),
      Code.InvalidArgument,
    );
    await expectCode(client.stat({ refs: [{ namespace: "ok", kind: Kind.CAS, key: "ABC" }] }), Code.InvalidArgument);
    await expectCode(client.findMissing({ namespace: "ok", digests: ["nothex"] }), Code.InvalidArgument);
    await expectCode(getAll("ok", Kind.CAS, "f".repeat(64)), Code.NotFound);
    await expectCode(getAll("ok", Kind.CAS, digest, 1n << 60n), Code.InvalidArgument);
    const after = node.store.usage();
    expect(after.artifactCount).toBe(before.artifactCount);
    expect(node.store.stat({ namespace: "ok", kind: "cas", key: digest })).toBeUndefined();
  });

  it("refuses a message over the 4 MiB limit with RESOURCE_EXHAUSTED and keeps serving", async () => {
    const client = conn.client(ArtifactService);
    const big = bytes(16, 5 << 20);
    await expectCode(client.put(putStream("big-msg", Kind.CAS, sha256Hex([big]), [big])), Code.ResourceExhausted);
    const small = bytes(17, 10);
    const ok = await client.put(putStream("big-msg", Kind.CAS, sha256Hex([small]), [small]));
    expect(ok.manifest?.size).toBe(10n);
  });

  it("stores nothing when the client disconnects mid-put", async () => {
    const client = conn.client(ArtifactService);
    const before = node.store.usage();
    const ac = new AbortController();
    const size = 16 << 20;
    const digest = sha256Hex(deterministicChunks(18, size));
    async function* dying(): AsyncGenerator<PutRequest> {
      yield create(PutRequestSchema, { msg: { case: "header", value: { namespace: "cut", kind: Kind.CAS, key: digest, size: BigInt(size) } } });
      let sent = 0;
      for (const c of deterministicChunks(18, size)) {
        yield create(PutRequestSchema, { msg: { case: "chunk", value: c } });
        if (++sent === 4) ac.abort();
      }
    }
    await expect(client.put(dying(), { signal: ac.signal })).rejects.toThrow();
    // The server learns of the reset asynchronously; a later complete put of the same key
    // must still work and be the only copy.
    const full = await client.put(putStream("cut", Kind.CAS, digest, deterministicChunks(18, size), size));
    expect(full.alreadyPresent).toBe(false);
    expect(node.store.usage().artifactCount).toBe(before.artifactCount + 1);
  });
});

describe("public listener: other services", () => {
  it("reports SERVING on grpc.health.v1 once ready", async () => {
    const health = conn.client(Health);
    expect((await health.check({ service: "" })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    expect((await health.check({ service: "granary.artifact.v1.ArtifactService" })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    await expectCode(health.check({ service: "no.such.Service" }), Code.NotFound);
  });

  it("serves node status", async () => {
    const s = await conn.client(NodeService).getStatus({});
    expect(s.status?.nodeId).toBe("api-test");
    expect(s.status?.incarnation).toMatch(/^[0-9a-f]{32}$/);
    expect(s.status?.feedHead).toBeGreaterThan(0n);
  });

  it("answers peer RPCs with UNIMPLEMENTED", async () => {
    const repl = createClient(ReplicationService, conn.transport);
    await expectCode(repl.hello({ nodeId: "intruder" }), Code.Unimplemented);
  });
});
