/**
 * Bounded memory and resumable bodies in a bootstrap, on real nodes (mTLS listeners on port 0,
 * stores in temp dirs, grpc-js peer connections). Counters, never timing:
 *  - a wrapped peer client counts large bodies the transport has started to receive and not
 *    yet handed over whole: never more than the body slots (one per store writer lane);
 *  - a cut large body is asked for again from the offset it reached: the serving node counts
 *    the bytes it served; the body arrives once, whole and verified.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { connect, createServer, type AddressInfo, type Socket } from "node:net";
import { describe, expect, it } from "vitest";
import type { ReadBodiesResponse } from "../../src/gen/granary/replication/v1/replication_pb.js";
import { BODY_CHUNK_BYTES } from "../../src/api/replication-service.js";
import { BodySlots } from "../../src/replication/body-slots.js";
import { DEFAULT_LANES } from "../../src/store/options.js";
import { createGrpcJsPeerClient } from "../../src/transport/peer-client-grpcjs.js";
import type { PeerClient } from "../../src/transport/peer-client.js";
import { Failpoints } from "../../src/util/failpoints.js";
import { bytes } from "../helpers/data.js";
import { publicClient, putCas, waitForArtifacts, waitReady } from "../helpers/mesh.js";
import { useMeshFixture } from "../helpers/mesh-fixture.js";

const mesh = useMeshFixture("granary-bounded-");
const { node, uniq } = mesh;

/**
 * A real grpc-js peer client whose ReadBodies streams are watched: `open` counts streams whose
 * bodies have not all been handed over yet (a stream counts from the moment it is opened —
 * bytes may flow into its window from then on — until it has yielded the last byte its headers
 * declared, or ends). `mutate` may rewrite frames (a lying peer).
 */
async function watchedFactory(
  name: string,
  watch: { open: number; peak: number; streams: number; mutate?: (f: ReadBodiesResponse, streamNo: number) => ReadBodiesResponse },
): Promise<(address: string, serverName?: string) => PeerClient> {
  const c = await mesh.pki.cert(name);
  const tls = { ca: readFileSync(mesh.pki.ca), cert: readFileSync(c.cert), key: readFileSync(c.key) };
  return (address, serverName) => {
    const inner = createGrpcJsPeerClient(address, { tls, idleTimeoutMs: 10_000 }, serverName);
    return {
      address: inner.address,
      hello: (r, s) => inner.hello(r, s),
      follow: (r, s) => inner.follow(r, s),
      listManifests: (r, s) => inner.listManifests(r, s),
      counters: () => inner.counters(),
      close: () => inner.close(),
      readBodies: (r, s) => ({
        async *[Symbol.asyncIterator](): AsyncGenerator<ReadBodiesResponse> {
          const no = ++watch.streams;
          let counted = true;
          watch.open++;
          watch.peak = Math.max(watch.peak, watch.open);
          const done = (): void => {
            if (counted) watch.open--;
            counted = false;
          };
          let declared = 0;
          let bodies = 0;
          let handed = 0;
          try {
            for await (const raw of inner.readBodies(r, s)) {
              const f = watch.mutate ? watch.mutate(raw, no) : raw;
              if (f.frame.case === "header") declared += Number(f.frame.value.length);
              if (f.frame.case === "header" || f.frame.case === "missing") bodies++;
              if (f.frame.case === "chunk") handed += f.frame.value.length;
              // Every body asked for has been announced and every declared byte handed over.
              if (bodies === r.bodies!.length && handed === declared) done();
              yield f;
            }
          } finally {
            done();
          }
        },
      }),
    };
  };
}

/** A TCP pass-through on 127.0.0.1 whose connections can be reset (RST) at once: a killed link. */
async function resettableProxy(): Promise<{ port: number; target: number; resetAll(): number; close(): Promise<void> }> {
  const pairs = new Set<[Socket, Socket]>();
  const server = createServer((client) => {
    const upstream = connect(proxy.target, "127.0.0.1");
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const drop = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const s of pair) s.on("error", drop).on("close", drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const proxy = {
    port: (server.address() as AddressInfo).port,
    target: 0,
    resetAll(): number {
      const n = pairs.size;
      for (const pair of [...pairs]) {
        pairs.delete(pair);
        for (const s of pair) if (!s.destroyed) s.resetAndDestroy();
      }
      return n;
    },
    close: (): Promise<void> => {
      proxy.resetAll();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return proxy;
}

const sha256 = async (chunks: AsyncIterable<Uint8Array>): Promise<string> => {
  const h = createHash("sha256");
  for await (const c of chunks) h.update(c);
  return h.digest("hex");
};

describe("BodySlots", () => {
  it("grants FIFO up to its size, counts its peak, and withdraws an aborted waiter", async () => {
    const slots = new BodySlots(2);
    const a = await slots.acquire();
    const b = await slots.acquire();
    const order: string[] = [];
    const c = slots.acquire().then((r) => (order.push("c"), r));
    const ac = new AbortController();
    const d = slots.acquire(ac.signal);
    const e = slots.acquire().then((r) => (order.push("e"), r));
    expect(slots.stats()).toMatchObject({ held: 2, waiting: 3, waits: 3 });
    ac.abort(new Error("pass stopped"));
    await expect(d).rejects.toThrow("pass stopped");
    a();
    a(); // idempotent
    const rc = await c;
    b();
    const re = await e;
    expect(order).toEqual(["c", "e"]);
    rc();
    re();
    expect(slots.stats()).toMatchObject({ slots: 2, held: 0, peakHeld: 2, waiting: 0 });
  });
});

describe("bootstrap memory bound", () => {
  it("a bulk bootstrap never has more large bodies in flight than the body slots (one per writer lane)", async () => {
    const src = await node(uniq("bulk-src"));
    const conn = publicClient(src);
    const digests: string[] = [];
    try {
      // 24 large bodies (each its own stream) and a few small ones (batched, no slot).
      for (let i = 0; i < 24; i++) digests.push(await putCas(conn, "bound", bytes(1000 + i, (1 << 20) + i * 97_000)));
      for (let i = 0; i < 20; i++) digests.push(await putCas(conn, "bound", bytes(2000 + i, 30_000)));
    } finally {
      conn.close();
    }
    const watch = { open: 0, peak: 0, streams: 0 };
    const name = uniq("bulk-fresh");
    const fresh = await node(name, [src], { hooks: { peerClientFactory: await watchedFactory(name, watch) } });
    await waitReady(fresh);
    await waitForArtifacts(fresh, "bound", digests);
    // Transport-side count: large streams with bytes still to hand over, plus at most one small batch
    // at a time per free stream — the small ones here fit one batch, so at most one of those.
    expect(watch.peak).toBeLessThanOrEqual(DEFAULT_LANES + 1);
    expect(watch.open).toBe(0);
    const slots = fresh.replication!.bodySlots.stats();
    expect(slots.slots).toBe(DEFAULT_LANES);
    // The link wanted 16 streams; large bodies had to wait for a slot, and got all of them.
    expect(slots.waits).toBeGreaterThan(0);
    expect(slots.peakHeld).toBe(DEFAULT_LANES);
    const link = fresh.replication!.allLinks()[0]!;
    expect(link.stats.failedCount).toBe(0);
    expect(link.stats.passes).toBe(1);
  });
});

describe("resumable bodies", () => {
  it("a large body cut mid-way is fetched again from the offset it reached, once, whole and verified", async () => {
    const fp = new Failpoints();
    const src = await node(uniq("cut-src"), [], { hooks: { failpoints: fp } });
    const conn = publicClient(src);
    const size = 24 << 20;
    const body = bytes(3000, size);
    let victim: string;
    try {
      victim = await putCas(conn, "resume", body);
    } finally {
      conn.close();
    }
    // Serving side: cut the victim's first read at its 9th chunk; count what is served.
    const CUT_AT = 8 * BODY_CHUNK_BYTES;
    let cutAt = -1;
    let served = 0;
    const reads: number[] = [];
    fp.set("peer.read-bodies.body", (c) => {
      if (c["key"] === victim) reads.push(Number(c["size"]));
    });
    fp.set("peer.read-bodies.chunk", (c) => {
      if (c["key"] !== victim) return;
      const offset = Number(c["offset"]);
      const length = Number(c["size"]);
      if (cutAt < 0 && offset >= CUT_AT) {
        cutAt = offset;
        throw new Error(`injected: stream cut at byte ${offset}`);
      }
      served += Math.min(BODY_CHUNK_BYTES, length - offset);
    });
    const fresh = await node(uniq("cut-fresh"), [src], { hooks: { replication: { retry: { initialMs: 10, maxMs: 50, multiplier: 2, jitter: 0 } } } });
    await waitReady(fresh);
    await waitForArtifacts(fresh, "resume", [victim]);

    // Two reads of the victim: the whole body, then the rest from where the receiver was.
    expect(cutAt).toBe(CUT_AT);
    expect(reads).toHaveLength(2);
    expect(reads[0]).toBe(size);
    const resumedFrom = size - reads[1]!;
    expect(resumedFrom).toBeGreaterThan(0);
    expect(resumedFrom).toBeLessThanOrEqual(cutAt);
    // Bytes served: the body once, plus at most what was in flight when it was cut.
    expect(served).toBeLessThanOrEqual(size + cutAt);
    expect(served).toBe(cutAt + (size - resumedFrom));
    const link = fresh.replication!.allLinks()[0]!;
    expect(link.stats).toMatchObject({ resumedCount: 1, resumedBytes: resumedFrom, failedCount: 0, passes: 1 });
    // Handed to the store: the body once, nothing twice.
    expect(link.stats.bytesFetched).toBe(size);
    const id = { namespace: "resume", kind: "cas" as const, key: victim };
    expect(fresh.store.stat(id)?.size).toBe(size);
    expect(await sha256(fresh.store.read(id).chunks)).toBe(victim);
  });

  it("a large body whose connection is reset mid-way resumes at its offset on the redialled connection", async () => {
    const fp = new Failpoints();
    // The source advertises the proxy, so the receiver knows it by one address only (else
    // membership takes the source's own address as a move and drops the proxied link).
    const proxy = await resettableProxy();
    const src = await node(uniq("rst-src"), [], { hooks: { failpoints: fp }, config: { advertiseAddress: `https://127.0.0.1:${proxy.port}` } });
    proxy.target = src.peerListener!.address().port;
    const conn = publicClient(src);
    const size = 24 << 20;
    let victim: string;
    try {
      victim = await putCas(conn, "rst", bytes(5000, size));
    } finally {
      conn.close();
    }
    // Receiver side: tell when 2 MiB of the victim have been handed over (so the reset finds
    // bytes to resume from). Serving side: at byte 8 MiB, wait for that, then reset the link.
    let got2MiB!: () => void;
    const received = new Promise<void>((r) => (got2MiB = r));
    let handed = 0;
    const watch = {
      open: 0,
      peak: 0,
      streams: 0,
      mutate: (f: ReadBodiesResponse): ReadBodiesResponse => {
        if (f.frame.case === "chunk" && (handed += f.frame.value.length) >= 2 << 20) got2MiB();
        return f;
      },
    };
    let resets = 0;
    const reads: number[] = [];
    fp.set("peer.read-bodies.body", (c) => {
      if (c["key"] === victim) reads.push(Number(c["size"]));
    });
    fp.set("peer.read-bodies.chunk", async (c) => {
      if (c["key"] !== victim || resets > 0 || Number(c["offset"]) < 8 << 20) return;
      await received;
      resets = proxy.resetAll();
    });
    const name = uniq("rst-fresh");
    const fresh = await node(name, [], {
      peers: [`https://127.0.0.1:${proxy.port}`],
      hooks: { peerClientFactory: await watchedFactory(name, watch), replication: { retry: { initialMs: 10, maxMs: 50, multiplier: 2, jitter: 0 } } },
    });
    try {
      await waitReady(fresh);
      await waitForArtifacts(fresh, "rst", [victim]);
    } finally {
      await proxy.close();
    }
    expect(resets).toBeGreaterThanOrEqual(1);
    expect(reads).toHaveLength(2);
    const resumedFrom = size - reads[1]!;
    expect(resumedFrom).toBeGreaterThanOrEqual(2 << 20);
    const link = fresh.replication!.allLinks()[0]!;
    expect(link.stats).toMatchObject({ resumedCount: 1, resumedBytes: resumedFrom, failedCount: 0, passes: 1 });
    expect(link.stats.bytesFetched).toBe(size);
    expect(await sha256(fresh.store.read({ namespace: "rst", kind: "cas", key: victim }).chunks)).toBe(victim);
  });

  it("a resumed body whose bytes are wrong is never applied; the pass fetches it again whole", async () => {
    const fp = new Failpoints();
    const src = await node(uniq("lie-src"), [], { hooks: { failpoints: fp } });
    const conn = publicClient(src);
    const size = 12 << 20;
    let victim: string;
    try {
      victim = await putCas(conn, "lie", bytes(4000, size));
    } finally {
      conn.close();
    }
    let cut = false;
    fp.set("peer.read-bodies.chunk", (c) => {
      if (c["key"] === victim && !cut && Number(c["offset"]) >= 4 * BODY_CHUNK_BYTES) {
        cut = true;
        throw new Error("injected: stream cut");
      }
    });
    // Receiver side: the first resumed stream (the 2nd ReadBodies of the victim) flips one byte.
    let victimStreams = 0;
    let lied = false;
    const streamOf = new Map<number, boolean>();
    const watch = {
      open: 0,
      peak: 0,
      streams: 0,
      mutate: (f: ReadBodiesResponse, no: number): ReadBodiesResponse => {
        if (f.frame.case === "header") {
          const isVictim = f.frame.value.manifest?.key === victim;
          if (isVictim && !streamOf.has(no)) victimStreams++;
          streamOf.set(no, isVictim && victimStreams === 2);
          return f;
        }
        if (f.frame.case !== "chunk" || !streamOf.get(no) || lied) return f;
        lied = true;
        const bad = Uint8Array.from(f.frame.value);
        bad[0] = bad[0]! ^ 0xff;
        return { ...f, frame: { case: "chunk", value: bad } } as ReadBodiesResponse;
      },
    };
    const name = uniq("lie-fresh");
    const fresh = await node(name, [src], {
      hooks: { peerClientFactory: await watchedFactory(name, watch), replication: { retry: { initialMs: 10, maxMs: 50, multiplier: 2, jitter: 0 } } },
    });
    await waitReady(fresh);
    await waitForArtifacts(fresh, "lie", [victim]);
    expect(cut).toBe(true);
    expect(lied).toBe(true);
    const link = fresh.replication!.allLinks()[0]!;
    // The resumed body failed its digest check (one failed body, a second pass), then came whole.
    expect(link.stats.resumedCount).toBe(1);
    expect(link.stats.failedCount).toBe(1);
    expect(link.stats.passes).toBe(2);
    expect(link.stats.lastError).toContain(`expected ${victim}`);
    const id = { namespace: "lie", kind: "cas" as const, key: victim };
    expect(await sha256(fresh.store.read(id).chunks)).toBe(victim);
    // One index entry, one feed entry: the wrong body never reached the index.
    expect(fresh.store.readFeed(0, 100).filter((e) => e.manifest.key === victim)).toHaveLength(1);
  });
});

