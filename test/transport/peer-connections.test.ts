/**
 * The grpc-js peer client's `connections` option (--peer-connections): body streams spread over
 * that many TCP connections to one peer; Hello and the rest stay on the first.
 */
import type * as http2 from "node:http2";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveNodeConfig } from "../../src/node/config.js";
import { createConnectHandler } from "../../src/transport/connect-handler.js";
import type { PeerTlsPem } from "../../src/transport/peer-channel.js";
import { createGrpcJsPeerClient } from "../../src/transport/peer-client-grpcjs.js";
import { createPeerServer, type ListeningServer } from "../../src/transport/server.js";
import { drain, knobs, makePki, StubReplication } from "./fixtures.js";

let root: string;
let tls: PeerTlsPem;
let server: ListeningServer;
let stub: StubReplication;
const sessions = new Set<http2.ServerHttp2Session>();

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "granary-peer-connections-test-"));
  const pki = await makePki(join(root, "pki"));
  const a = await pki.node("node-a");
  tls = await pki.pem(await pki.node("node-b"));
  stub = new StubReplication();
  server = await createPeerServer({
    handler: createConnectHandler({ routes: stub.routes }),
    listen: { host: "127.0.0.1", port: 0 },
    tls: { caFile: pki.caFile, certFile: a.certFile, keyFile: a.keyFile },
  });
  server.server.on("session", (s: http2.ServerHttp2Session) => sessions.add(s));
});
afterAll(async () => {
  await server.close(0);
  await rm(root, { recursive: true, force: true });
});

describe("connections per peer", () => {
  it("spreads concurrent body streams over N connections", async () => {
    sessions.clear();
    const client = createGrpcJsPeerClient(`https://127.0.0.1:${server.address().port}`, { tls, idleTimeoutMs: 10_000, connections: 3 });
    try {
      await client.hello({ nodeId: "node-b", incarnation: "i1", advertiseAddress: "" }, AbortSignal.timeout(10_000));
      // Six streams that all stay open until the sixth is: least-open-first puts two on each connection.
      const streams = Array.from({ length: 6 }, () => drain(client.readBodies(knobs({ count: 2, chunkBytes: 16, barrier: 6 }), AbortSignal.timeout(10_000))));
      const results = await Promise.all(streams);
      expect(results.every((r) => r.length === 2)).toBe(true);
      expect(sessions.size).toBe(3);
      expect(client.counters().peakInFlight).toBe(6);
    } finally {
      client.close();
    }
  });

  it("one connection by default", async () => {
    sessions.clear();
    const client = createGrpcJsPeerClient(`https://127.0.0.1:${server.address().port}`, { tls, idleTimeoutMs: 10_000 });
    try {
      await Promise.all(Array.from({ length: 4 }, () => drain(client.readBodies(knobs({ count: 1, chunkBytes: 16, barrier: 4 }), AbortSignal.timeout(10_000)))));
      expect(sessions.size).toBe(1);
    } finally {
      client.close();
    }
  });

  it("validates the count", () => {
    expect(() => createGrpcJsPeerClient("https://127.0.0.1:1", { tls, idleTimeoutMs: 1000, connections: 0 })).toThrow(/connections/);
    expect(() => resolveNodeConfig({ dataDir: root, peerConnections: 65 })).toThrow(/peer-connections/);
    expect(resolveNodeConfig({ dataDir: root }).peerConnections).toBe(1);
  });
});
