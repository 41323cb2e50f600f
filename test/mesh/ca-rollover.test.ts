/**
 * Mesh CA rollover with an overlap bundle: while the CA file of every node holds both the old
 * and the new CA, a node issued by the old CA and a node issued by the new one replicate to each
 * other over mTLS; a node that trusts only the new CA refuses the old one's node (its peer link
 * never gets past the handshake), so removing the old CA from the bundle is what ends its trust.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { useMeshFixture } from "../helpers/mesh-fixture.js";
import { makePki, publicClient, putCas, waitForArtifacts, type Pki } from "../helpers/mesh.js";
import { bytes } from "../helpers/data.js";
import { eventLog } from "../helpers/log-events.js";
import { diagnoseDial, type PeerTlsPem } from "../../src/transport/peer-channel.js";

const mesh = useMeshFixture("granary-ca-rollover-");

/** `issuer`'s node certificates, trusting the CA file `caFile` (a bundle or a single CA). */
const trusting = (issuer: Pki, caFile: string): Pki => ({ dir: issuer.dir, ca: caFile, cert: (name) => issuer.cert(name) });

describe("mesh CA rollover", () => {
  it("nodes of the old and the new CA replicate through an overlap bundle; trusting only the new CA refuses the old one's nodes", async () => {
    const oldCa = mesh.pki;
    const newCa = await makePki(join(mesh.root, "pki-new"));
    const bundle = join(mesh.root, "ca-bundle.pem");
    await writeFile(bundle, Buffer.concat([await readFile(oldCa.ca), await readFile(newCa.ca)]));

    const a = await mesh.node(mesh.uniq("a"), [], { pki: trusting(oldCa, bundle) });
    const b = await mesh.node(mesh.uniq("b"), [a], { pki: trusting(newCa, bundle) });
    const conn = publicClient(a);
    try {
      const key = await putCas(conn, "roll", bytes(5, 300_000));
      await waitForArtifacts(b, "roll", [key]);
    } finally {
      conn.close();
    }
    // Each side's link got past mTLS: B follows A, and A learned B through Hello.
    expect(b.replication?.allLinks().map((l) => l.stats.nodeId)).toContain(a.store.nodeId);

    // A node that trusts only the new CA: its dial to A (old CA) fails the handshake.
    const log = eventLog();
    const c = await mesh.node(mesh.uniq("c"), [a], { pki: trusting(newCa, newCa.ca), log: log.log });
    const retry = await log.waitFor((l) => l["event"] === "replication.retry");
    // The reason is in the log line, not only "could not connect within 5000 ms".
    expect(String(retry["cause"])).toMatch(/cannot connect to https:\/\/\S+: SELF_SIGNED_CERT_IN_CHAIN/);
    expect(c.replication?.allLinks()[0]?.stats.nodeId ?? "").toBe("");
  });

  it("a failed dial says why: port refused, the peer's certificate not from the mesh CA, or ours refused by the peer", async () => {
    const oldCa = mesh.pki;
    const newCa = await makePki(join(mesh.root, "pki-new-2"));
    const bundle = join(mesh.root, "ca-bundle-2.pem");
    await writeFile(bundle, Buffer.concat([await readFile(oldCa.ca), await readFile(newCa.ca)]));
    const pem = async (p: Pki, name: string, ca: string): Promise<PeerTlsPem> => {
      const c = await p.cert(name);
      return { ca: await readFile(ca), cert: await readFile(c.cert), key: await readFile(c.key) };
    };
    // x trusts only the old CA and is issued by it.
    const x = await mesh.node(mesh.uniq("x"));
    const target = new URL(x.peerAddress).host;

    expect(await diagnoseDial(target, await pem(oldCa, "d1", oldCa.ca))).toBeUndefined();
    // Our side does not trust x's certificate.
    expect(await diagnoseDial(target, await pem(newCa, "d2", newCa.ca))).toMatch(/SELF_SIGNED_CERT_IN_CHAIN/);
    // We trust x (bundle), x does not trust our certificate (new CA): its alert, after our handshake.
    expect(await diagnoseDial(target, await pem(newCa, "d3", bundle))).toMatch(/refused our certificate|alert/i);
    // Nothing listens.
    const closed = await mesh.node(mesh.uniq("gone"));
    const closedTarget = new URL(closed.peerAddress).host;
    await closed.close();
    expect(await diagnoseDial(closedTarget, await pem(oldCa, "d1", oldCa.ca))).toMatch(/ECONNREFUSED/);
  });
});
