/**
 * Scenario 11 — the mTLS matrix and certificate rotation. Every hostile certificate (and no
 * certificate) calls Hello on a real node's peer listener over raw HTTP/2; a "peer.rpc"
 * failpoint counts the calls that reached the handlers. A known-good node certificate is the
 * control (it must be counted, so the counter can fail the scenario). Also: a stuffed chain, a
 * peer RPC on the public listener, and a server presenting a client-only certificate to our
 * peer client. Then the node's certificate is rotated on disk while 64 clients call Hello
 * continuously (reconnecting every few calls): the node picks it up without a restart, new
 * handshakes see the new certificate, and no RPC fails.
 */
import { X509Certificate } from "node:crypto";
import { copyFile, cp, readFile, rename } from "node:fs/promises";
import { createSecureServer } from "node:http2";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { caFiles, issueCert } from "../../src/certs/dev-pki.js";
import { createHostileCert, HOSTILE_CERT_KINDS } from "../../src/certs/hostile-certs.js";
import { generateKey, signCertificate } from "../../src/certs/sign.js";
import { createGrpcJsPeerClient } from "../../src/transport/peer-client-grpcjs.js";
import { Failpoints } from "../../src/util/failpoints.js";
import { makePki, startMeshNode } from "../../test/helpers/mesh.js";
import { captureLog } from "../lib/capture-log.js";
import { chaosContext, Violations } from "../lib/context.js";
import { scratch } from "../lib/nodes.js";
import { grpcFrame, rawCall, rawSession } from "../lib/raw-grpc.js";

const ctx = chaosContext("11-mtls-matrix");
const ROTATION_CLIENTS = 64;
const ROTATIONS = ctx.size(2, 10);
const HELLO = "/granary.replication.v1.ReplicationService/Hello";

const cleanups: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

interface Attempt {
  readonly handshake: "refused" | "completed";
  readonly status: number | undefined;
  readonly failure: string | undefined;
}

async function helloWith(url: string, tls: { ca: Buffer; cert?: Buffer; key?: Buffer }): Promise<Attempt> {
  let session;
  try {
    session = await rawSession(url, { ...tls, ...(tls.cert ? {} : {}) });
  } catch (e) {
    return { handshake: "refused", status: undefined, failure: (e as Error).message };
  }
  session.on("error", () => {});
  try {
    const out = await rawCall(session, HELLO, grpcFrame(new Uint8Array(0)), 3000);
    return { handshake: "completed", status: out.status, failure: out.failure };
  } finally {
    session.destroy();
  }
}

it("14 hostile identities are refused before any handler runs; rotation on disk needs no restart and fails no RPC", async () => {
  const v = new Violations();
  const dir = await scratch("mtls");
  cleanups.push(dir.cleanup);
  const pki = await makePki(join(dir.path, "pki"));
  const fp = new Failpoints();
  fp.set("peer.rpc", () => {});
  const logA = captureLog();
  const a = await startMeshNode({ name: "a", pki, root: dir.path, hooks: { failpoints: fp, processMetrics: false }, log: logA.log });
  cleanups.push(() => a.close());
  const ca = await readFile(pki.ca);
  const url = a.peerAddress;
  const good = await pki.cert("c");
  const goodTls = { ca, cert: await readFile(good.cert), key: await readFile(good.key) };

  const cases: Array<{ name: string; tls: { ca: Buffer; cert?: Buffer; key?: Buffer } }> = [{ name: "no certificate", tls: { ca } }];
  const hostileDir = join(dir.path, "hostile");
  for (const kind of HOSTILE_CERT_KINDS) {
    const h = await createHostileCert({ caDir: pki.dir, outDir: hostileDir, kind, name: "c" });
    cases.push({ name: kind, tls: { ca, cert: await readFile(h.certFile), key: await readFile(h.keyFile) } });
  }
  // "Publicly chained": a leaf from a CA the mesh does not trust, sent with its full chain (the
  // server must use the mesh CA only, never a public list).
  const other = join(hostileDir, "other-ca");
  cases.push({ name: "chained to another CA (full chain sent)", tls: { ca, cert: Buffer.concat([await readFile(join(hostileDir, "hostile-other-ca.pem")), await readFile(caFiles(other).certFile)]), key: await readFile(join(hostileDir, "hostile-other-ca-key.pem")) } });
  // Stuffed chain: a self-signed leaf claiming the identity, followed by a valid node chain.
  cases.push({ name: "stuffed chain (self-signed leaf + valid node cert)", tls: { ca, cert: Buffer.concat([await readFile(join(hostileDir, "hostile-self-signed.pem")), goodTls.cert, ca]), key: await readFile(join(hostileDir, "hostile-self-signed-key.pem")) } });

  // Control: a real node certificate reaches the handler (so the counter works).
  const control = await helloWith(url, goodTls);
  v.check(control.status === 0 && fp.count("peer.rpc") === 1, `control: a node certificate got ${JSON.stringify(control)}, handler calls ${fp.count("peer.rpc")}`);

  const matrix: Array<{ case: string; refusedAt: string; handlerCalls: number }> = [];
  for (const c of cases) {
    const before = fp.count("peer.rpc");
    const r = await helloWith(url, c.tls);
    const calls = fp.count("peer.rpc") - before;
    const refusedAt = r.handshake === "refused" ? "handshake" : r.status === undefined ? `connection (${r.failure})` : `status ${r.status}`;
    matrix.push({ case: c.name, refusedAt, handlerCalls: calls });
    v.check(calls === 0 && r.status !== 0, `${c.name}: reached the handler (${calls} calls) or got OK: ${JSON.stringify(r)}`);
  }

  // Peer RPC on the public listener: UNIMPLEMENTED, no handler.
  {
    const before = fp.count("peer.rpc");
    const s = await rawSession(`http://127.0.0.1:${a.publicAddress.port}`);
    const out = await rawCall(s, HELLO, grpcFrame(new Uint8Array(0)), 3000);
    s.close();
    const calls = fp.count("peer.rpc") - before;
    matrix.push({ case: "peer RPC on the public listener", refusedAt: out.status !== undefined ? `status ${out.status}` : `HTTP ${out.httpStatus} (UNIMPLEMENTED)`, handlerCalls: calls });
    v.check((out.status === 12 || out.httpStatus === 404) && calls === 0, `peer RPC on the public listener: ${JSON.stringify(out)}, handler calls ${calls}`);
  }

  // A server presenting a client-only certificate: our peer client must refuse it.
  {
    const work = join(dir.path, "client-only");
    await cp(pki.dir, work, { recursive: true });
    const key = join(work, "co-key.pem");
    const cert = join(work, "co.pem");
    await generateKey(key);
    const now = Date.now();
    await signCertificate({
      workDir: work,
      keyFile: key,
      commonName: "client-only",
      profile: { ca: false, keyUsage: "critical, digitalSignature", extendedKeyUsage: "clientAuth", sans: [{ type: "URI", value: "spiffe://granary/node/a" }, { type: "DNS", value: "localhost" }, { type: "IP", value: "127.0.0.1" }] },
      issuer: caFiles(work),
      notBefore: new Date(now - 3600_000),
      notAfter: new Date(now + 86400_000),
      outFile: cert,
    });
    let streams = 0;
    const server = createSecureServer({ key: await readFile(key), cert: await readFile(cert), ca, requestCert: true, allowHTTP1: false });
    server.on("stream", (st) => {
      streams++;
      st.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      st.on("wantTrailers", () => st.sendTrailers({ "grpc-status": "0" }));
      st.end();
    });
    server.on("error", () => {});
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    const client = createGrpcJsPeerClient(`https://127.0.0.1:${port}`, { tls: { ca, cert: goodTls.cert, key: goodTls.key }, idleTimeoutMs: 3000 });
    let refused = "";
    try {
      await client.hello({ nodeId: "c" }, AbortSignal.timeout(5000));
    } catch (e) {
      refused = (e as Error).message;
    }
    client.close();
    await new Promise<void>((r) => server.close(() => r()));
    matrix.push({ case: "client certificate presented as server", refusedAt: refused ? "client refused the server" : "accepted", handlerCalls: streams });
    v.check(refused !== "" && streams === 0, `a server with a client-only certificate was accepted (${streams} streams): ${refused}`);
  }

  // Rotation: 64 clients call Hello continuously; the node's certificate is replaced on disk.
  const certPath = (await pki.cert("a")).cert;
  const keyPath = (await pki.cert("a")).key;
  const fingerprint = async (): Promise<string> => new X509Certificate(await readFile(certPath)).fingerprint256;
  let stop = false;
  let rpcs = 0;
  let failed = 0;
  const failures: string[] = [];
  const client = async (i: number): Promise<void> => {
    for (let round = 0; round < 100_000 && !stop; round++) {
      const s = await rawSession(url, goodTls).catch((e: unknown) => {
        failed++;
        if (failures.length < 5) failures.push(`client ${i} connect: ${(e as Error).message}`);
        return undefined;
      });
      if (!s) continue;
      s.on("error", () => {});
      for (let k = 0; k < 5 && !stop; k++) {
        const out = await rawCall(s, HELLO, grpcFrame(new Uint8Array(0)), 5000);
        rpcs++;
        if (out.status !== 0) {
          failed++;
          if (failures.length < 5) failures.push(`client ${i}: ${JSON.stringify(out)}`);
        }
      }
      s.close();
    }
  };
  const clients = Array.from({ length: ROTATION_CLIENTS }, (_, i) => client(i));
  const rotations: Array<{ reloadedAfterMs: number; newHandshakeSeesNewCert: boolean }> = [];
  const rotDir = join(dir.path, "rotate");
  await cp(pki.dir, rotDir, { recursive: true });
  for (let r = 0; r < ROTATIONS; r++) {
    const issued = await issueCert({ dir: rotDir, name: "a" });
    const reloadsBefore = logA.events.filter((e) => e["event"] === "tls.reloaded").length;
    const t0 = Date.now();
    // Key first, then certificate, each by rename (what cert-manager style tools do).
    await copyFile(issued.keyFile, `${keyPath}.new`);
    await copyFile(issued.certFile, `${certPath}.new`);
    await rename(`${keyPath}.new`, keyPath);
    await rename(`${certPath}.new`, certPath);
    const want = await fingerprint();
    let reloadedAfterMs = -1;
    for (let i = 0; i < 300 && reloadedAfterMs < 0; i++) {
      if (logA.events.filter((e) => e["event"] === "tls.reloaded").length > reloadsBefore) reloadedAfterMs = Date.now() - t0;
      else await new Promise((res) => setTimeout(res, 100));
    }
    const s = await rawSession(url, goodTls);
    const seen = (s.socket as unknown as { getPeerX509Certificate(): X509Certificate | undefined }).getPeerX509Certificate()?.fingerprint256;
    s.destroy();
    rotations.push({ reloadedAfterMs, newHandshakeSeesNewCert: seen === want });
    v.check(reloadedAfterMs >= 0, `rotation ${r}: no tls.reloaded event within 30 s`);
    v.check(seen === want, `rotation ${r}: a new handshake still sees the old certificate`);
  }
  stop = true;
  await Promise.all(clients);
  v.check(failed === 0, `${failed} of ${rpcs} RPCs failed during rotation: ${failures.join("; ")}`);
  v.check(rpcs > ROTATION_CLIENTS, `only ${rpcs} RPCs ran during rotation`);
  const refusedCount = matrix.filter((m) => m.handlerCalls === 0 && !m.refusedAt.startsWith("status 0") && m.refusedAt !== "accepted").length;
  const figures = {
    cases: matrix.length,
    refusedBeforeAnyHandler: refusedCount,
    matrix,
    controlHandlerCalls: 1,
    rotation: { clients: ROTATION_CLIENTS, rotations, rpcs, failedRpcs: failed, restarts: 0 },
    rejectedLogged: logA.events.filter((e) => e["event"] === "peer.rejected").length,
  };
  ctx.record({ passed: v.list.length === 0, figures, violations: v.list });
  ctx.log(JSON.stringify(figures));
  expect(v.list).toEqual([]);
});
