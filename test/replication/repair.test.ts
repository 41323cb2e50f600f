/**
 * A body this node lost is fetched again from a peer. A record that fails its CRC on a read, or
 * that a segment cut short at restart no longer holds, is dropped from the index by the store
 * (never served); the node's repairer then asks its connected peers for it, so it reads back
 * byte for byte without waiting for a bootstrap pass. The repairer's rules (which peer, what
 * waits, what is given up, the bound) are unit-tested with fake links at the end.
 */
import { truncate } from "node:fs/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ArtifactService, Kind } from "../../src/gen/granary/artifact/v1/artifact_pb.js";
import type { GranaryNode } from "../../src/node/granary-node.js";
import type { FetchResult } from "../../src/replication/fetcher.js";
import { Repairer, type RepairLink } from "../../src/replication/repairer.js";
import type { Manifest } from "../../src/store/types.js";
import { silentLogger } from "../../src/telemetry/logger.js";
import type { PublicConnection } from "../../src/transport/public-client.js";
import { bytes } from "../helpers/data.js";
import { eventLog } from "../helpers/log-events.js";
import { useMeshFixture } from "../helpers/mesh-fixture.js";
import { publicClient, putCas, waitForArtifacts } from "../helpers/mesh.js";
import { flipByte, locateBody } from "../helpers/segments.js";

const mesh = useMeshFixture("granary-repair-");

async function readAll(conn: PublicConnection, ns: string, key: string): Promise<{ body: Buffer; error: unknown }> {
  const parts: Uint8Array[] = [];
  try {
    for await (const r of conn.client(ArtifactService).get({ namespace: ns, kind: Kind.CAS, key })) if (r.msg.case === "chunk") parts.push(r.msg.value);
  } catch (error) {
    return { body: Buffer.concat(parts), error };
  }
  return { body: Buffer.concat(parts), error: undefined };
}



async function meshWith(ns: string, bodies: Uint8Array[], bName: string, bLog: ReturnType<typeof eventLog>): Promise<{ a: GranaryNode; b: GranaryNode; keys: string[] }> {
  const a = await mesh.node(mesh.uniq("a"));
  const b = await mesh.node(bName, [a], { log: bLog.log });
  const ca = publicClient(a);
  const keys: string[] = [];
  try {
    for (const body of bodies) keys.push(await putCas(ca, ns, body));
  } finally {
    ca.close();
  }
  await waitForArtifacts(b, ns, keys);
  return { a, b, keys };
}

describe("repair of lost bodies from a peer", () => {
  it("a record that fails its CRC on a read is answered DATA_LOSS, then fetched again from the peer and served byte for byte", async () => {
    const bodies = [bytes(1, 1 << 20), bytes(2, 3 << 20), bytes(3, 200_000)];
    const bLog = eventLog();
    const { b, keys } = await meshWith("crc", bodies, mesh.uniq("b"), bLog);
    const where = await locateBody(b.config.dataDir, bodies[1]!);
    await flipByte(where.path, where.at + 2_500_000);

    const cb = publicClient(b);
    try {
      const first = await readAll(cb, "crc", keys[1]!);
      expect(first.error).toBeInstanceOf(ConnectError);
      expect(Code[(first.error as ConnectError).code]).toBe("DataLoss");
      const repaired = await bLog.waitFor((l) => l["event"] === "replication.repaired" && l["key"] === keys[1]);
      expect(String(repaired["by"])).toMatch(/^from https:\/\//);
      const again = await readAll(cb, "crc", keys[1]!);
      expect(again.error).toBeUndefined();
      expect(again.body.equals(Buffer.from(bodies[1]!))).toBe(true);
      for (const i of [0, 2]) expect((await readAll(cb, "crc", keys[i]!)).body.equals(Buffer.from(bodies[i]!))).toBe(true);
      expect(b.replication?.repairer.stats()).toMatchObject({ pending: 0, repaired: 1, gaveUp: 0, refused: 0 });
    } finally {
      cb.close();
    }
  });

  it("records a segment cut short at restart no longer holds are dropped at open and fetched again once the peer is reached", async () => {
    const bodies = [bytes(11, 2 << 20), bytes(12, 2 << 20), bytes(13, 2 << 20)];
    const bName = mesh.uniq("b");
    const { a, b, keys } = await meshWith("cut", bodies, bName, eventLog());
    const dataDir = b.config.dataDir;
    await b.close();
    mesh.running.splice(mesh.running.indexOf(b), 1);
    // Cut the segment holding the first body in the middle of it: that record and any after it
    // in the same segment run past the end.
    const where = await locateBody(dataDir, bodies[0]!);
    await truncate(where.path, where.at + 1_000_000);

    const log = eventLog();
    const b2 = await mesh.node(bName, [a], { log: log.log, dataDir });
    // Index entries dropped (with the digest to fetch again); a torn record never indexed has none.
    const lost = log.lines.filter((l) => l["event"] === "store.corrupt-record" && l["digest"] !== undefined).map((l) => (l["id"] as { key: string }).key);
    expect(lost).toContain(keys[0]);
    for (const key of lost) {
      const r = await log.waitFor((l) => l["event"] === "replication.repaired" && l["key"] === key);
      expect(String(r["by"])).toMatch(/^from https:\/\//);
    }
    const cb = publicClient(b2);
    try {
      for (const [i, key] of keys.entries()) {
        const r = await readAll(cb, "cut", key);
        expect(r.error).toBeUndefined();
        expect(r.body.equals(Buffer.from(bodies[i]!))).toBe(true);
      }
    } finally {
      cb.close();
    }
  });
});

describe("Repairer rules (fake links)", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  const manifest = (key: string, version = 1n): Manifest => ({ namespace: "ns", kind: "cas", key, digest: key, size: 10, version, origin: "x" }) as Manifest;

  /** A store whose `has` is a set, and links that "fetch" by adding to it when they hold the key. */
  function world(): { held: Set<string>; link: (address: string, holds: string[], connected?: boolean) => RepairLink & { calls: string[][]; connected: boolean } } {
    const held = new Set<string>();
    return {
      held,
      link(address, holds, connected = true) {
        const calls: string[][] = [];
        return {
          address,
          connected,
          calls,
          repair(ms: readonly Manifest[]): Promise<FetchResult> {
            calls.push(ms.map((m) => m.key));
            let applied = 0;
            for (const m of ms) if (holds.includes(m.key)) (held.add(m.key), applied++);
            return Promise.resolve({ applied, skipped: 0, missing: ms.length - applied, failed: 0 });
          },
        };
      },
    };
  }

  it("asks each connected peer in turn for what is still missing, skips disconnected ones, and gives up after maxAttempts rounds", async () => {
    vi.useFakeTimers();
    const w = world();
    const down = w.link("down", ["k1", "k2"], false);
    const p1 = w.link("p1", ["k1"]);
    const p2 = w.link("p2", ["k2"]);
    const r = new Repairer({ store: { has: (m) => w.held.has(m.key) }, links: () => [down, p1, p2], log: silentLogger(), maxAttempts: 3, retry: { initialMs: 100, maxMs: 100, multiplier: 1, jitter: 0 } });
    for (const k of ["k1", "k2", "k3"]) r.enqueue(manifest(k));
    await vi.advanceTimersByTimeAsync(0);
    expect(down.calls).toEqual([]);
    expect(p1.calls).toEqual([["k1", "k2", "k3"]]);
    expect(p2.calls).toEqual([["k2", "k3"]]);
    expect(r.stats()).toEqual({ pending: 1, repaired: 2, gaveUp: 0, refused: 0 });
    await vi.advanceTimersByTimeAsync(250);
    expect(p1.calls.length).toBe(3);
    expect(r.stats()).toEqual({ pending: 0, repaired: 2, gaveUp: 1, refused: 0 });
    await r.close();
  });

  it("waits without spending attempts while no peer is connected; a repair done by another path counts as repaired", async () => {
    vi.useFakeTimers();
    const w = world();
    const p = w.link("p", ["k1"], false);
    const r = new Repairer({ store: { has: (m) => w.held.has(m.key) }, links: () => [p], log: silentLogger(), maxAttempts: 1, retry: { initialMs: 100, maxMs: 100, multiplier: 1, jitter: 0 } });
    r.enqueue(manifest("k1"));
    r.enqueue(manifest("k2"));
    await vi.advanceTimersByTimeAsync(1000);
    expect(r.stats()).toEqual({ pending: 2, repaired: 0, gaveUp: 0, refused: 0 });
    w.held.add("k2"); // a pass or a client's put brought it back
    p.connected = true;
    await vi.advanceTimersByTimeAsync(100);
    expect(p.calls).toEqual([["k1"]]);
    expect(r.stats()).toEqual({ pending: 0, repaired: 2, gaveUp: 0, refused: 0 });
    await r.idle();
    await r.close();
  });

  it("keeps at most maxPending repairs, the newest version of a key, and nothing after close", async () => {
    vi.useFakeTimers();
    const asked: string[] = [];
    const link: RepairLink = {
      address: "p",
      connected: true,
      repair: (ms) => {
        asked.push(...ms.map((m) => `${m.key}@${m.version}`));
        return Promise.resolve({ applied: 0, skipped: 0, missing: ms.length, failed: 0 });
      },
    };
    const r = new Repairer({ store: { has: () => false }, links: () => [link], log: silentLogger(), maxPending: 2 });
    r.enqueue(manifest("k1", 1n));
    r.enqueue(manifest("k1", 2n));
    r.enqueue(manifest("k2"));
    r.enqueue(manifest("k3"));
    expect(r.stats()).toEqual({ pending: 2, repaired: 0, gaveUp: 0, refused: 1 });
    await vi.advanceTimersByTimeAsync(0);
    expect(asked).toEqual(["k1@2", "k2@1"]);
    await r.close();
    r.enqueue(manifest("k4"));
    expect(r.stats().pending).toBe(2);
  });
});
