/**
 * The peer listener's trust rule, end to end over real mTLS: a node certificate from the mesh
 * CA is admitted (by both client stacks), and every way of not being a mesh node is refused
 * before any handler runs. Refusals are reported through onRejected.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { HostileCertKind } from "../../src/certs/hostile-certs.js";
import { ReplicationService } from "../../src/gen/granary/replication/v1/replication_pb.js";
import { createConnectHandler } from "../../src/transport/connect-handler.js";
import { connectPeerGrpcClient, createPeerGrpcClient, type PeerTlsPem } from "../../src/transport/peer-channel.js";
import { createPeerConnectTransport } from "../../src/transport/peer-transport.js";
import { createPeerServer, type ListeningServer } from "../../src/transport/server.js";
import { deferred, grpcHello, makePki, StubReplication, type Pki } from "./fixtures.js";

let root: string;
let pki: Pki;
let stub: StubReplication;
let server: ListeningServer;
let rejections: { reason: string; remote: string | undefined }[];
let nextRejection = deferred<string>();
let port: number;
const cleanups: (() => void)[] = [];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "granary-peer-test-"));
  pki = await makePki(join(root, "pki"));
  const serverCert = await pki.node("node-a");
  stub = new StubReplication();
  rejections = [];
  server = await createPeerServer({
    handler: createConnectHandler({ routes: stub.routes }),
    listen: { host: "127.0.0.1", port: 0 },
    tls: { caFile: pki.caFile, certFile: serverCert.certFile, keyFile: serverCert.keyFile },
    allow: new Set(["node-a", "node-b", "intruder"]),
    onRejected: (reason, remote) => {
      rejections.push({ reason, remote });
      nextRejection.resolve(reason);
    },
  });
  port = server.address().port;
});

afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

afterAll(async () => {
  await server.close(1000);
  await rm(root, { recursive: true, force: true });
});

async function connectHello(tls: PeerTlsPem): Promise<string> {
  const t = createPeerConnectTransport({ baseUrl: `https://127.0.0.1:${port}`, tls, connectTimeoutMs: 10_000 });
  cleanups.push(() => t.close());
  const res = await createClient(ReplicationService, t.transport).hello({ nodeId: "caller", incarnation: "i1" }, { timeoutMs: 20_000 });
  return res.nodeId;
}

async function grpcJsHello(tls: PeerTlsPem): Promise<string> {
  const client = createPeerGrpcClient(ReplicationService, `127.0.0.1:${port}`, tls);
  cleanups.push(() => client.close());
  return (await grpcHello(client)).nodeId;
}

describe("peer listener: admitted", () => {
  it("admits a mesh node from the connect-node client and hands its identity to the handler", async () => {
    const before = stub.helloCalls;
    expect(await connectHello(await pki.pem(await pki.node("node-b")))).toBe("node-b");
    expect(stub.helloCalls).toBe(before + 1);
  });

  it("admits a mesh node from the grpc-js client", async () => {
    const before = stub.helloCalls;
    expect(await grpcJsHello(await pki.pem(await pki.node("node-b")))).toBe("node-b");
    expect(stub.helloCalls).toBe(before + 1);
  });

  it("connectPeerGrpcClient reaches READY within the connect timeout", async () => {
    const client = await connectPeerGrpcClient(ReplicationService, `127.0.0.1:${port}`, await pki.pem(await pki.node("node-b")), {
      connectTimeoutMs: 10_000,
      expectNodeName: "node-a",
    });
    cleanups.push(() => client.close());
    expect((await grpcHello(client)).nodeId).toBe("node-b");
  });
});

describe("peer listener: refused before any handler runs", () => {
  const cases: { kind: HostileCertKind | "not-allowed"; why: RegExp }[] = [
    { kind: "self-signed", why: /TLS handshake failed: client certificate rejected \(DEPTH_ZERO_SELF_SIGNED_CERT\)/ },
    { kind: "other-ca", why: /TLS handshake failed: client certificate rejected \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)/ },
    { kind: "expired", why: /TLS handshake failed: client certificate rejected \(CERT_HAS_EXPIRED\)/ },
    { kind: "not-yet-valid", why: /TLS handshake failed: client certificate rejected \(CERT_NOT_YET_VALID\)/ },
    { kind: "no-identity", why: /0 URI SANs/ },
    { kind: "foreign-identity", why: /not a node identity/ },
    { kind: "two-identities", why: /2 URI SANs/ },
    { kind: "ca-leaf", why: /CA certificate/ },
    // OpenSSL's purpose check refuses it in the handshake; no-eku reaches our own EKU check.
    { kind: "server-auth-only", why: /INVALID_PURPOSE|clientAuth/ },
    { kind: "no-eku", why: /clientAuth/ },
    { kind: "not-allowed", why: /allow-list/ },
  ];

  for (const { kind, why } of cases) {
    for (const stack of ["connect-node", "grpc-js"] as const) {
      it(`${kind} (${stack})`, async () => {
        const pair = kind === "not-allowed" ? await pki.node("node-c") : await pki.hostile(kind);
        const tls = await pki.pem(pair);
        const before = { hello: stub.helloCalls, rejected: rejections.length };
        nextRejection = deferred<string>();
        const call = stack === "connect-node" ? connectHello(tls) : grpcJsHello(tls);
        await expect(call).rejects.toBeDefined();
        const reason = await nextRejection.promise;
        expect(reason).toMatch(why);
        expect(stub.helloCalls).toBe(before.hello);
        expect(rejections.length).toBeGreaterThan(before.rejected);
        expect(rejections.at(-1)?.remote).toBe("127.0.0.1");
      });
    }
  }

  it("no client certificate (connect-node)", async () => {
    const before = stub.helloCalls;
    nextRejection = deferred<string>();
    const sm = new Http2SessionManager(`https://127.0.0.1:${port}`, undefined, { ca: await readFile(pki.caFile), servername: "localhost" });
    cleanups.push(() => sm.abort());
    const client = createClient(ReplicationService, createGrpcTransport({ baseUrl: `https://127.0.0.1:${port}`, sessionManager: sm }));
    const err = await client.hello({ nodeId: "x" }, { timeoutMs: 20_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect([Code.Unavailable, Code.Canceled, Code.Internal]).toContain((err as ConnectError).code);
    expect(await nextRejection.promise).toMatch(/TLS handshake failed.*certificate/i);
    expect(stub.helloCalls).toBe(before);
  });

  it("no client certificate (grpc-js)", async () => {
    const before = stub.helloCalls;
    nextRejection = deferred<string>();
    const { credentials } = await import("@grpc/grpc-js");
    const { createGrpcJsClient } = await import("../../src/transport/grpc-js-adapter.js");
    const client = createGrpcJsClient(ReplicationService, `127.0.0.1:${port}`, credentials.createSsl(await readFile(pki.caFile)), {
      "grpc.ssl_target_name_override": "localhost",
    });
    cleanups.push(() => client.close());
    await expect(grpcHello(client)).rejects.toBeDefined();
    expect(await nextRejection.promise).toMatch(/TLS handshake failed/);
    expect(stub.helloCalls).toBe(before);
  });
});

describe("peer clients check the server too", () => {
  it("refuses a server whose certificate is not a mesh node, and a server that is another node", async () => {
    const bad = await pki.hostile("no-identity");
    const other = await createPeerServer({
      handler: createConnectHandler({ routes: stub.routes }),
      listen: { host: "127.0.0.1", port: 0 },
      tls: { caFile: pki.caFile, certFile: bad.certFile, keyFile: bad.keyFile },
    });
    try {
      const tls = await pki.pem(await pki.node("node-b"));
      const before = stub.helloCalls;
      const t = createPeerConnectTransport({ baseUrl: `https://127.0.0.1:${other.address().port}`, tls });
      cleanups.push(() => t.close());
      const err = await createClient(ReplicationService, t.transport).hello({}).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectError);
      expect(String((err as ConnectError).cause)).toMatch(/not an acceptable mesh node/);
      await expect(
        connectPeerGrpcClient(ReplicationService, `127.0.0.1:${other.address().port}`, tls, { connectTimeoutMs: 1000 }),
      ).rejects.toMatchObject({ code: "CONNECT_TIMEOUT" });
      // The real node-a, but we expected node-z.
      await expect(
        connectPeerGrpcClient(ReplicationService, `127.0.0.1:${port}`, tls, { connectTimeoutMs: 1000, expectNodeName: "node-z" }),
      ).rejects.toMatchObject({ code: "CONNECT_TIMEOUT" });
      expect(stub.helloCalls).toBe(before);
    } finally {
      await other.close(0);
    }
  });
});
