/**
 * The dev PKI: a private mesh CA and node certificates made with the openssl CLI.
 *
 * CA: DIR/ca.pem and DIR/ca-key.pem, EC P-256, CA:true with pathlen 0 (it signs node leaves,
 * never another CA), keyUsage keyCertSign+cRLSign, 10 years by default. An existing CA is never
 * overwritten unless `force` is set: replacing it silently would cut every node issued from it
 * out of the mesh.
 *
 * Node certificates: DIR/NAME.pem and DIR/NAME-key.pem, signed by DIR's CA. One certificate
 * serves both directions of the mesh (a node is server and client), so it carries CA:false,
 * keyUsage digitalSignature (critical) and extendedKeyUsage serverAuth+clientAuth. Its SANs
 * are the node identity URI spiffe://granary/node/NAME (the only URI: the peer listener
 * authorises on it), DNS:NAME, DNS:localhost and IP:127.0.0.1, plus any extra SAN given
 * (classified as IP or DNS). Re-issuing overwrites the node's files: that is how a leaf is
 * rotated. Private keys are written 0600.
 */
import { access } from "node:fs/promises";
import { join } from "node:path";
import { CertsError } from "./errors.js";
import { isValidNodeName, nodeIdentityUri } from "./node-id.js";
import type { OpensslOptions } from "./openssl.js";
import { classifySan, dedupeSans, type San } from "./san.js";
import { generateKey, signCertificate } from "./sign.js";
import { installFile, withWorkDir } from "./work-dir.js";

/** Default CA lifetime: 10 years, so a dev mesh never trips over its root expiring. */
export const DEFAULT_CA_DAYS = 3650;
/** Subject CN of the dev mesh CA. */
export const DEFAULT_CA_COMMON_NAME = "Granary dev mesh CA";

export interface CaFiles {
  /** DIR/ca.pem: the trust anchor every node is configured with. */
  certFile: string;
  /** DIR/ca-key.pem (mode 0600). */
  keyFile: string;
}

export interface InitCaOptions {
  /** Directory for ca.pem and ca-key.pem; created (0700) if missing. */
  dir: string;
  /** Replace an existing CA; default false. */
  force?: boolean;
  /** Validity in days; default DEFAULT_CA_DAYS. */
  days?: number;
  /** Subject CN; default DEFAULT_CA_COMMON_NAME. */
  commonName?: string;
  openssl?: OpensslOptions;
}

/** The CA file paths inside `dir`. */
export function caFiles(dir: string): CaFiles {
  return { certFile: join(dir, "ca.pem"), keyFile: join(dir, "ca-key.pem") };
}

/** Creates the mesh CA in `options.dir`. */
export async function initCa(options: InitCaOptions): Promise<CaFiles> {
  const days = options.days ?? DEFAULT_CA_DAYS;
  if (!Number.isInteger(days) || days < 1) throw new CertsError("INVALID_ARGUMENT", `days: want a positive integer, got ${days}`);
  const commonName = options.commonName ?? DEFAULT_CA_COMMON_NAME;
  if (!/^[A-Za-z0-9 ._-]{1,64}$/.test(commonName)) {
    throw new CertsError("INVALID_ARGUMENT", `commonName: want 1-64 of [A-Za-z0-9 ._-], got ${JSON.stringify(commonName)}`);
  }
  const files = caFiles(options.dir);
  if (options.force !== true) {
    for (const f of [files.certFile, files.keyFile]) {
      if (await exists(f)) {
        throw new CertsError("CA_EXISTS", `${f} already exists; refusing to replace the mesh CA (nodes issued from it would be locked out). Pass force to replace it.`);
      }
    }
  }
  return withWorkDir(options.dir, async (work) => {
    const key = join(work, "ca-key.pem");
    const cert = join(work, "ca.pem");
    await generateKey(key, options.openssl);
    const now = Date.now();
    await signCertificate({
      workDir: work,
      keyFile: key,
      commonName,
      profile: { ca: true, keyUsage: "critical, keyCertSign, cRLSign", sans: [] },
      issuer: "self",
      // Backdated an hour so a node whose clock runs slightly behind still accepts it.
      notBefore: new Date(now - 3600_000),
      notAfter: new Date(now + days * 86400_000),
      outFile: cert,
      ...(options.openssl !== undefined ? { openssl: options.openssl } : {}),
    });
    await installFile(key, files.keyFile, 0o600);
    await installFile(cert, files.certFile, 0o644);
    return files;
  });
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Default leaf lifetime. Short-lived leaves are the habit to keep (meshes rotate daily); 90
 * days keeps a dev mesh from expiring under a developer while still forcing rotation to work.
 */
export const DEFAULT_LEAF_DAYS = 90;

export interface IssueCertOptions {
  /** Directory holding the CA (ca.pem, ca-key.pem); the node files are written here too. */
  dir: string;
  /** Node name: 1-63 of [a-z0-9-], a DNS label. */
  name: string;
  /** Extra SANs (IP literals or DNS names; "DNS:"/"IP:" prefixes accepted). */
  sans?: readonly string[];
  /** Validity in days; default DEFAULT_LEAF_DAYS. */
  days?: number;
  openssl?: OpensslOptions;
}

export interface IssuedCert {
  /** DIR/NAME.pem */
  certFile: string;
  /** DIR/NAME-key.pem (mode 0600) */
  keyFile: string;
  /** spiffe://granary/node/NAME */
  nodeIdentity: string;
  /** The SANs written, as "URI:...", "DNS:...", "IP:...". */
  sans: string[];
}

/** Issues (or re-issues) the certificate of node `options.name`. */
export async function issueCert(options: IssueCertOptions): Promise<IssuedCert> {
  const { dir, name } = options;
  if (!isValidNodeName(name)) {
    throw new CertsError("INVALID_ARGUMENT", `name: ${JSON.stringify(name)} is not a node name; want 1-63 of [a-z0-9-], not starting or ending with "-"`);
  }
  const days = options.days ?? DEFAULT_LEAF_DAYS;
  if (!Number.isInteger(days) || days < 1) throw new CertsError("INVALID_ARGUMENT", `days: want a positive integer, got ${days}`);
  const ca = caFiles(dir);
  for (const f of [ca.certFile, ca.keyFile]) {
    try {
      await access(f);
    } catch (e) {
      throw new CertsError("CA_MISSING", `${f} not found; create the mesh CA first (initCa / "granary certs init")`, { cause: e });
    }
  }
  const nodeIdentity = nodeIdentityUri(name);
  const sans: San[] = dedupeSans([
    { type: "URI", value: nodeIdentity },
    { type: "DNS", value: name },
    { type: "DNS", value: "localhost" },
    { type: "IP", value: "127.0.0.1" },
    ...(options.sans ?? []).map(classifySan),
  ]);
  const certFile = join(dir, `${name}.pem`);
  const keyFile = join(dir, `${name}-key.pem`);
  await withWorkDir(dir, async (work) => {
    const key = join(work, "key.pem");
    const cert = join(work, "cert.pem");
    await generateKey(key, options.openssl);
    const now = Date.now();
    await signCertificate({
      workDir: work,
      keyFile: key,
      commonName: name,
      profile: { ca: false, keyUsage: "critical, digitalSignature", extendedKeyUsage: "serverAuth, clientAuth", sans },
      issuer: ca,
      // Backdated an hour to tolerate clock skew between nodes.
      notBefore: new Date(now - 3600_000),
      notAfter: new Date(now + days * 86400_000),
      outFile: cert,
      ...(options.openssl !== undefined ? { openssl: options.openssl } : {}),
    });
    // Key first, cert last: a TLS file watcher reloads when the cert lands, and by then the
    // matching key is already in place (a reload that catches the pair mid-swap fails and
    // keeps the old context; the next event retries).
    await installFile(key, keyFile, 0o600);
    await installFile(cert, certFile, 0o644);
  });
  return { certFile, keyFile, nodeIdentity, sans: sans.map((s) => `${s.type}:${s.value}`) };
}
