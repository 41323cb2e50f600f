/**
 * Found by the reliability suite (chaos scenario 5, streams cut mid-body, full size): when a
 * connection under a busy TLS HTTP/2 session is closed (the fault proxy's FIN close, what a
 * killed peer's kernel does), Node 20 often reports nothing: no 'end', no 'close', no error on
 * the session or its sockets, while the TCP connection is gone. The session and the handlers
 * of its streams stay until a PING goes unanswered. Here 16 streams read bodies through the
 * proxy while it closes the connection six times; without the peer listener's keepalive most
 * of A's sessions would stay open (in a probe, 5 of 8 stayed until the 30-s keepalive), with
 * it every one closes. The keepalive now pings after 10 s without frames (was 30 s) and says when it closes
 * a session (`peer.keepalive_timeout`).
 *
 * The same happens on the fetching side: a client connection Node does not report as closed
 * took every new stream, each stalling to its idle deadline, until grpc-js's keepalive ended it
 * (now a PING every 10 s, was 30 s; 20 s to answer). The second case: once a stream's idle
 * deadline fires while nothing arrived on its whole connection, later streams get a new one.
 */
import type { ServerHttp2Session } from "node:http2";
import { expect, it } from "vitest";
import { startFaultProxy } from "../../chaos/lib/fault-proxy.js";
import { Kind } from "../../src/gen/granary/artifact/v1/artifact_pb.js";
import { createGrpcJsPeerClient } from "../../src/transport/peer-client-grpcjs.js";
import { bytes } from "../helpers/data.js";
import { eventLog } from "../helpers/log-events.js";
import { useMeshFixture } from "../helpers/mesh-fixture.js";
import { peerTlsPem, publicClient, putCas } from "../helpers/mesh.js";

const fx = useMeshFixture("granary-dead-session-");

/** Resolves once `cond` holds, checking on every tick of A's own timers' scale (25 ms). */
async function until(cond: () => boolean, signal: AbortSignal): Promise<void> {
  while (!cond()) {
    signal.throwIfAborted();
    await new Promise((r) => setTimeout(r, 25));
  }
}

it("every session whose connection was closed under busy streams is closed on the serving node", async () => {
  const proxy = await startFaultProxy();
  const log = eventLog();
  const a = await fx.node("a", [], { hooks: { peerLimits: { keepaliveIntervalMs: 300, keepaliveTimeoutMs: 1_000 } }, log: log.log });
  const listener = a.peerListener!;
  proxy.setTarget(listener.address().port);
  const sessions: ServerHttp2Session[] = [];
  listener.server.on("session", (s: ServerHttp2Session) => sessions.push(s));
  const conn = publicClient(a);
  const keys: string[] = [];
  for (let i = 0; i < 32; i++) keys.push(await putCas(conn, "default", bytes(32_000 + i, 64 * 1024 + i * 40_000)));
  conn.close();

  const tls = await peerTlsPem(fx.pki, "b");
  const client = createGrpcJsPeerClient(`https://127.0.0.1:${proxy.port}`, { tls, idleTimeoutMs: 10_000 });
  const stop = new AbortController();
  let received = 0;
  const reader = async (w: number): Promise<void> => {
    for (let i = w; !stop.signal.aborted; i += 16) {
      const batch = [keys[i % 32]!, keys[(i + 7) % 32]!, keys[(i + 13) % 32]!];
      try {
        for await (const f of client.readBodies({ bodies: batch.map((key) => ({ ref: { namespace: "default", kind: Kind.CAS, key }, digest: key, offset: 0n })) }, stop.signal)) {
          if (f.frame.case === "chunk") received += f.frame.value.length;
        }
      } catch {
        // Cut with its connection (or stopped): the next batch opens a stream on a new one.
      }
    }
  };
  const readers = Array.from({ length: 16 }, (_, w) => reader(w));
  const limit = AbortSignal.timeout(120_000);
  try {
    for (let cut = 0; cut < 6; cut++) {
      // Close the connection the bytes after the next 1-2 MiB travel on, once bodies flow on it.
      const before = received;
      await until(() => received > before, limit);
      proxy.closeAfter(1 + ((cut * 337_911) % (1 << 20)) + (1 << 20));
      await until(() => proxy.stats.closes > cut, limit);
    }
    stop.abort();
    await Promise.all(readers);
    client.close();
    // Every session ends: those Node reported at once, the others by the keepalive. (A
    // session the keepalive destroys may never emit 'close': its socket's close does not
    // complete either. Destroyed is what ends its streams, and the listener forgets it.)
    await until(() => sessions.every((x) => x.destroyed), limit);
    expect(listener.sessionCount()).toBe(0);
  } finally {
    stop.abort();
    client.close();
    await proxy.close();
  }
  expect(proxy.stats.closes).toBe(6);
  const reaped = log.lines.filter((l) => l["event"] === "peer.keepalive_timeout").length;
  console.log(`sessions closed by the keepalive: ${reaped} of ${sessions.length}`);
  expect(sessions.length).toBe(proxy.stats.connections);
});

it("once a stream's idle deadline fires on a connection that went silent, the next stream gets a new connection", async () => {
  const proxy = await startFaultProxy();
  const a = await fx.node("s");
  proxy.setTarget(a.peerListener!.address().port);
  const conn = publicClient(a);
  const key = await putCas(conn, "default", bytes(33_000, 300_000));
  conn.close();
  const tls = await peerTlsPem(fx.pki, "b");
  // The idle deadline (1 s) is far shorter than grpc-js's keepalive (10 s + 20 s): only the
  // rule under test can move the next stream off the dead connection in time.
  const client = createGrpcJsPeerClient(`https://127.0.0.1:${proxy.port}`, { tls, idleTimeoutMs: 1_000 });
  const read = async (): Promise<number> => {
    let n = 0;
    for await (const f of client.readBodies({ bodies: [{ ref: { namespace: "default", kind: Kind.CAS, key }, digest: key, offset: 0n }] }, AbortSignal.timeout(60_000))) {
      if (f.frame.case === "chunk") n += f.frame.value.length;
    }
    return n;
  };
  try {
    expect(await read()).toBe(300_000);
    // The connection dies without either end being told: nothing more crosses it.
    expect(proxy.freezeAll()).toBe(1);
    const stalled = await read().then(
      () => undefined,
      (e: unknown) => e as Error & { code?: string },
    );
    expect(stalled?.code).toBe("IDLE_TIMEOUT");
    expect(stalled?.message).toContain("later streams use a new one");
    expect(client.counters().replacedConnections).toBe(1);
    // The next stream dials again (the proxy forwards new connections) and gets its body.
    expect(await read()).toBe(300_000);
    expect(proxy.stats.connections).toBe(2);
    expect(client.counters().replacedConnections).toBe(1);
  } finally {
    client.close();
    await proxy.close();
  }
});
