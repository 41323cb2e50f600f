/**
 * Subject alternative names for node certificates: classifies each extra SAN given by the
 * user as IP or DNS, validates it, and renders the `[alt]` section of an openssl config.
 * Validation is strict because the values are written into a config file: a newline or a
 * comma must never reach openssl.
 */
import { isIP } from "node:net";
import { CertsError } from "./errors.js";

export type San = { type: "URI" | "DNS" | "IP"; value: string };

const DNS_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * Classifies a user-given SAN: an IPv4/IPv6 literal is IP, anything else must be a DNS name
 * (an optional leading "*." wildcard, labels of [a-z0-9-], at most 253 characters; lowercased).
 * Explicit "DNS:x" / "IP:x" prefixes are accepted. URI SANs are refused: the node identity is
 * the only URI a node certificate may carry (see src/transport/identity.ts).
 */
export function classifySan(input: string): San {
  const raw = input.trim();
  const m = /^(dns|ip|uri):(.*)$/i.exec(raw);
  const prefix = m?.[1]?.toUpperCase();
  const value = m?.[2] ?? raw;
  if (prefix === "URI") {
    throw new CertsError("INVALID_ARGUMENT", `SAN ${JSON.stringify(input)}: extra URI SANs are not allowed; a node certificate carries exactly one URI, its node identity`);
  }
  if (prefix === "IP" || (prefix === undefined && isIP(value) !== 0)) {
    if (isIP(value) === 0) throw new CertsError("INVALID_ARGUMENT", `SAN ${JSON.stringify(input)}: not an IPv4 or IPv6 address`);
    return { type: "IP", value };
  }
  const dns = value.toLowerCase();
  const labels = (dns.startsWith("*.") ? dns.slice(2) : dns).split(".");
  if (dns.length === 0 || dns.length > 253 || !labels.every((l) => DNS_LABEL.test(l))) {
    throw new CertsError("INVALID_ARGUMENT", `SAN ${JSON.stringify(input)}: not an IP address or a valid DNS name`);
  }
  return { type: "DNS", value: dns };
}

/** Removes duplicates, keeping the first occurrence (DNS names compare lowercased already). */
export function dedupeSans(sans: readonly San[]): San[] {
  const seen = new Set<string>();
  return sans.filter((s) => {
    const k = `${s.type}:${s.value}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** Renders SANs as openssl config lines (`URI.1 = ...`). */
export function sanConfigLines(sans: readonly San[]): string[] {
  const n = { URI: 0, DNS: 0, IP: 0 };
  return sans.map((s) => `${s.type}.${++n[s.type]} = ${s.value}`);
}
