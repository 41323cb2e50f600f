/**
 * The trust rule of the peer plane. A TLS peer is a mesh node iff
 *
 *  1. its certificate chains to the mesh CA. The TLS layer checks this: the peer listener is
 *     configured with `ca: [meshCa]` (which replaces Node's public CA list: a publicly issued
 *     certificate must never be a node), `requestCert: true` and `rejectUnauthorized: true`;
 *     here we only insist that the socket says `authorized`. Validity dates are part of it.
 *  2. the verified leaf (depth 0, the one TLS checked: identity is never read from any other
 *     certificate the peer sent) carries exactly one URI SAN, and it is
 *     `spiffe://granary/node/<name>` with a valid node name (SPIFFE X.509-SVID: more than one
 *     URI SAN must be rejected);
 *  3. the leaf is not a CA (CA:true certificates sign, they do not authenticate);
 *  4. the leaf allows the role it plays: extendedKeyUsage must be present and include
 *     clientAuth for a caller (serverAuth when we check the server we dialled);
 *  5. when an allow-list is configured, the node name is on it.
 *
 * SANs are read from `crypto.X509Certificate` and parsed with Node's escaping rules (values
 * that contain separators come JSON-quoted since CVE-2021-44532), never by naive splitting.
 * Key-usage bits are not exposed by Node; a CA:false leaf cannot sign for the chain anyway.
 */
import { X509Certificate } from "node:crypto";
import type { TLSSocket } from "node:tls";
import { nodeNameFromUri } from "../certs/node-id.js";

/** The outcome of applying the trust rule to one peer. */
export type PeerIdentity = { ok: true; nodeName: string; fingerprint256: string } | { ok: false; reason: string };

/** Which side of the TLS connection the checked certificate belongs to. */
export type PeerRole = "client" | "server";

const EKU_SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
const EKU_CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";

/**
 * Applies rules 2-5 to a certificate that TLS has already verified against the mesh CA.
 * `role` selects the EKU required: "client" (default) for callers on the peer listener.
 */
export function checkNodeCertificate(cert: X509Certificate, allow?: ReadonlySet<string>, role: PeerRole = "client"): PeerIdentity {
  if (cert.ca) return { ok: false, reason: "certificate is a CA certificate (CA:true), not a node leaf" };
  const eku = cert.keyUsage; // Node names the extendedKeyUsage OIDs "keyUsage"
  const wantEku = role === "client" ? EKU_CLIENT_AUTH : EKU_SERVER_AUTH;
  if (eku === undefined || !eku.includes(wantEku)) {
    return { ok: false, reason: `certificate lacks the ${role === "client" ? "clientAuth" : "serverAuth"} extended key usage` };
  }
  const sans = parseSubjectAltName(cert.subjectAltName ?? "");
  if (sans === undefined) return { ok: false, reason: "certificate subjectAltName could not be parsed" };
  const uris = sans.filter((s) => s.type === "URI");
  if (uris.length !== 1) {
    return { ok: false, reason: `certificate carries ${uris.length} URI SANs; a node certificate carries exactly one, its node identity` };
  }
  const uri = uris[0]?.value ?? "";
  const nodeName = nodeNameFromUri(uri);
  if (nodeName === undefined) {
    return { ok: false, reason: `URI SAN ${JSON.stringify(uri)} is not a node identity (spiffe://granary/node/<name>)` };
  }
  if (allow !== undefined && !allow.has(nodeName)) return { ok: false, reason: `node ${JSON.stringify(nodeName)} is not on the allow-list` };
  return { ok: true, nodeName, fingerprint256: cert.fingerprint256 };
}

/** Applies the whole rule to the peer of a server-side TLS socket (the caller). */
export function peerIdentityFromSocket(socket: TLSSocket, allow?: ReadonlySet<string>): PeerIdentity {
  if (socket.encrypted !== true) return { ok: false, reason: "connection is not TLS" };
  if (!socket.authorized) {
    const why = socket.authorizationError;
    return { ok: false, reason: `certificate not verified by the mesh CA${why !== undefined ? `: ${String(why)}` : ""}` };
  }
  const raw = socket.getPeerCertificate().raw as Buffer | undefined;
  if (raw === undefined || raw.length === 0) return { ok: false, reason: "no client certificate" };
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(raw);
  } catch (e) {
    return { ok: false, reason: `client certificate could not be parsed: ${e instanceof Error ? e.message : String(e)}` };
  }
  return checkNodeCertificate(cert, allow, "client");
}

/**
 * Parses Node's subjectAltName rendering ("DNS:a, URI:spiffe://x, IP Address:1.2.3.4"), in
 * which a value containing a separator or a quote is a JSON string literal. Returns undefined
 * when the text does not follow that grammar.
 */
export function parseSubjectAltName(text: string): { type: string; value: string }[] | undefined {
  const out: { type: string; value: string }[] = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(":", i);
    if (colon < 0) return undefined;
    const type = text.slice(i, colon);
    let j = colon + 1;
    let value: string;
    if (text[j] === '"') {
      let k = j + 1;
      while (k < text.length && text[k] !== '"') k += text[k] === "\\" ? 2 : 1;
      if (k >= text.length) return undefined;
      try {
        value = JSON.parse(text.slice(j, k + 1)) as string;
      } catch {
        return undefined;
      }
      j = k + 1;
    } else {
      const end = text.indexOf(", ", j);
      j = end < 0 ? text.length : end;
      value = text.slice(colon + 1, j);
    }
    out.push({ type, value });
    if (j >= text.length) break;
    if (!text.startsWith(", ", j)) return undefined;
    i = j + 2;
  }
  return out;
}

const admitted = new WeakMap<object, { nodeName: string; fingerprint256: string }>();

/**
 * Records the identity a listener admitted for an HTTP/2 session, so request handlers see
 * exactly the identity the connection was let in with (no re-parsing per request).
 */
export function rememberSessionIdentity(session: object, identity: { nodeName: string; fingerprint256: string }): void {
  admitted.set(session, identity);
}

/** The identity admitted for `session`, or undefined (public listener, or not admitted). */
export function sessionIdentity(session: object | undefined): { nodeName: string; fingerprint256: string } | undefined {
  return session === undefined ? undefined : admitted.get(session);
}
