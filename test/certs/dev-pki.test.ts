/**
 * Dev PKI against the real openssl CLI: files land where documented, keys are private,
 * openssl itself verifies the chain, and the extensions are exactly the documented ones.
 */
import { X509Certificate, createPrivateKey } from "node:crypto";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { caFiles, initCa, issueCert } from "../../src/certs/dev-pki.js";
import { CertsError } from "../../src/certs/errors.js";
import { HOSTILE_CERT_KINDS, createHostileCert } from "../../src/certs/hostile-certs.js";
import { runOpenssl } from "../../src/certs/openssl.js";
import { classifySan } from "../../src/certs/san.js";

let root: string;
let dir: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "granary-certs-test-"));
  dir = join(root, "pki");
  await initCa({ dir });
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function x509(file: string): Promise<X509Certificate> {
  return new X509Certificate(await readFile(file));
}

async function opensslVerify(caFile: string, certFile: string): Promise<{ ok: boolean; detail: string }> {
  try {
    return { ok: true, detail: await runOpenssl(["verify", "-x509_strict", "-CAfile", caFile, certFile]) };
  } catch (e) {
    return { ok: false, detail: e instanceof Error ? e.message : String(e) };
  }
}

async function extensionsText(certFile: string): Promise<string> {
  return runOpenssl(["x509", "-in", certFile, "-noout", "-ext", "basicConstraints,keyUsage,extendedKeyUsage,subjectAltName"]);
}

describe("initCa", () => {
  it("writes a self-verifying P-256 CA with CA:true and keyCertSign, key 0600", async () => {
    const { certFile, keyFile } = caFiles(dir);
    expect(certFile).toBe(join(dir, "ca.pem"));
    expect(keyFile).toBe(join(dir, "ca-key.pem"));
    const cert = await x509(certFile);
    expect(cert.ca).toBe(true);
    expect(cert.checkPrivateKey(createPrivateKey(await readFile(keyFile)))).toBe(true);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    const ext = await extensionsText(certFile);
    expect(ext).toMatch(/CA:TRUE, pathlen:0/);
    expect(ext).toMatch(/Certificate Sign/);
    expect((await opensslVerify(certFile, certFile)).ok).toBe(true);
    // About ten years.
    const years = (Date.parse(cert.validTo) - Date.now()) / (365.25 * 86400_000);
    expect(years).toBeGreaterThan(9.9);
    expect(years).toBeLessThan(10.1);
  });

  it("refuses to replace an existing CA unless forced", async () => {
    const d = join(root, "pki-force");
    await initCa({ dir: d });
    const before = await readFile(join(d, "ca.pem"), "utf8");
    await expect(initCa({ dir: d })).rejects.toMatchObject({ code: "CA_EXISTS" });
    expect(await readFile(join(d, "ca.pem"), "utf8")).toBe(before);
    await initCa({ dir: d, force: true });
    expect(await readFile(join(d, "ca.pem"), "utf8")).not.toBe(before);
  });

  it("says clearly when openssl is missing", async () => {
    const err: unknown = await initCa({ dir: join(root, "pki-noopenssl"), openssl: { opensslBin: "/nonexistent/openssl" } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CertsError);
    expect(err).toMatchObject({ code: "OPENSSL_MISSING" });
    expect((err as Error).message).toMatch(/openssl command was not found/);
  });
});

describe("issueCert", () => {
  it("issues a node leaf openssl verifies, with the documented SANs and usages", async () => {
    const out = await issueCert({ dir, name: "node-a", sans: ["10.0.0.7", "Cache.Example.org", "::1", "DNS:node-a"] });
    expect(out.certFile).toBe(join(dir, "node-a.pem"));
    expect(out.keyFile).toBe(join(dir, "node-a-key.pem"));
    expect(out.nodeIdentity).toBe("spiffe://granary/node/node-a");
    expect((await opensslVerify(join(dir, "ca.pem"), out.certFile)).ok).toBe(true);
    expect((await stat(out.keyFile)).mode & 0o777).toBe(0o600);

    const cert = await x509(out.certFile);
    expect(cert.ca).toBe(false);
    expect(cert.checkPrivateKey(createPrivateKey(await readFile(out.keyFile)))).toBe(true);
    expect(cert.subjectAltName).toBe(
      "URI:spiffe://granary/node/node-a, DNS:node-a, DNS:localhost, IP Address:127.0.0.1, IP Address:10.0.0.7, DNS:cache.example.org, IP Address:0:0:0:0:0:0:0:1",
    );
    expect(out.sans).toEqual([
      "URI:spiffe://granary/node/node-a", "DNS:node-a", "DNS:localhost", "IP:127.0.0.1", "IP:10.0.0.7", "DNS:cache.example.org", "IP:::1",
    ]);
    expect(cert.keyUsage?.slice().sort()).toEqual(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]);
    const ext = await extensionsText(out.certFile);
    expect(ext).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
    expect(ext).toMatch(/Key Usage: critical\s+Digital Signature\n/);
    expect(ext).toMatch(/TLS Web Server Authentication, TLS Web Client Authentication/);
  });

  it("rotates a leaf by re-issuing over the old files", async () => {
    const a = await issueCert({ dir, name: "node-r" });
    const first = (await x509(a.certFile)).fingerprint256;
    await issueCert({ dir, name: "node-r", days: 1 });
    const second = await x509(a.certFile);
    expect(second.fingerprint256).not.toBe(first);
    expect(Date.parse(second.validTo) - Date.now()).toBeLessThan(2 * 86400_000);
  });

  it("validates the name, the SANs and the CA's presence", async () => {
    for (const name of ["", "Node", "-a", "a-", "a_b", "a.b", "x".repeat(64)]) {
      await expect(issueCert({ dir, name })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    }
    await expect(issueCert({ dir, name: "x".repeat(63) })).resolves.toBeDefined();
    await expect(issueCert({ dir, name: "ok", sans: ["bad name"] })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(issueCert({ dir, name: "ok", sans: ["a\nURI.2 = spiffe://granary/node/evil"] })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(issueCert({ dir, name: "ok", sans: ["URI:spiffe://granary/node/other"] })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(issueCert({ dir, name: "ok", days: 0 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(issueCert({ dir: join(root, "no-ca"), name: "ok" })).rejects.toMatchObject({ code: "CA_MISSING" });
  });
});

describe("classifySan", () => {
  it("classifies IPs and DNS names and refuses everything else", () => {
    expect(classifySan("127.0.0.2")).toEqual({ type: "IP", value: "127.0.0.2" });
    expect(classifySan("fe80::1")).toEqual({ type: "IP", value: "fe80::1" });
    expect(classifySan("IP:10.1.2.3")).toEqual({ type: "IP", value: "10.1.2.3" });
    expect(classifySan("*.Mesh.Example")).toEqual({ type: "DNS", value: "*.mesh.example" });
    expect(classifySan(" node-b ")).toEqual({ type: "DNS", value: "node-b" });
    for (const bad of ["", "IP:node", "a..b", "a,b", "-a.b", "a b", "é.example", `${"a".repeat(64)}.b`]) {
      expect(() => classifySan(bad), bad).toThrow(CertsError);
    }
  });
});

describe("createHostileCert", () => {
  it("makes every kind, each broken in the documented way", async () => {
    const out = join(root, "hostile");
    const ca = join(dir, "ca.pem");
    const made = new Map<string, { certFile: string; keyFile: string }>();
    for (const kind of HOSTILE_CERT_KINDS) made.set(kind, await createHostileCert({ caDir: dir, outDir: out, kind }));
    const get = (k: string) => made.get(k)!.certFile;

    expect((await opensslVerify(ca, get("self-signed"))).ok).toBe(false);
    expect((await opensslVerify(ca, get("other-ca"))).ok).toBe(false);
    expect((await opensslVerify(join(out, "other-ca", "ca.pem"), get("other-ca"))).ok).toBe(true);
    expect((await opensslVerify(ca, get("expired"))).detail).toMatch(/expired/);
    expect((await opensslVerify(ca, get("not-yet-valid"))).detail).toMatch(/not yet valid/);
    // These chain to the mesh CA: only the identity rule can refuse them.
    for (const k of ["no-identity", "foreign-identity", "two-identities", "ca-leaf", "server-auth-only", "no-eku"]) {
      expect((await opensslVerify(ca, get(k))).ok, k).toBe(true);
    }
    expect((await x509(get("no-identity"))).subjectAltName).not.toMatch(/URI:/);
    expect((await x509(get("foreign-identity"))).subjectAltName).toMatch(/^URI:spiffe:\/\/elsewhere\/node\/intruder, /);
    expect((await x509(get("two-identities"))).subjectAltName?.match(/URI:/g)).toHaveLength(2);
    expect((await x509(get("ca-leaf"))).ca).toBe(true);
    expect((await x509(get("server-auth-only"))).keyUsage).toEqual(["1.3.6.1.5.5.7.3.1"]);
    expect((await x509(get("no-eku"))).keyUsage).toBeUndefined();
    for (const [kind, f] of made) {
      expect((await stat(f.keyFile)).mode & 0o777, kind).toBe(0o600);
    }
  });
});
