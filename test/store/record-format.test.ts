import { describe, expect, it } from "vitest";
import {
  decodePrefix,
  decodeTrailer,
  encodePrefix,
  encodeTrailer,
  PREFIX_BYTES,
} from "../../src/store/record-format.js";
import type { Manifest } from "../../src/store/types.js";

const manifest: Manifest = {
  namespace: "ns",
  kind: "kv",
  key: "a/b",
  size: 5,
  digest: "b".repeat(64),
  version: (1n << 63n) + 12345n,
  origin: "node-a",
};

describe("record prefix", () => {
  it("round-trips", () => {
    const prefix = { bodyLen: 2 ** 40 + 7, trailerLen: 123, bodyCrc: 0xdeadbeef, trailerCrc: 42 };
    const bytes = encodePrefix(prefix);
    expect(bytes.length).toBe(PREFIX_BYTES);
    expect(decodePrefix(bytes)).toEqual({ state: "ok", prefix });
  });

  it("reads an all-zero prefix as a body still streaming in", () => {
    expect(decodePrefix(new Uint8Array(PREFIX_BYTES))).toEqual({ state: "zero" });
  });

  it("rejects any flipped bit", () => {
    const bytes = encodePrefix({ bodyLen: 10, trailerLen: 20, bodyCrc: 1, trailerCrc: 2 });
    for (let i = 0; i < PREFIX_BYTES * 8; i++) {
      const copy = Uint8Array.from(bytes);
      copy[i >> 3] = (copy[i >> 3] ?? 0) ^ (1 << (i & 7));
      expect(decodePrefix(copy).state).toBe("invalid");
    }
  });
});

describe("record trailer", () => {
  it("round-trips a u64 version without losing precision", () => {
    expect(decodeTrailer(encodeTrailer(manifest))).toEqual(manifest);
  });

  it("refuses trailers with invalid names", () => {
    const bad = Buffer.from(JSON.stringify({ v: 1, ns: "NS", kind: "kv", key: "a", size: 1, digest: "b".repeat(64), version: "1", origin: "x" }));
    expect(() => decodeTrailer(bad)).toThrow();
  });
});
