/**
 * Peer client factories: their windows and frame size really reach the wire (observed from
 * the server's side of the session), and the connect timeout fires against a listener that
 * accepts TCP but never completes TLS (a black hole), for both stacks.
 */
import { createServer as createNetServer, type Server as NetServer, type Socket } from "node:net";
import type * as http2 from "node:http2";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConnectError, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ReplicationService } from "../../src/gen/granary/replication/v1/replication_pb.js";
import { createConnectHandler } from "../../src/transport/connect-handler.js";
import { causeChain } from "../../src/util/cause-chain.js";
import { ConnectTimeoutError, connectPeerGrpcClient, createPeerGrpcClient, resolvePeerChannelOptions, type PeerTlsPem } from "../../src/transport/peer-channel.js";
import { createPeerConnectTransport } from "../../src/transport/peer-transport.js";
import { createPeerServer, type ListeningServer } from "../../src/transport/server.js";
import { grpcHello, makePki, StubReplication, type Pki } from "./fixtures.js";

const MiB = 1024 * 1024;
let root: string;
let pki: Pki;
let tls: PeerTlsPem;
let server: ListeningServer;
let lastSession: http2.ServerHttp2Session | undefined;
let blackHole: NetServer;
const held: Socket[] = [];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "granary-peer-clients-test-"));
  pki = await makePki(join(root, "pki"));
  const a = await pki.node("node-a");
  tls = await pki.pem(await pki.node("node-b"));
  server = await createPeerServer({
    handler: createConnectHandler({ routes: new StubReplication().routes }),
    listen: { host: "127.0.0.1", port: 0 },
    tls: { caFile: pki.caFile, certFile: a.certFile, keyFile: a.keyFile },
  });
  server.server.on("session", (s: http2.ServerHttp2Session) => (lastSession = s));
  blackHole = createNetServer((s) => held.push(s));
  await new Promise<void>((resolve) => blackHole.listen(0, "127.0.0.1", resolve));
});
afterAll(async () => {
  for (const s of held) s.destroy();
  await new Promise((resolve) => blackHole.close(resolve));
  await server.close(0);
  await rm(root, { recursive: true, force: true });
});

const blackHolePort = (): number => (blackHole.address() as { port: number }).port;

describe("windows on the wire", () => {
  it("connect-node peer transport: 16 MiB stream window, 256 MiB connection window, 1 MiB frames", async () => {
    const t = createPeerConnectTransport({ baseUrl: `https://127.0.0.1:${server.address().port}`, tls });
    try {
      const client = createClient(ReplicationService, t.transport);
      await client.hello({});
      // The connection WINDOW_UPDATE goes out after the first request; the second request
      // follows it on the wire, so by now the server has applied it.
      await client.hello({});
      expect(lastSession?.remoteSettings).toMatchObject({ initialWindowSize: 16 * MiB, maxFrameSize: 1 * MiB });
      // Minus the response bytes the client has not refunded yet; the default would be 65,535.
      expect(lastSession?.state.remoteWindowSize).toBeGreaterThan(256 * MiB - 65_535);
      expect(lastSession?.state.remoteWindowSize).toBeLessThanOrEqual(256 * MiB);
    } finally {
      t.close();
    }
  });

  it("grpc-js peer channel: 32 MiB stream and connection windows", async () => {
    const client = createPeerGrpcClient(ReplicationService, `127.0.0.1:${server.address().port}`, tls);
    try {
      await grpcHello(client);
      expect(lastSession?.remoteSettings.initialWindowSize).toBe(32 * MiB);
      expect(lastSession?.state.remoteWindowSize).toBeGreaterThan(32 * MiB - 65_535);
      expect(lastSession?.state.remoteWindowSize).toBeLessThanOrEqual(32 * MiB);
    } finally {
      client.close();
    }
  });
});

describe("connect timeout", () => {
  it("grpc-js: connectPeerGrpcClient gives up on a black hole with ConnectTimeoutError", async () => {
    const err = await connectPeerGrpcClient(ReplicationService, `127.0.0.1:${blackHolePort()}`, tls, { connectTimeoutMs: 200 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectTimeoutError);
    expect(err).toMatchObject({ code: "CONNECT_TIMEOUT", timeoutMs: 200 });
  });

  it("grpc-js: an abort signal ends the wait early", async () => {
    const ac = new AbortController();
    const p = connectPeerGrpcClient(ReplicationService, `127.0.0.1:${blackHolePort()}`, tls, { connectTimeoutMs: 60_000, signal: ac.signal });
    ac.abort(new Error("shutting down"));
    await expect(p).rejects.toThrow("shutting down");
  });

  it("connect-node: the call fails with the ConnectTimeoutError as its cause", async () => {
    const t = createPeerConnectTransport({ baseUrl: `https://127.0.0.1:${blackHolePort()}`, tls, connectTimeoutMs: 200 });
    try {
      const err = await createClient(ReplicationService, t.transport).hello({}).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectError);
      expect(causeChain(err)).toMatch(/could not connect to https:\/\/127\.0\.0\.1:\d+ within 200 ms/);
    } finally {
      t.close();
    }
  });
});

describe("option validation", () => {
  it("names the bad field", () => {
    expect(() => resolvePeerChannelOptions({ flowControlWindowBytes: 10 })).toThrow(/flowControlWindowBytes: want an integer/);
    expect(() => resolvePeerChannelOptions({ serverName: "a b" })).toThrow(/serverName/);
    expect(() => createPeerConnectTransport({ baseUrl: "http://127.0.0.1:1", tls })).toThrow(/baseUrl: peers are reached over mTLS only/);
    expect(() => createPeerConnectTransport({ baseUrl: "https://127.0.0.1:1", tls, connectionWindowBytes: 65_535 })).toThrow(/connectionWindowBytes/);
  });
});
