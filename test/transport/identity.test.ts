/**
 * The trust rule applied directly to certificates (no TLS), so each clause is proven on its
 * own, including the ones the TLS handshake would otherwise hide.
 */
import { X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HOSTILE_CERT_KINDS } from "../../src/certs/hostile-certs.js";
import { nodeIdentityUri, nodeNameFromUri } from "../../src/certs/node-id.js";
import { checkNodeCertificate, parseSubjectAltName } from "../../src/transport/identity.js";
import { makePki, type Pki } from "./fixtures.js";

let root: string;
let pki: Pki;
const load = async (f: string): Promise<X509Certificate> => new X509Certificate(await readFile(f));

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "granary-identity-test-"));
  pki = await makePki(join(root, "pki"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("checkNodeCertificate", () => {
  it("accepts a node leaf in both roles and honours the allow-list", async () => {
    const cert = await load((await pki.node("node-b")).certFile);
    expect(checkNodeCertificate(cert)).toEqual({ ok: true, nodeName: "node-b", fingerprint256: cert.fingerprint256 });
    expect(checkNodeCertificate(cert, undefined, "server")).toMatchObject({ ok: true, nodeName: "node-b" });
    expect(checkNodeCertificate(cert, new Set(["node-b"]))).toMatchObject({ ok: true });
    expect(checkNodeCertificate(cert, new Set(["node-a"]))).toEqual({ ok: false, reason: 'node "node-b" is not on the allow-list' });
  });

  it("refuses each identity-level defect, whatever TLS would have said", async () => {
    const expected: Record<string, RegExp | "ok"> = {
      "self-signed": "ok", // chain problems are TLS's job: identity-wise it is well formed
      "other-ca": "ok",
      expired: "ok",
      "not-yet-valid": "ok",
      "no-identity": /0 URI SANs/,
      "foreign-identity": /"spiffe:\/\/elsewhere\/node\/intruder" is not a node identity/,
      "two-identities": /2 URI SANs/,
      "ca-leaf": /CA certificate/,
      "server-auth-only": /lacks the clientAuth/,
      "no-eku": /lacks the clientAuth/,
    };
    for (const kind of HOSTILE_CERT_KINDS) {
      const id = checkNodeCertificate(await load((await pki.hostile(kind)).certFile));
      const want = expected[kind];
      if (want === "ok") expect(id, kind).toMatchObject({ ok: true, nodeName: "intruder" });
      else {
        expect(id.ok, kind).toBe(false);
        expect(id.ok ? "" : id.reason, kind).toMatch(want!);
      }
    }
    // As a server, serverAuth is what counts.
    expect(checkNodeCertificate(await load((await pki.hostile("server-auth-only")).certFile), undefined, "server").ok).toBe(true);
  });
});

describe("node identity format", () => {
  it("round-trips valid names and refuses look-alikes", () => {
    expect(nodeNameFromUri(nodeIdentityUri("node-1"))).toBe("node-1");
    for (const bad of [
      "spiffe://granary/node/",
      "spiffe://granary/node/Node",
      "spiffe://granary/node/a/b",
      "spiffe://granary/node/a?x=1",
      "spiffe://granary/node/a#f",
      "spiffe://granary/node/-a",
      "spiffe://granary.evil/node/a",
      "SPIFFE://granary/node/a",
      "spiffe://granary/nodes/a",
    ]) {
      expect(nodeNameFromUri(bad), bad).toBeUndefined();
    }
    expect(() => nodeIdentityUri("a b")).toThrow(RangeError);
  });
});

describe("parseSubjectAltName", () => {
  it("parses Node's rendering, including JSON-quoted values", () => {
    expect(parseSubjectAltName("URI:spiffe://granary/node/a, DNS:a, IP Address:127.0.0.1")).toEqual([
      { type: "URI", value: "spiffe://granary/node/a" },
      { type: "DNS", value: "a" },
      { type: "IP Address", value: "127.0.0.1" },
    ]);
    // A value smuggling a separator is quoted by Node: it stays ONE entry.
    expect(parseSubjectAltName('URI:"spiffe://x, URI:spiffe://granary/node/a", DNS:b')).toEqual([
      { type: "URI", value: "spiffe://x, URI:spiffe://granary/node/a" },
      { type: "DNS", value: "b" },
    ]);
    expect(parseSubjectAltName("")).toEqual([]);
    expect(parseSubjectAltName("garbage")).toBeUndefined();
    expect(parseSubjectAltName('URI:"unterminated')).toBeUndefined();
    expect(parseSubjectAltName('URI:"a"x')).toBeUndefined();
  });
});
