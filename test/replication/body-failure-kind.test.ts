/**
 * Which body failures a link logs (`bodyFailureKind`): the rule chaos scenario 5 at full size
 * checks end to end ("every cut logged with its offset"), here case by case. The order in which
 * a stop and a short body settle cannot be made deterministic in a mesh test; the rule can.
 */
import { describe, expect, it } from "vitest";
import { BodyStreamError, NotStartedError } from "../../src/replication/fetcher.js";
import { bodyFailureKind } from "../../src/replication/peer-link.js";
import { PeerRpcError } from "../../src/transport/peer-client.js";

const unavailable = (): PeerRpcError => new PeerRpcError("UNAVAILABLE", "ReadBodies from https://p:1 failed UNAVAILABLE: Connection dropped");
const short = (): BodyStreamError => new BodyStreamError("stream ended OK at byte 44082 of 311937 of k");

function stopped(reason: unknown = new Error("pass stopped")): AbortSignal {
  const c = new AbortController();
  c.abort(reason);
  return c.signal;
}
const running = (): AbortSignal => new AbortController().signal;

describe("bodyFailureKind", () => {
  it("the first unreachable-peer failure is the peer lost; later ones on the dead connection are quiet", () => {
    expect(bodyFailureKind(unavailable(), running(), false)).toBe("peer-lost");
    expect(bodyFailureKind(new BodyStreamError("body of k cut at byte 0 of 10", { cause: unavailable() }), running(), false)).toBe("peer-lost");
    expect(bodyFailureKind(unavailable(), running(), true)).toBe("quiet");
  });

  it("a body the lost peer kept from starting is quiet, though its cause is the loss", () => {
    expect(bodyFailureKind(new NotStartedError({ cause: unavailable() }), running(), true)).toBe("quiet");
    expect(bodyFailureKind(new NotStartedError(), running(), false)).toBe("quiet");
  });

  it("what the stop cancelled is quiet: the stop's own reason in the cause chain", () => {
    const reason = new Error("link closing");
    const stop = stopped(reason);
    expect(bodyFailureKind(reason, stop, false)).toBe("quiet");
    expect(bodyFailureKind(new BodyStreamError("body of k cut at byte 7 of 10", { cause: reason }), stop, false)).toBe("quiet");
  });

  it("a body that failed for a reason of its own is logged, even after a stop or a loss", () => {
    expect(bodyFailureKind(short(), running(), false)).toBe("failed");
    expect(bodyFailureKind(short(), stopped(), false)).toBe("failed");
    expect(bodyFailureKind(short(), stopped(unavailable()), true)).toBe("failed");
    const idle = new PeerRpcError("IDLE_TIMEOUT", "no message for 10000 ms");
    expect(bodyFailureKind(idle, running(), true)).toBe("failed");
  });

  it("a stop whose reason is not in the chain does not hide a failure", () => {
    // Another error that merely happened after the stop: still its own failure.
    expect(bodyFailureKind(new BodyStreamError("digest mismatch for k"), stopped(new Error("other")), false)).toBe("failed");
  });
});
