/**
 * Found by the reliability suite (chaos scenario 13, soak; heap snapshots of the follower 4.5 min
 * apart): a Follow stream's every wait for the feed combined its call's signal and the node's
 * stopping signal with AbortSignal.any. On Node 20 each call leaves an entry (a WeakRef, in a
 * Set that never shrinks) in every source signal's dependants for as long as the source lives
 * (nodejs/node#55351); a Follow stream lives for hours and the node's signal for the process,
 * so a follower's heap gained ~8,500 entries in 4.5 minutes. The wait now listens to each
 * signal itself and removes its listeners when it ends.
 */
import { getEventListeners } from "node:events";
import type { HandlerContext } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { replicationService } from "../../src/api/replication-service.js";
import { openStore } from "../../src/store/store.js";
import { tempDir } from "../helpers/temp.js";

/** Size of a signal's set of dependant signals (Node's internal kDependantSignals), 0 if none. */
function dependants(signal: AbortSignal): number {
  const sym = Object.getOwnPropertySymbols(signal).find((s) => s.description === "kDependantSignals");
  return sym === undefined ? 0 : ((signal as unknown as Record<symbol, Set<unknown>>)[sym]?.size ?? 0);
}

describe("Follow's wait for the feed keeps nothing on long-lived signals", () => {
  it("the probe sees AbortSignal.any's entries (so the check below can fail)", () => {
    const ac = new AbortController();
    for (let i = 0; i < 3; i++) AbortSignal.any([ac.signal]);
    expect(dependants(ac.signal)).toBe(3);
  });

  it("after 300 heartbeats on one stream: no dependants, no listeners left on the call's or the node's signal", async () => {
    const dir = await tempDir("granary-follow-wait-");
    const store = await openStore({ dataDir: dir.path, nodeId: "node-a" });
    try {
      const stopping = new AbortController();
      const call = new AbortController();
      const svc = replicationService({
        store,
        advertiseAddress: () => "https://127.0.0.1:1",
        knownPeers: () => [],
        onHello: () => {},
        callerName: () => "node-b",
        heartbeatIntervalMs: 1,
        stopping: stopping.signal,
      });
      const ctx = { signal: call.signal } as unknown as HandlerContext;
      const stream = svc.follow!({ $typeName: "granary.replication.v1.FollowRequest", incarnation: "", afterSeq: 0n, maxPageItems: 0 }, ctx) as AsyncIterable<{ frame: { case: string } }>;
      let heartbeats = 0;
      for await (const m of stream) {
        if (m.frame.case === "heartbeat" && ++heartbeats === 300) break;
      }
      expect(heartbeats).toBe(300);
      expect({ call: dependants(call.signal), node: dependants(stopping.signal) }).toEqual({ call: 0, node: 0 });
      expect({ call: getEventListeners(call.signal, "abort").length, node: getEventListeners(stopping.signal, "abort").length }).toEqual({ call: 0, node: 0 });
    } finally {
      await store.close();
      await dir.cleanup();
    }
  });

  it("ends the stream when the node stops during a wait", async () => {
    const dir = await tempDir("granary-follow-wait-");
    const store = await openStore({ dataDir: dir.path, nodeId: "node-a" });
    try {
      const stopping = new AbortController();
      const svc = replicationService({
        store,
        advertiseAddress: () => "https://127.0.0.1:1",
        knownPeers: () => [],
        onHello: () => {},
        callerName: () => "node-b",
        heartbeatIntervalMs: 3_600_000,
        stopping: stopping.signal,
      });
      const ctx = { signal: new AbortController().signal } as unknown as HandlerContext;
      const it = (svc.follow!({ $typeName: "granary.replication.v1.FollowRequest", incarnation: "", afterSeq: 0n, maxPageItems: 0 }, ctx) as AsyncIterable<unknown>)[Symbol.asyncIterator]();
      const next = it.next();
      // The handler is parked in its hour-long wait; stopping the node must end it, not the timer.
      await new Promise<void>((resolve) => setImmediate(resolve));
      stopping.abort();
      expect(await next).toEqual({ value: undefined, done: true });
    } finally {
      await store.close();
      await dir.cleanup();
    }
  });
});
