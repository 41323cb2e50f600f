/**
 * Hostile certificates for negative tests of the trust rule (src/transport/identity.ts). Each
 * kind breaks exactly one part of the rule, so a test that sees it refused proves that part
 * is enforced — by the TLS handshake (chain, validity, purpose) or by the identity check
 * (URI SAN, CA flag, EKU). Test tooling: production code never calls this.
 *
 * Kinds:
 * - self-signed       a node-identity leaf signed by its own key
 * - other-ca          a node-identity leaf from a freshly made, untrusted CA
 * - no-identity       mesh-CA leaf with DNS/IP SANs but no URI SAN
 * - foreign-identity  mesh-CA leaf whose URI is spiffe://elsewhere/node/NAME
 * - two-identities    mesh-CA leaf with two node identity URIs
 * - ca-leaf           mesh-CA cert with the node identity but CA:true (a signing cert)
 * - server-auth-only  mesh-CA leaf whose EKU lacks clientAuth
 * - no-eku            mesh-CA leaf without an extendedKeyUsage extension
 * - expired           mesh-CA leaf valid from 2 days ago until 1 day ago
 * - not-yet-valid     mesh-CA leaf valid from tomorrow
 */
import { join } from "node:path";
import { caFiles, initCa } from "./dev-pki.js";
import { CertsError } from "./errors.js";
import { NODE_ID_URI_PREFIX, nodeIdentityUri } from "./node-id.js";
import type { OpensslOptions } from "./openssl.js";
import type { San } from "./san.js";
import { generateKey, signCertificate, type CertProfile } from "./sign.js";
import { installFile, withWorkDir } from "./work-dir.js";

export const HOSTILE_CERT_KINDS = [
  "self-signed",
  "other-ca",
  "no-identity",
  "foreign-identity",
  "two-identities",
  "ca-leaf",
  "server-auth-only",
  "no-eku",
  "expired",
  "not-yet-valid",
] as const;

export type HostileCertKind = (typeof HOSTILE_CERT_KINDS)[number];

export interface HostileCertOptions {
  /** Directory of the mesh CA (for the kinds the mesh CA signs). */
  caDir: string;
  /** Where OUT/hostile-KIND.pem and -key.pem are written (and other-ca's CA, under OUT/other-ca). */
  outDir: string;
  kind: HostileCertKind;
  /** Node name the certificate claims; default "intruder". */
  name?: string;
  openssl?: OpensslOptions;
}

export interface HostileCert {
  kind: HostileCertKind;
  certFile: string;
  keyFile: string;
}

const DAY_MS = 86400_000;
const LEAF: Omit<CertProfile, "sans"> = {
  ca: false,
  keyUsage: "critical, digitalSignature",
  extendedKeyUsage: "serverAuth, clientAuth",
};

/** Writes one hostile certificate and its key. */
export async function createHostileCert(options: HostileCertOptions): Promise<HostileCert> {
  const { kind, outDir } = options;
  const name = options.name ?? "intruder";
  const id: San = { type: "URI", value: nodeIdentityUri(name) };
  const common: San[] = [{ type: "DNS", value: name }, { type: "DNS", value: "localhost" }, { type: "IP", value: "127.0.0.1" }];
  const now = Date.now();
  let profile: CertProfile = { ...LEAF, sans: [id, ...common] };
  let issuer: { certFile: string; keyFile: string } | "self" = issuerOf(options.caDir);
  let notBefore = new Date(now - 3600_000);
  let notAfter = new Date(now + DAY_MS);
  switch (kind) {
    case "self-signed":
      issuer = "self";
      break;
    case "other-ca": {
      const otherDir = join(outDir, "other-ca");
      await initCa({ dir: otherDir, force: true, commonName: "Hostile CA", ...opensslOpt(options) });
      issuer = issuerOf(otherDir);
      break;
    }
    case "no-identity":
      profile = { ...LEAF, sans: common };
      break;
    case "foreign-identity":
      profile = { ...LEAF, sans: [{ type: "URI", value: `spiffe://elsewhere/node/${name}` }, ...common] };
      break;
    case "two-identities":
      profile = { ...LEAF, sans: [id, { type: "URI", value: `${NODE_ID_URI_PREFIX}${name}-twin` }, ...common] };
      break;
    case "ca-leaf":
      profile = { ca: true, keyUsage: "critical, digitalSignature, keyCertSign", extendedKeyUsage: "serverAuth, clientAuth", sans: [id, ...common] };
      break;
    case "server-auth-only":
      profile = { ...LEAF, extendedKeyUsage: "serverAuth", sans: [id, ...common] };
      break;
    case "no-eku":
      profile = { ca: false, keyUsage: "critical, digitalSignature", sans: [id, ...common] };
      break;
    case "expired":
      notBefore = new Date(now - 2 * DAY_MS);
      notAfter = new Date(now - DAY_MS);
      break;
    case "not-yet-valid":
      notBefore = new Date(now + DAY_MS);
      notAfter = new Date(now + 2 * DAY_MS);
      break;
    default:
      throw new CertsError("INVALID_ARGUMENT", `kind: unknown hostile certificate kind ${JSON.stringify(kind satisfies never)}`);
  }
  const certFile = join(outDir, `hostile-${kind}.pem`);
  const keyFile = join(outDir, `hostile-${kind}-key.pem`);
  await withWorkDir(outDir, async (work) => {
    const key = join(work, "key.pem");
    const cert = join(work, "cert.pem");
    await generateKey(key, options.openssl);
    await signCertificate({
      workDir: work,
      keyFile: key,
      commonName: `hostile-${kind}`,
      profile,
      issuer,
      notBefore,
      notAfter,
      outFile: cert,
      ...opensslOpt(options),
    });
    await installFile(key, keyFile, 0o600);
    await installFile(cert, certFile, 0o644);
  });
  return { kind, certFile, keyFile };
}

function issuerOf(dir: string): { certFile: string; keyFile: string } {
  return caFiles(dir);
}

function opensslOpt(o: { openssl?: OpensslOptions }): { openssl?: OpensslOptions } {
  return o.openssl !== undefined ? { openssl: o.openssl } : {};
}
