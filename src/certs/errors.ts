/**
 * Dev-PKI errors: one class with a stable `code`, so the CLI can print an actionable message
 * and tests can assert on the code rather than on wording.
 */

export type CertsErrorCode =
  | "OPENSSL_MISSING"
  | "OPENSSL_FAILED"
  | "INVALID_ARGUMENT"
  | "CA_EXISTS"
  | "CA_MISSING";

export class CertsError extends Error {
  readonly code: CertsErrorCode;
  constructor(code: CertsErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}
