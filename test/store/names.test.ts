import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../../src/store/errors.js";
import { validateDigest, validateKey, validateNamespace } from "../../src/store/names.js";

const HEX64 = "a".repeat(64);

describe("validateNamespace", () => {
  it.each([
    ["a", true],
    ["0", true],
    ["team-a.builds_2", true],
    ["a".repeat(64), true],
    ["a".repeat(65), false],
    ["", false],
    ["-a", false],
    [".a", false],
    ["_a", false],
    ["A", false],
    ["a/b", false],
    ["a b", false],
    ["ä", false],
  ])("%j valid=%s", (ns, ok) => {
    if (ok) expect(() => validateNamespace(ns)).not.toThrow();
    else expect(() => validateNamespace(ns)).toThrow(InvalidArgumentError);
  });
});

describe("validateDigest and CAS keys", () => {
  it.each([
    [HEX64, true],
    ["0123456789abcdef".repeat(4), true],
    ["A".repeat(64), false],
    ["a".repeat(63), false],
    ["a".repeat(65), false],
    ["g".repeat(64), false],
    ["", false],
  ])("%j valid=%s", (d, ok) => {
    for (const check of [() => validateDigest(d), () => validateKey("cas", d)]) {
      if (ok) expect(check).not.toThrow();
      else expect(check).toThrow(InvalidArgumentError);
    }
  });
});

describe("validateKey (kv)", () => {
  it.each([
    ["a", true],
    ["Z9", true],
    ["a/b/c", true],
    ["ac/x86_64:linux=1+2@v3-rc.1", true],
    ["a..b", true],
    ["a/.hidden", true],
    ["a".repeat(256), true],
    ["a".repeat(257), false],
    ["", false],
    ["/a", false],
    ["a/", false],
    ["a//b", false],
    ["a/./b", false],
    ["a/../b", false],
    ["a/..", false],
    [".a", false],
    ["-a", false],
    ["a b", false],
    ["a\\b", false],
    ["a?b", false],
  ])("%j valid=%s", (key, ok) => {
    if (ok) expect(() => validateKey("kv", key)).not.toThrow();
    else expect(() => validateKey("kv", key)).toThrow(InvalidArgumentError);
  });

  it("messages say what to do", () => {
    expect(() => validateKey("kv", "a//b")).toThrow(/empty, "\." or "\.\." path segment/);
    expect(() => validateNamespace("Bad")).toThrow(/1-64 characters of a-z/);
    expect(() => validateKey("cas", "xyz")).toThrow(/64 lowercase hex/);
  });

  it("accepts exactly the keys whose segments are non-empty and not dot names (property)", () => {
    const segment = fc.stringMatching(/^[A-Za-z0-9._:=+@-]{1,12}$/);
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 6 }), (segments) => {
        const key = segments.join("/");
        const expected =
          key.length <= 256 && /^[A-Za-z0-9]/.test(key) && segments.every((s) => s !== "." && s !== "..");
        let accepted = true;
        try {
          validateKey("kv", key);
        } catch {
          accepted = false;
        }
        expect(accepted).toBe(expected);
      }),
    );
  });
});
