import { describe, expect, it } from "vitest";
import { NoSpaceError } from "../../src/store/errors.js";
import { SpaceClaims } from "../../src/store/space-claims.js";

const MiB = 1 << 20;

describe("SpaceClaims: admission of writes against free space and what admitted writes still owe", () => {
  it("admits what fits with the margin, refuses what does not", () => {
    const claims = new SpaceClaims(MiB);
    expect(() => claims.admit(4 * MiB, 5 * MiB)).not.toThrow();
    expect(() => claims.admit(4 * MiB + 1, 9 * MiB)).toThrow(NoSpaceError);
  });

  it("counts the unwritten bytes of writes already admitted, so the second of two that do not both fit is refused up front", () => {
    const claims = new SpaceClaims(MiB);
    const a = claims.admit(6 * MiB, 12 * MiB);
    expect(() => claims.admit(6 * MiB, 12 * MiB)).toThrow(/6291456 of them promised to writes in flight/);
    // As A writes, its bytes move from promised to the filesystem: the same answer from a lower free figure.
    a.progress(4 * MiB);
    expect(claims.unwrittenBytes).toBe(2 * MiB);
    expect(() => claims.admit(6 * MiB, 8 * MiB)).toThrow(NoSpaceError);
    expect(() => claims.admit(5 * MiB, 8 * MiB).release()).not.toThrow();
  });

  it("a write that ends without writing frees its promise for the next", () => {
    const claims = new SpaceClaims(MiB);
    const a = claims.admit(6 * MiB, 12 * MiB);
    a.release();
    a.release();
    expect(claims.unwrittenBytes).toBe(0);
    expect(() => claims.admit(6 * MiB, 12 * MiB)).not.toThrow();
  });

  it("recheck leaves the write's own promise out and sees the disk filled meanwhile", () => {
    const claims = new SpaceClaims(MiB);
    const a = claims.admit(4 * MiB, 10 * MiB);
    expect(() => a.recheck(10 * MiB)).not.toThrow();
    const b = claims.admit(4 * MiB, 10 * MiB);
    expect(() => a.recheck(10 * MiB)).not.toThrow();
    // Something else filled 3 MiB: A's turn comes with 7 MiB free, of which B still owes 4.
    expect(() => a.recheck(7 * MiB)).toThrow(NoSpaceError);
    b.release();
    expect(() => a.recheck(7 * MiB)).not.toThrow();
  });

  it("progress is capped at the claim and never goes back", () => {
    const claims = new SpaceClaims(MiB);
    const a = claims.admit(2 * MiB, 10 * MiB);
    a.progress(3 * MiB);
    a.progress(MiB);
    expect(claims.unwrittenBytes).toBe(0);
    a.release();
    expect(claims.unwrittenBytes).toBe(0);
  });

  it("admits when the free space is unknown (statfs failed): the write itself will say", () => {
    const claims = new SpaceClaims(MiB);
    expect(() => claims.admit(1 << 30, undefined).recheck(undefined)).not.toThrow();
  });
});
