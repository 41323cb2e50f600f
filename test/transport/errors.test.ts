/** causeChain: one log line with every cause, AggregateError members, no stutter, no loops. */
import { describe, expect, it } from "vitest";
import { TransportError } from "../../src/transport/errors.js";
import { causeChain, hasCause } from "../../src/util/cause-chain.js";

describe("causeChain", () => {
  it("renders message and every cause as a: b: c", () => {
    const root = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:7"), { code: "ECONNREFUSED" });
    const mid = new Error("dial peer node-b", { cause: root });
    const top = new TransportError("CONNECT_TIMEOUT", "follow failed", { cause: mid });
    expect(causeChain(top)).toBe("follow failed: dial peer node-b: connect ECONNREFUSED 127.0.0.1:7");
  });

  it("adds a system error code the message lacks", () => {
    expect(causeChain(Object.assign(new Error("socket hang up"), { code: "ECONNRESET" }))).toBe("socket hang up (ECONNRESET)");
  });

  it("renders AggregateError members in brackets", () => {
    const agg = new AggregateError([new Error("v4 refused"), new Error("v6 unreachable", { cause: new Error("no route") })], "all addresses failed");
    expect(causeChain(new Error("connect", { cause: agg }))).toBe("connect: all addresses failed: [v4 refused | v6 unreachable: no route]");
  });

  it("skips a cause that repeats its wrapper, cuts cycles, accepts non-errors", () => {
    const inner = new Error("boom");
    expect(causeChain(new Error("boom", { cause: inner }))).toBe("boom");
    const a = new Error("a");
    const b = new Error("b", { cause: a });
    (a as { cause?: unknown }).cause = b;
    expect(causeChain(a)).toBe("a: b: <cycle>");
    expect(causeChain("plain")).toBe("plain");
    expect(causeChain({ message: "like an error" })).toBe("like an error");
    expect(causeChain(undefined)).toBe("undefined");
  });
});

describe("hasCause", () => {
  it("finds the error itself or any cause down the chain, and stops on a cycle", () => {
    const root = new TypeError("root");
    const top = new Error("top", { cause: new Error("mid", { cause: root }) });
    expect(hasCause(top, (c) => c === root)).toBe(true);
    expect(hasCause(top, (c) => c === top)).toBe(true);
    expect(hasCause(top, (c) => c instanceof RangeError)).toBe(false);
    const a = new Error("a");
    a.cause = a;
    expect(hasCause(a, (c) => c instanceof RangeError)).toBe(false);
    expect(hasCause(undefined, () => true)).toBe(false);
  });
});
