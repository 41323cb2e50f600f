/**
 * The on-disk record format of segment files: a fixed 32-byte prefix, the body, then a trailer
 * holding the encoded manifest. Owns encoding and decoding only; no I/O. See README.md.
 *
 *   offset size field
 *        0    4 magic "GRNR"
 *        4    2 format version (1)
 *        6    2 flags (0, reserved)
 *        8    8 body length, u64 big-endian
 *       16    4 trailer length
 *       20    4 CRC32 of the body
 *       24    4 CRC32 of the trailer
 *       28    4 CRC32 of bytes 0..27
 *
 * While a body streams in, the prefix on disk is all zeros; it is written with its final values
 * only once the body is complete, so a crash mid-body leaves a zero prefix that a scan reads as a
 * torn tail. All multi-byte integers are big-endian.
 */
import { crc32 } from "node:zlib";
import { validateDigest, validateKey, validateNamespace } from "./names.js";
import type { Kind, Manifest } from "./types.js";

export const PREFIX_BYTES = 32;
export const RECORD_MAGIC = 0x47524e52; // "GRNR"
export const RECORD_FORMAT_VERSION = 1;
/** Upper bound of an encoded trailer (the fields are length-limited by names.ts). */
export const TRAILER_MAX_BYTES = 2048;
const MAX_U64 = (1n << 64n) - 1n;

export interface RecordPrefix {
  readonly bodyLen: number;
  readonly trailerLen: number;
  readonly bodyCrc: number;
  readonly trailerCrc: number;
}

export type DecodedPrefix =
  | { readonly state: "zero" }
  | { readonly state: "invalid"; readonly reason: string }
  | { readonly state: "ok"; readonly prefix: RecordPrefix };

export function recordLength(bodyLen: number, trailerLen: number): number {
  return PREFIX_BYTES + bodyLen + trailerLen;
}

export function encodePrefix(prefix: RecordPrefix, into: Uint8Array = new Uint8Array(PREFIX_BYTES)): Uint8Array {
  const view = new DataView(into.buffer, into.byteOffset, PREFIX_BYTES);
  view.setUint32(0, RECORD_MAGIC);
  view.setUint16(4, RECORD_FORMAT_VERSION);
  view.setUint16(6, 0);
  view.setBigUint64(8, BigInt(prefix.bodyLen));
  view.setUint32(16, prefix.trailerLen);
  view.setUint32(20, prefix.bodyCrc);
  view.setUint32(24, prefix.trailerCrc);
  view.setUint32(28, crc32(into.subarray(0, 28)));
  return into;
}

export function decodePrefix(bytes: Uint8Array): DecodedPrefix {
  if (bytes.length < PREFIX_BYTES) return { state: "invalid", reason: "short prefix" };
  const head = bytes.subarray(0, PREFIX_BYTES);
  if (head.every((b) => b === 0)) return { state: "zero" };
  const view = new DataView(head.buffer, head.byteOffset, PREFIX_BYTES);
  if (view.getUint32(0) !== RECORD_MAGIC) return { state: "invalid", reason: "bad magic" };
  if (view.getUint32(28) !== crc32(head.subarray(0, 28))) return { state: "invalid", reason: "prefix CRC mismatch" };
  const version = view.getUint16(4);
  if (version !== RECORD_FORMAT_VERSION) return { state: "invalid", reason: `unknown record format version ${version}` };
  const bodyLen = view.getBigUint64(8);
  if (bodyLen > BigInt(Number.MAX_SAFE_INTEGER)) return { state: "invalid", reason: "body length out of range" };
  const trailerLen = view.getUint32(16);
  if (trailerLen === 0 || trailerLen > TRAILER_MAX_BYTES) return { state: "invalid", reason: "trailer length out of range" };
  return {
    state: "ok",
    prefix: { bodyLen: Number(bodyLen), trailerLen, bodyCrc: view.getUint32(20), trailerCrc: view.getUint32(24) },
  };
}

interface TrailerJson {
  readonly v: 1;
  readonly ns: string;
  readonly kind: Kind;
  readonly key: string;
  readonly size: number;
  readonly digest: string;
  /** Decimal string: a u64 does not fit a JSON number. */
  readonly version: string;
  readonly origin: string;
}

/** The trailer is JSON so a segment can be inspected with ordinary tools; it is small. */
export function encodeTrailer(m: Manifest): Uint8Array {
  const json: TrailerJson = {
    v: 1,
    ns: m.namespace,
    kind: m.kind,
    key: m.key,
    size: m.size,
    digest: m.digest,
    version: m.version.toString(10),
    origin: m.origin,
  };
  const bytes = Buffer.from(JSON.stringify(json), "utf8");
  if (bytes.length > TRAILER_MAX_BYTES) throw new RangeError(`trailer of ${bytes.length} bytes exceeds ${TRAILER_MAX_BYTES}`);
  return bytes;
}

/** Decodes and validates a trailer; throws an Error whose message says what is wrong. */
export function decodeTrailer(bytes: Uint8Array): Manifest {
  const parsed = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("utf8")) as Partial<
    Record<keyof TrailerJson, unknown>
  >;
  if (parsed.v !== 1) throw new Error(`unknown trailer version ${String(parsed.v)}`);
  const { ns, kind, key, size, digest, version, origin } = parsed;
  if (typeof ns !== "string" || typeof key !== "string" || typeof digest !== "string" || typeof origin !== "string") {
    throw new Error("trailer field missing");
  }
  if (kind !== "cas" && kind !== "kv") throw new Error("trailer kind invalid");
  validateNamespace(ns);
  validateKey(kind, key);
  validateDigest(digest);
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) throw new Error("trailer size invalid");
  if (typeof version !== "string" || !/^[0-9]{1,20}$/.test(version)) throw new Error("trailer version invalid");
  const v = BigInt(version);
  if (v > MAX_U64) throw new Error("trailer version out of range");
  return { namespace: ns, kind, key, size, digest, version: v, origin };
}

export function trailerCrc(bytes: Uint8Array): number {
  return crc32(bytes);
}
