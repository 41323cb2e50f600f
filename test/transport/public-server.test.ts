/**
 * The public listener: limits are really advertised, h2c and TLS both serve, close() drains
 * in-flight streams within the grace and cuts them after it, and server keepalive destroys a
 * session whose peer stopped answering PINGs while a live client survives many rounds.
 */
import { once } from "node:events";
import * as http2 from "node:http2";
import { connect as netConnect } from "node:net";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ReplicationService } from "../../src/gen/granary/replication/v1/replication_pb.js";
import { createConnectHandler } from "../../src/transport/connect-handler.js";
import { InvalidOptionError } from "../../src/transport/errors.js";
import { connectPublic } from "../../src/transport/public-client.js";
import { DEFAULT_PUBLIC_LIMITS, resolveServerLimits, type ServerLimits } from "../../src/transport/limits.js";
import { createPublicServer, type ListeningServer } from "../../src/transport/server.js";
import { deferred, drain, knobs, makePki, StubReplication, type Pki } from "./fixtures.js";

let root: string;
let pki: Pki;
const cleanups: (() => void | Promise<void>)[] = [];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "granary-public-test-"));
  pki = await makePki(join(root, "pki"));
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function startH2c(stub: StubReplication, limits: Partial<ServerLimits> = {}, onKeepaliveTimeout?: (remote: string | undefined) => void): Promise<ListeningServer> {
  const server = await createPublicServer({
    handler: createConnectHandler({ routes: stub.routes }),
    listen: { host: "127.0.0.1", port: 0 },
    limits,
    ...(onKeepaliveTimeout !== undefined ? { onKeepaliveTimeout } : {}),
  });
  cleanups.push(() => server.close(0));
  return server;
}

function h2cClient(server: ListeningServer | number): { client: Client<typeof ReplicationService>; sm: Http2SessionManager } {
  const baseUrl = `http://127.0.0.1:${typeof server === "number" ? server : server.address().port}`;
  const sm = new Http2SessionManager(baseUrl);
  cleanups.push(() => sm.abort());
  return { client: createClient(ReplicationService, createGrpcTransport({ baseUrl, sessionManager: sm, acceptCompression: [] })), sm };
}

async function rawSession(url: string, options: http2.SecureClientSessionOptions = {}): Promise<http2.ClientHttp2Session> {
  const s = http2.connect(url, options);
  cleanups.push(() => {
    s.destroy();
  });
  await once(s, "remoteSettings");
  return s;
}

describe("public listener", () => {
  it("advertises its limits and raises the connection window", async () => {
    const server = await startH2c(new StubReplication());
    const s = await rawSession(`http://127.0.0.1:${server.address().port}`);
    expect(s.remoteSettings).toMatchObject({
      maxConcurrentStreams: 256,
      maxHeaderListSize: 16 * 1024,
      initialWindowSize: 4 * 1024 * 1024,
      maxFrameSize: 256 * 1024,
    });
    // The server's WINDOW_UPDATE on stream 0 is sent before it answers our PING.
    await new Promise<void>((resolve, reject) => s.ping((err) => (err ? reject(err) : resolve())));
    expect(s.state.remoteWindowSize).toBe(32 * 1024 * 1024);
    expect(server.limits.maxConcurrentStreams).toBe(256);
    expect(server.sessionCount()).toBe(1);
  });

  it("connectPublic raises the connection window, not just the stream window", async () => {
    const server = await startH2c(new StubReplication());
    let session: http2.ServerHttp2Session | undefined;
    server.server.on("session", (s: http2.ServerHttp2Session) => (session = s));
    const conn = connectPublic({ server: `127.0.0.1:${server.address().port}` });
    cleanups.push(() => conn.close());
    const client = conn.client(ReplicationService);
    await client.hello({});
    await client.hello({}); // follows the WINDOW_UPDATE sent after the first request
    expect(session?.remoteSettings.initialWindowSize).toBe(8 * 1024 * 1024);
    expect(session?.state.remoteWindowSize).toBeGreaterThan(64 * 1024 * 1024 - 65_535);
  });

  it("serves h2c and TLS (no client certificate asked)", async () => {
    const stub = new StubReplication();
    const h2c = await startH2c(stub);
    expect((await h2cClient(h2c).client.hello({ incarnation: "x" })).nodeId).toBe("anonymous");
    await expect(h2c.reloadTls()).rejects.toMatchObject({ code: "TLS_FILES" });

    const a = await pki.node("node-a");
    const tls = await createPublicServer({
      handler: createConnectHandler({ routes: stub.routes }),
      listen: { host: "127.0.0.1", port: 0 },
      tls: { certFile: a.certFile, keyFile: a.keyFile },
    });
    cleanups.push(() => tls.close(0));
    const baseUrl = `https://127.0.0.1:${tls.address().port}`;
    const sm = new Http2SessionManager(baseUrl, undefined, { ca: await readFile(pki.caFile), servername: "localhost" });
    cleanups.push(() => sm.abort());
    const res = await createClient(ReplicationService, createGrpcTransport({ baseUrl, sessionManager: sm })).hello({});
    expect(res.nodeId).toBe("anonymous");
    expect(stub.helloCalls).toBe(2);
  });

  it("close(grace) stops accepting, lets an in-flight stream finish, then resolves", async () => {
    const stub = new StubReplication();
    const server = await startH2c(stub);
    const port = server.address().port;
    const { client } = h2cClient(server);
    const it = client.readBodies(knobs({ count: 3, chunkBytes: 1024, gated: true }))[Symbol.asyncIterator]();
    expect((await it.next()).done).toBe(false);
    await stub.gatedStarted.promise;

    const closing = server.close(60_000);
    // No new connections: a fresh client cannot reach the listener any more.
    await expect(h2cClient(port).client.hello({})).rejects.toBeDefined();

    stub.gate.resolve();
    const rest: unknown[] = [];
    for (let r = await it.next(); r.done !== true; r = await it.next()) rest.push(r.value);
    expect(rest).toHaveLength(2);
    await closing;
    expect(server.sessionCount()).toBe(0);
    expect(server.close(0)).toBe(closing); // idempotent
  });

  it("close(grace) cuts a stream that outlives the grace", async () => {
    const stub = new StubReplication();
    const server = await startH2c(stub);
    const { client } = h2cClient(server);
    const pending = drain(client.readBodies(knobs({ count: 3, chunkBytes: 1024, gated: true })));
    await stub.gatedStarted.promise;
    await server.close(100);
    await expect(pending).rejects.toBeDefined();
    expect(server.sessionCount()).toBe(0);
  });

  it("keepalive destroys a session whose peer never answers a PING", async () => {
    const timedOut = deferred<string | undefined>();
    const server = await startH2c(new StubReplication(), { keepaliveIntervalMs: 50, keepaliveTimeoutMs: 100 }, (remote) => timedOut.resolve(remote));
    // A "peer" that says hello in HTTP/2 and then goes silent: it never ACKs anything.
    const sock = netConnect(server.address().port, "127.0.0.1");
    cleanups.push(() => {
      sock.destroy();
    });
    await once(sock, "connect");
    sock.write(Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]));
    sock.resume();
    expect(await timedOut.promise).toBe("127.0.0.1");
    await once(sock, "close");
    expect(server.sessionCount()).toBe(0);
  });

  it("keepalive leaves a live client alone through many PING rounds", async () => {
    const stub = new StubReplication();
    const server = await startH2c(stub, { keepaliveIntervalMs: 20, keepaliveTimeoutMs: 10_000 });
    const s = await rawSession(`http://127.0.0.1:${server.address().port}`);
    let pings = 0;
    const fivePings = deferred();
    s.on("ping", () => {
      if (++pings === 5) fivePings.resolve();
    });
    await fivePings.promise; // Node ACKs each automatically
    expect(s.destroyed).toBe(false);
    expect(server.sessionCount()).toBe(1);
  });
});

describe("resolveServerLimits", () => {
  it("merges overrides and names the bad field", () => {
    expect(resolveServerLimits(DEFAULT_PUBLIC_LIMITS, { maxConcurrentStreams: 10 }).maxConcurrentStreams).toBe(10);
    expect(() => resolveServerLimits(DEFAULT_PUBLIC_LIMITS, { maxFrameSizeBytes: 1 })).toThrow(/limits\.maxFrameSizeBytes: want an integer/);
    expect(() => resolveServerLimits(DEFAULT_PUBLIC_LIMITS, { streamWindowBytes: 64 * 1024 * 1024 })).toThrow(/limits\.connectionWindowBytes: must be >= streamWindowBytes/);
    expect(() => resolveServerLimits(DEFAULT_PUBLIC_LIMITS, { nope: 1 } as Partial<ServerLimits>)).toThrow(InvalidOptionError);
  });
});
