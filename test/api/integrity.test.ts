/**
 * Hardening from the incident (BRIEF point 3): a record its segment file no longer covers is
 * never served as a short body. It is answered NOT_FOUND before any header (clients fetch it
 * elsewhere; the bootstrap client skips it as stale), and dropped from the index. A range read
 * (offset/limit) is held to the same rule as a full read: the whole record's CRC is checked
 * before the range's last chunk is sent.
 */
import { readdir, stat, truncate } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { ArtifactService, Kind } from "../../src/gen/granary/artifact/v1/artifact_pb.js";
import { formatHostPort, resolveNodeConfig } from "../../src/node/config.js";
import { GranaryNode } from "../../src/node/granary-node.js";
import { silentLogger } from "../../src/telemetry/logger.js";
import { connectPublic, type PublicConnection } from "../../src/transport/public-client.js";
import { bytes } from "../helpers/data.js";
import { putCas } from "../helpers/mesh.js";
import { flipByte, locateBody } from "../helpers/segments.js";
import { tempDir } from "../helpers/temp.js";

const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

it("answers NOT_FOUND, never a short body, for a record its segment no longer covers", async () => {
  const t = await tempDir();
  cleanups.push(t.cleanup);
  const node = await GranaryNode.start(resolveNodeConfig({ dataDir: t.path, listen: "127.0.0.1:0", opsListen: "off" }), silentLogger());
  cleanups.push(() => node.close());
  const conn = connectPublic({ server: formatHostPort(node.publicAddress) });
  cleanups.push(async () => conn.close());
  const digest = await putCas(conn, "guard", bytes(77, 3 << 20));
  const segments = join(t.path, "segments");
  const files = (await readdir(segments)).filter((f) => f.endsWith(".seg"));
  expect(files.length).toBeGreaterThan(0);
  for (const f of files) {
    const p = join(segments, f);
    const size = (await stat(p)).size;
    if (size > 0) await truncate(p, size - 1000);
  }
  const frames: string[] = [];
  const err = await (async () => {
    try {
      for await (const r of conn.client(ArtifactService).get({ namespace: "guard", kind: Kind.CAS, key: digest })) frames.push(r.msg.case ?? "");
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  expect(err).toBeInstanceOf(ConnectError);
  expect(Code[(err as ConnectError).code]).toBe("NotFound");
  expect(frames).toEqual([]);
  const s = await conn.client(ArtifactService).stat({ refs: [{ namespace: "guard", kind: Kind.CAS, key: digest }] });
  expect(s.results[0]?.manifest).toBeUndefined();
});



async function rangeGet(conn: PublicConnection, key: string, offset: number, limit: number): Promise<{ bytes: Buffer; error: unknown }> {
  const parts: Uint8Array[] = [];
  try {
    for await (const r of conn.client(ArtifactService).get({ namespace: "range", kind: Kind.CAS, key, offset: BigInt(offset), limit: BigInt(limit) })) {
      if (r.msg.case === "chunk") parts.push(r.msg.value);
    }
  } catch (error) {
    return { bytes: Buffer.concat(parts), error };
  }
  return { bytes: Buffer.concat(parts), error: undefined };
}

it("verifies the whole record before a range read ends OK: a flipped bit inside or outside the range is an error, never wrong bytes", async () => {
  const t = await tempDir();
  cleanups.push(t.cleanup);
  const node = await GranaryNode.start(resolveNodeConfig({ dataDir: t.path, listen: "127.0.0.1:0", opsListen: "off" }), silentLogger());
  cleanups.push(() => node.close());
  const conn = connectPublic({ server: formatHostPort(node.publicAddress) });
  cleanups.push(async () => conn.close());
  const size = 3 << 20;
  const clean = bytes(101, size);
  const flipInside = bytes(102, size);
  const flipOutside = bytes(103, size);
  const keys = {
    clean: await putCas(conn, "range", clean),
    inside: await putCas(conn, "range", flipInside),
    outside: await putCas(conn, "range", flipOutside),
  };

  // Clean ranges, twice (the second may be served from the verified-record cache): the exact bytes.
  for (const [offset, limit] of [[0, 4096], [1_500_000, 1 << 20], [size - 10, 10], [0, size], [1_500_000, 1 << 20]] as const) {
    const r = await rangeGet(conn, keys.clean, offset, limit);
    expect(r.error).toBeUndefined();
    expect(r.bytes.equals(Buffer.from(clean.subarray(offset, offset + limit)))).toBe(true);
  }

  // A flip at body byte 2,000,000; the ranges asked for cover it, or end well before it.
  const inside = await locateBody(t.path, flipInside);
  await flipByte(inside.path, inside.at + 2_000_000);
  const outside = await locateBody(t.path, flipOutside);
  await flipByte(outside.path, outside.at + 2_000_000);

  const a = await rangeGet(conn, keys.inside, 1_999_000, 2000);
  expect(a.error).toBeInstanceOf(ConnectError);
  expect(Code[(a.error as ConnectError).code]).toBe("DataLoss");
  expect(a.bytes.length).toBe(0); // its only chunk was held back
  const b = await rangeGet(conn, keys.outside, 4096, 1 << 20);
  expect(b.error).toBeInstanceOf(ConnectError);
  expect(Code[(b.error as ConnectError).code]).toBe("DataLoss");
  expect(b.bytes.length).toBeLessThan(1 << 20); // never the whole range
  // Both records were dropped: absent from then on, for range and full reads alike.
  for (const key of [keys.inside, keys.outside]) {
    const again = await rangeGet(conn, key, 0, 10);
    expect(Code[(again.error as ConnectError).code]).toBe("NotFound");
  }
  // The clean one is untouched.
  const c = await rangeGet(conn, keys.clean, 2_000_000, 100);
  expect(c.error).toBeUndefined();
  expect(c.bytes.equals(Buffer.from(clean.subarray(2_000_000, 2_000_100)))).toBe(true);
});
