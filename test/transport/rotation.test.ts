/**
 * Certificate rotation on the peer listener without a restart: the files on disk are replaced
 * by a certificate and CA from a NEW CA, reloadTls() (or the file watcher) swaps the secure
 * context, and from then on a client trusting only the new CA connects while one from the old
 * CA is refused. Connections established before the swap keep working, client certificates
 * are still demanded, and an unusable replacement is refused while the old context stays.
 */
import { renameSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ReplicationService } from "../../src/gen/granary/replication/v1/replication_pb.js";
import { createConnectHandler } from "../../src/transport/connect-handler.js";
import { createPeerConnectTransport } from "../../src/transport/peer-transport.js";
import { createPeerServer, type ListeningServer } from "../../src/transport/server.js";
import { makePki, StubReplication, type Pki } from "./fixtures.js";

let root: string;
let oldPki: Pki;
let newPki: Pki;
let serve: { caFile: string; certFile: string; keyFile: string };
const cleanups: (() => void | Promise<void>)[] = [];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "granary-rotation-test-"));
  oldPki = await makePki(join(root, "old"));
  newPki = await makePki(join(root, "new"));
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/**
 * Puts `pki`'s CA and node-a's pair where the listener reads its TLS files: staged first, then
 * renamed over the live files without yielding to the event loop, so a watcher-triggered
 * reload can only ever read the complete new set.
 */
async function install(pki: Pki): Promise<void> {
  const a = await pki.node("node-a");
  const moves = [
    [pki.caFile, serve.caFile],
    [a.keyFile, serve.keyFile],
    [a.certFile, serve.certFile],
  ] as const;
  for (const [from, to] of moves) await copyFile(from, `${to}.tmp`);
  for (const [, to] of moves) renameSync(`${to}.tmp`, to);
}

async function start(dir: string, watchTls: boolean, onTlsReload?: (err: Error | undefined) => void): Promise<ListeningServer> {
  await mkdir(dir, { recursive: true });
  serve = { caFile: join(dir, "ca.pem"), certFile: join(dir, "node.pem"), keyFile: join(dir, "node-key.pem") };
  await install(oldPki);
  const server = await createPeerServer({
    handler: createConnectHandler({ routes: new StubReplication().routes }),
    listen: { host: "127.0.0.1", port: 0 },
    tls: serve,
    watchTls,
    tlsWatchDebounceMs: 50,
    ...(onTlsReload !== undefined ? { onTlsReload } : {}),
  });
  cleanups.push(() => server.close(0));
  return server;
}

/** A fresh connection (own transport) from node-b of `pki`; resolves to the node name the server saw. */
async function helloFrom(server: ListeningServer, pki: Pki): Promise<string> {
  const t = createPeerConnectTransport({ baseUrl: `https://127.0.0.1:${server.address().port}`, tls: await pki.pem(await pki.node("node-b")) });
  cleanups.push(() => t.close());
  return (await createClient(ReplicationService, t.transport).hello({}, { timeoutMs: 20_000 })).nodeId;
}

describe("reloadTls", () => {
  it("rotates to a new CA: new clients connect, old-CA clients are refused, live connections stay", async () => {
    const server = await start(join(root, "serve-manual"), false);
    const oldTransport = createPeerConnectTransport({ baseUrl: `https://127.0.0.1:${server.address().port}`, tls: await oldPki.pem(await oldPki.node("node-b")) });
    cleanups.push(() => oldTransport.close());
    const oldClient = createClient(ReplicationService, oldTransport.transport);
    expect((await oldClient.hello({})).nodeId).toBe("node-b");
    await expect(helloFrom(server, newPki)).rejects.toBeDefined();

    await install(newPki);
    await server.reloadTls();

    expect(await helloFrom(server, newPki)).toBe("node-b");
    await expect(helloFrom(server, oldPki)).rejects.toBeDefined();
    // The connection made before the swap keeps its context.
    expect((await oldClient.hello({})).nodeId).toBe("node-b");
    // Client certificates are still demanded by the new context.
    const baseUrl = `https://127.0.0.1:${server.address().port}`;
    const anon = new Http2SessionManager(baseUrl, undefined, { ca: await readFile(newPki.caFile), servername: "localhost" });
    cleanups.push(() => anon.abort());
    await expect(createClient(ReplicationService, createGrpcTransport({ baseUrl, sessionManager: anon })).hello({})).rejects.toBeDefined();
    expect(server.sessionCount()).toBeGreaterThanOrEqual(2);
  });

  it("refuses an unusable replacement and keeps serving with the old context", async () => {
    const server = await start(join(root, "serve-bad"), false);
    // A key that is not the certificate's.
    await copyFile((await oldPki.node("node-z")).keyFile, serve.keyFile);
    await expect(server.reloadTls()).rejects.toMatchObject({ code: "TLS_FILES" });
    await writeFile(serve.certFile, "not a certificate");
    await expect(server.reloadTls()).rejects.toMatchObject({ code: "TLS_FILES" });
    expect(await helloFrom(server, oldPki)).toBe("node-b");
  });
});

describe("watchTls", () => {
  it("reloads by itself when the files are replaced", async () => {
    const reloads: (Error | undefined)[] = [];
    let onReload: (() => void) | undefined;
    const server = await start(join(root, "serve-watch"), true, (err) => {
      reloads.push(err);
      onReload?.();
    });
    const succeeded = new Promise<void>((resolve) => {
      onReload = () => {
        if (reloads.at(-1) === undefined) resolve();
      };
    });
    await install(newPki);
    await succeeded;
    expect(await helloFrom(server, newPki)).toBe("node-b");
    await expect(helloFrom(server, oldPki)).rejects.toBeDefined();
  });
});
