/**
 * The node identity format, shared by the dev PKI (which writes it into certificates) and the
 * trust rule (which reads it back): a node NAME is a DNS label (1–63 of [a-z0-9-], no leading
 * or trailing hyphen) and its identity is the SPIFFE ID `spiffe://granary/node/NAME`, carried
 * as the certificate's only URI SAN. Keeping both directions in one file is what stops the
 * issuer and the verifier from drifting apart.
 */

/** SPIFFE trust domain of the mesh. */
export const NODE_TRUST_DOMAIN = "granary";

/** Every node identity URI starts with this. */
export const NODE_ID_URI_PREFIX = `spiffe://${NODE_TRUST_DOMAIN}/node/`;

const NODE_NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** True when `name` is a valid node name (a lowercase DNS label). */
export function isValidNodeName(name: string): boolean {
  return NODE_NAME.test(name);
}

/** The identity URI of node `name`; throws RangeError for an invalid name (a caller bug). */
export function nodeIdentityUri(name: string): string {
  if (!isValidNodeName(name)) {
    throw new RangeError(`invalid node name ${JSON.stringify(name)}: want 1-63 of [a-z0-9-], not starting or ending with "-"`);
  }
  return NODE_ID_URI_PREFIX + name;
}

/**
 * The node name inside an identity URI, or undefined when `uri` is not exactly
 * `spiffe://granary/node/<valid name>` (no query, fragment, trailing slash, or other case).
 */
export function nodeNameFromUri(uri: string): string | undefined {
  if (!uri.startsWith(NODE_ID_URI_PREFIX)) return undefined;
  const name = uri.slice(NODE_ID_URI_PREFIX.length);
  return isValidNodeName(name) ? name : undefined;
}
