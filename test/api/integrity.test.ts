/**
 * Hardening from the incident (BRIEF point 3): a record its segment file no longer covers is
 * never served as a short body. It is answered NOT_FOUND before any header (clients fetch it
 * elsewhere; the bootstrap client skips it as stale), and dropped from the index.
 */
import { readdir, stat, truncate } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { ArtifactService, Kind } from "../../src/gen/granary/artifact/v1/artifact_pb.js";
import { formatHostPort, resolveNodeConfig } from "../../src/node/config.js";
import { GranaryNode } from "../../src/node/granary-node.js";
import { silentLogger } from "../../src/telemetry/logger.js";
import { connectPublic } from "../../src/transport/public-client.js";
import { bytes } from "../helpers/data.js";
import { putCas } from "../helpers/mesh.js";
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
