/**
 * Streams over the peer listener with real mTLS: many streams share one connection,
 * per-message idle deadlines keep slow streams and cut stalled ones (both client stacks), and
 * the server's send deadline resets a stream whose client stopped reading. Outcomes only: no
 * sleeps for synchronisation, no assertions on durations.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { status, type ServiceError } from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ReplicationService, type ReadBodiesResponse } from "../../src/gen/granary/replication/v1/replication_pb.js";
import { createConnectHandler } from "../../src/transport/connect-handler.js";
import { IdleTimeoutError, idleTimeout } from "../../src/transport/deadlines.js";
import { createPeerGrpcClient, type PeerChannelOptions, type PeerTlsPem } from "../../src/transport/peer-channel.js";
import { createPeerConnectTransport, type PeerTransportOptions } from "../../src/transport/peer-transport.js";
import { createPeerServer, type ListeningServer } from "../../src/transport/server.js";
import { drain, grpcHello, knobs, makePki, StubReplication, type Pki } from "./fixtures.js";

let root: string;
let pki: Pki;
let clientTls: PeerTlsPem;
const cleanups: (() => void | Promise<void>)[] = [];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "granary-streams-test-"));
  pki = await makePki(join(root, "pki"));
  await pki.node("node-a");
  clientTls = await pki.pem(await pki.node("node-b"));
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function startPeer(stub: StubReplication): Promise<{ server: ListeningServer; counts: { sessions: number; secure: number } }> {
  const a = await pki.node("node-a");
  const server = await createPeerServer({
    handler: createConnectHandler({ routes: stub.routes }),
    listen: { host: "127.0.0.1", port: 0 },
    tls: { caFile: pki.caFile, certFile: a.certFile, keyFile: a.keyFile },
  });
  const counts = { sessions: 0, secure: 0 };
  server.server.on("session", () => counts.sessions++);
  server.server.on("secureConnection", () => counts.secure++);
  cleanups.push(() => server.close(0));
  return { server, counts };
}

function grpcClient(server: ListeningServer, options: PeerChannelOptions = {}) {
  const c = createPeerGrpcClient(ReplicationService, `127.0.0.1:${server.address().port}`, clientTls, options);
  cleanups.push(() => c.close());
  return c;
}

function connectClient(server: ListeningServer, options: Partial<PeerTransportOptions> = {}): Client<typeof ReplicationService> {
  const t = createPeerConnectTransport({ baseUrl: `https://127.0.0.1:${server.address().port}`, tls: clientTls, ...options });
  cleanups.push(() => t.close());
  return createClient(ReplicationService, t.transport);
}

describe("multiplexing", () => {
  it("16 concurrent server streams from one grpc-js channel share ONE connection", async () => {
    const stub = new StubReplication();
    const { server, counts } = await startPeer(stub);
    const client = grpcClient(server);
    // barrier: 16 -> no stream sends anything until all 16 are open on the server at once.
    const all = await Promise.all(
      Array.from({ length: 16 }, () => drain(client.readBodies(knobs({ count: 8, chunkBytes: 16 * 1024, barrier: 16 })) as AsyncIterable<ReadBodiesResponse>)),
    );
    expect(all.map((m) => m.length)).toEqual(Array(16).fill(8));
    expect(stub.streamCalls).toBe(16);
    expect(counts).toEqual({ sessions: 1, secure: 1 });
  });

  it("16 concurrent server streams from one connect-node transport share ONE connection", async () => {
    const stub = new StubReplication();
    const { server, counts } = await startPeer(stub);
    const client = connectClient(server);
    const all = await Promise.all(Array.from({ length: 16 }, () => drain(client.readBodies(knobs({ count: 8, chunkBytes: 16 * 1024, barrier: 16 })))));
    expect(all.map((m) => m.length)).toEqual(Array(16).fill(8));
    expect(counts).toEqual({ sessions: 1, secure: 1 });
  });
});

// Slow: 15 messages 100 ms apart (> 3 x the idle limit in total), each gap well inside it.
const IDLE_MS = 400;
const SLOW = knobs({ count: 15, chunkBytes: 1024, intervalMs: 100 });
const STALLED = knobs({ count: 10, chunkBytes: 1024, stallAfter: 3 });

describe("idleTimeout (per-message receive deadline)", () => {
  it("connect-node: a slow stream completes, a stalled one is cut with IdleTimeoutError", async () => {
    const stub = new StubReplication();
    const { server } = await startPeer(stub);
    const client = connectClient(server);
    await client.hello({ nodeId: "warm-up" }); // connection up before the first idle timer

    const slow = new AbortController();
    const msgs = await drain(idleTimeout(client.readBodies(SLOW, { signal: slow.signal }), IDLE_MS, (e) => slow.abort(e)));
    expect(msgs).toHaveLength(15);

    const stalled = new AbortController();
    let got = 0;
    const err = await (async () => {
      for await (const _ of idleTimeout(client.readBodies(STALLED, { signal: stalled.signal }), IDLE_MS, (e) => stalled.abort(e))) got++;
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IdleTimeoutError);
    expect((err as IdleTimeoutError).code).toBe("IDLE_TIMEOUT");
    expect(got).toBe(3);
    await stub.stallCancelled.promise; // the abort reached the server: its handler was cancelled
  });

  it("grpc-js: a slow stream completes, a stalled one is cut with IdleTimeoutError", async () => {
    const stub = new StubReplication();
    const { server } = await startPeer(stub);
    const client = grpcClient(server);
    await grpcHello(client);

    const slowCall = client.readBodies(SLOW);
    const msgs = await drain(idleTimeout(slowCall as AsyncIterable<ReadBodiesResponse>, IDLE_MS, () => slowCall.cancel()));
    expect(msgs).toHaveLength(15);

    const call = client.readBodies(STALLED);
    let got = 0;
    const err = await (async () => {
      for await (const _ of idleTimeout(call as AsyncIterable<ReadBodiesResponse>, IDLE_MS, () => call.cancel())) got++;
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IdleTimeoutError);
    expect(got).toBe(3);
    await stub.stallCancelled.promise;
  });
});

describe("withSendDeadline (per-message send deadline on the server)", () => {
  // 1024 x 256 KiB = 256 MiB: far more than any buffer between server and client.
  const BIG = knobs({ count: 1024, chunkBytes: 256 * 1024, sendDeadlineMs: 300 });

  it("connect-node client stops reading: the server resets the stream, the client sees Canceled on resuming", async () => {
    const stub = new StubReplication();
    const { server } = await startPeer(stub);
    // Small receive windows so the server blocks soon after the client stops reading.
    const client = connectClient(server, { streamWindowBytes: 65_535, connectionWindowBytes: 65_535 });
    const it = client.readBodies(BIG)[Symbol.asyncIterator]();
    expect((await it.next()).done).toBe(false);

    const stall = await stub.stalled.promise; // we are not reading: the server notices
    expect(stall.code).toBe("SEND_STALLED");

    let received = 1;
    const err = await (async () => {
      for (;;) {
        const r = await it.next();
        if (r.done === true) return undefined;
        received++;
      }
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Canceled);
    expect(received).toBeLessThan(1024);
    expect(stub.stalls).toHaveLength(1);
  });

  it("grpc-js client stops reading: the server resets the stream, the client sees an error on resuming", async () => {
    const stub = new StubReplication();
    const { server } = await startPeer(stub);
    const client = grpcClient(server, { flowControlWindowBytes: 65_535 });
    const call = client.readBodies(BIG);
    const it = (call as AsyncIterable<ReadBodiesResponse>)[Symbol.asyncIterator]();
    expect((await it.next()).done).toBe(false);

    await stub.stalled.promise;

    let received = 1;
    const err = await (async () => {
      for (;;) {
        const r = await it.next();
        if (r.done === true) return undefined;
        received++;
      }
    })().catch((e: unknown) => e);
    expect(err).toBeDefined();
    // RST_STREAM(CANCEL) surfaces as CANCELLED in grpc-js, after the messages it had buffered.
    expect((err as ServiceError).code).toBe(status.CANCELLED);
    expect(received).toBeLessThan(1024);
    expect(stub.stalls).toHaveLength(1);
  });
});
