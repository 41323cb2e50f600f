import { describe, expect, it } from "vitest";
import { FailpointError, failpointsFromEnv, FailpointSpecError, parseFailpoints } from "../../src/util/failpoints-env.js";

describe("failpoints from the environment (test builds only)", () => {
  it("are off unless GRANARY_ENABLE_FAILPOINTS=1", () => {
    expect(failpointsFromEnv({ GRANARY_FAILPOINTS: "a=error" })).toBeUndefined();
    expect(failpointsFromEnv({ GRANARY_ENABLE_FAILPOINTS: "true", GRANARY_FAILPOINTS: "a=error" })).toBeUndefined();
    const fp = failpointsFromEnv({ GRANARY_ENABLE_FAILPOINTS: "1", GRANARY_FAILPOINTS: "a=error" });
    expect(() => fp!.hit("a", {})).toThrow(FailpointError);
  });

  it("fire on every hit, on the Nth only (@N), or from the Nth on (@N+), and count", async () => {
    const fp = parseFailpoints("every=error, third=error@3,later=error@2+,c=count,s=sleep(1)");
    expect(() => fp.hit("every", {})).toThrow(FailpointError);
    const fires = (name: string): boolean[] =>
      Array.from({ length: 4 }, () => {
        try {
          void fp.hit(name, {});
          return false;
        } catch {
          return true;
        }
      });
    expect(fires("third")).toEqual([false, false, true, false]);
    expect(fires("later")).toEqual([false, true, true, true]);
    void fp.hit("c", {});
    void fp.hit("c", {});
    expect(fp.count("c")).toBe(2);
    await fp.hit("s", {});
    expect(fp.count("s")).toBe(1);
  });

  it("refuse a malformed spec, naming the item", () => {
    expect(() => parseFailpoints("a=explode")).toThrow(FailpointSpecError);
    expect(() => parseFailpoints("a=sleep(x)")).toThrow(/a=sleep\(x\)/);
    expect(() => parseFailpoints("=error")).toThrow(FailpointSpecError);
  });
});
