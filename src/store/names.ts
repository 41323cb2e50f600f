/**
 * Name rules for namespaces, keys and digests. Owns only validation: every name that reaches
 * the index or a segment trailer has passed through here, so the index key and the on-disk
 * trailer can rely on the character sets below (namespaces and kinds never contain "/").
 */
import { InvalidArgumentError } from "./errors.js";
import type { Kind } from "./types.js";

const NAMESPACE_RE = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const HEX64_RE = /^[0-9a-f]{64}$/;
const KV_KEY_RE = /^[A-Za-z0-9][A-Za-z0-9._:=+@/-]{0,255}$/;

/** Quote a caller-supplied value for an error message without letting it flood the log. */
function show(value: string): string {
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
}

export function validateNamespace(ns: string): void {
  if (typeof ns !== "string" || !NAMESPACE_RE.test(ns)) {
    throw new InvalidArgumentError(
      `namespace ${typeof ns === "string" ? show(ns) : String(ns)} is invalid: use 1-64 characters of a-z, 0-9, ".", "_" or "-", starting with a letter or digit`,
    );
  }
}

export function validateDigest(d: string): void {
  if (typeof d !== "string" || !HEX64_RE.test(d)) {
    throw new InvalidArgumentError(
      `digest ${typeof d === "string" ? show(d) : String(d)} is invalid: expected a SHA-256 as exactly 64 lowercase hex characters`,
    );
  }
}

export function validateKind(kind: string): asserts kind is Kind {
  if (kind !== "cas" && kind !== "kv") {
    throw new InvalidArgumentError(`kind ${show(String(kind))} is invalid: expected "cas" or "kv"`);
  }
}

export function validateKey(kind: Kind, key: string): void {
  validateKind(kind);
  if (kind === "cas") {
    if (typeof key !== "string" || !HEX64_RE.test(key)) {
      throw new InvalidArgumentError(
        `CAS key ${typeof key === "string" ? show(key) : String(key)} is invalid: a CAS key is the body's SHA-256 as exactly 64 lowercase hex characters`,
      );
    }
    return;
  }
  if (typeof key !== "string" || !KV_KEY_RE.test(key)) {
    throw new InvalidArgumentError(
      `KV key ${typeof key === "string" ? show(key) : String(key)} is invalid: use 1-256 characters of A-Z, a-z, 0-9 and . _ : = + @ / -, starting with a letter or digit`,
    );
  }
  for (const segment of key.split("/")) {
    if (segment === "" || segment === "." || segment === "..") {
      throw new InvalidArgumentError(
        `KV key ${show(key)} is invalid: it has an empty, "." or ".." path segment; remove the doubled, leading or trailing "/" and any "." or ".." parts`,
      );
    }
  }
}
