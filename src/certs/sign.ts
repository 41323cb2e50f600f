/**
 * Key generation and certificate signing with the openssl CLI. Every certificate, the CA's
 * own included, is signed by `openssl ca` from a config file this module writes: that one path
 * supports explicit notBefore/notAfter (OpenSSL 3.0's `x509`/`req` cannot backdate, which the
 * expired and not-yet-valid test certificates need), copies no extension from the CSR, and
 * puts exactly the extensions of the profile into the certificate.
 */
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { runOpenssl, type OpensslOptions } from "./openssl.js";
import { sanConfigLines, type San } from "./san.js";

/** The X.509v3 extensions of a certificate, as openssl config values. */
export interface CertProfile {
  /** basicConstraints: true makes a CA (pathlen 0: it may sign leaves only). */
  ca: boolean;
  /** keyUsage value, e.g. "critical, digitalSignature". */
  keyUsage: string;
  /** extendedKeyUsage value, e.g. "serverAuth, clientAuth"; omitted when undefined. */
  extendedKeyUsage?: string;
  /** subjectAltName entries; none when empty. */
  sans: readonly San[];
}

export interface SignRequest {
  /** Scratch directory for the CSR, config and openssl's database. */
  workDir: string;
  /** PEM private key of the subject. */
  keyFile: string;
  /** Subject common name (informational; identity lives in the SANs). */
  commonName: string;
  profile: CertProfile;
  /** The issuing CA, or "self" for a self-signed certificate. */
  issuer: { certFile: string; keyFile: string } | "self";
  notBefore: Date;
  notAfter: Date;
  /** Where the PEM certificate is written. */
  outFile: string;
  openssl?: OpensslOptions;
}

/** Writes a fresh EC P-256 private key (PKCS#8 PEM) to `file`. */
export async function generateKey(file: string, openssl?: OpensslOptions): Promise<void> {
  await runOpenssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", file], openssl);
}

/** Signs a certificate for `keyFile` with the given profile and validity. */
export async function signCertificate(req: SignRequest): Promise<void> {
  // Absolute paths throughout: `openssl ca` runs with cwd = workDir (see below).
  const w = (f: string) => resolve(join(req.workDir, f));
  const keyFile = resolve(req.keyFile);
  const config = w("openssl.cnf");
  await writeFile(config, renderConfig(req.profile), { mode: 0o600 });
  await writeFile(w("index.txt"), "");
  await writeFile(w("serial"), `${randomSerial()}\n`);
  await runOpenssl(
    ["req", "-new", "-config", config, "-key", keyFile, "-subj", `/CN=${req.commonName}`, "-out", w("req.csr")],
    req.openssl,
  );
  const signer =
    req.issuer === "self"
      ? ["-selfsign", "-keyfile", keyFile]
      : ["-cert", resolve(req.issuer.certFile), "-keyfile", resolve(req.issuer.keyFile)];
  // cwd = workDir: the config names openssl's database files relative to it.
  await runOpenssl(
    [
      "ca", "-batch", "-notext", "-config", config, "-extensions", "ext", "-md", "sha256",
      "-startdate", opensslTime(req.notBefore), "-enddate", opensslTime(req.notAfter),
      ...signer, "-in", w("req.csr"), "-out", resolve(req.outFile),
    ],
    { ...req.openssl, cwd: w(".") },
  );
}

function renderConfig(p: CertProfile): string {
  const ext = [
    p.ca ? "basicConstraints = critical, CA:true, pathlen:0" : "basicConstraints = critical, CA:false",
    `keyUsage = ${p.keyUsage}`,
    ...(p.extendedKeyUsage !== undefined ? [`extendedKeyUsage = ${p.extendedKeyUsage}`] : []),
    "subjectKeyIdentifier = hash",
    "authorityKeyIdentifier = keyid",
    ...(p.sans.length > 0 ? ["subjectAltName = @alt"] : []),
  ];
  return [
    "[req]", "distinguished_name = dn", "prompt = no", "[dn]", "CN = unused",
    "[ca]", "default_ca = dev",
    "[dev]", "database = index.txt", "new_certs_dir = .", "serial = serial",
    "default_md = sha256", "policy = any", "unique_subject = no", "copy_extensions = none", "email_in_dn = no",
    "[any]", "commonName = supplied",
    "[ext]", ...ext,
    "[alt]", ...sanConfigLines(p.sans),
    "",
  ].join("\n");
}

/** 128 random bits as hex, top bit clear so the DER INTEGER stays positive, never zero. */
function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = ((b[0] ?? 0) & 0x7f) | 0x10;
  return b.toString("hex").toUpperCase();
}

/** GeneralizedTime as `openssl ca -startdate/-enddate` takes it: YYYYMMDDHHMMSSZ. */
function opensslTime(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z").replace(/[-:T]/g, "");
}
