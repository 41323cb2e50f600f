/**
 * Found by chaos scenario 12 (disk full, seed 4): 64 uploads at once on one connection of our
 * public client, refused by the node after their headers, got ENHANCE_YOUR_CALM instead of their
 * status, and some never got an answer at all. The cause was on the client side: Node counts
 * request bytes queued for sending against the session's memory credit (10 MB by default) and,
 * past it, resets the response HEADERS of its own streams. The client now lifts the credit
 * (src/transport/tuned-session-manager.ts). Before the fix, the refused case below ended with
 * 252 of 256 calls ENHANCE_YOUR_CALM and 4 unanswered.
 */
import { create } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ArtifactService, Kind, PutRequestSchema, type PutRequest } from "../../src/gen/granary/artifact/v1/artifact_pb.js";
import type { GranaryNode } from "../../src/node/granary-node.js";
import { startSingleNode } from "../../chaos/lib/nodes.js";
import { sha256Hex } from "../helpers/data.js";
import { publicClient } from "../helpers/mesh.js";
import { tempDir } from "../helpers/temp.js";

const UPLOADS = 64;
const ROUNDS = 4;
const BODY_BYTES = 2 << 20;
const CHUNK = 1 << 20;

async function* upload(namespace: string, body: Uint8Array): AsyncGenerator<PutRequest> {
  yield create(PutRequestSchema, { msg: { case: "header", value: { namespace, kind: Kind.CAS, key: "", size: BigInt(body.length) } } });
  for (let o = 0; o < body.length; o += CHUNK) yield create(PutRequestSchema, { msg: { case: "chunk", value: body.subarray(o, o + CHUNK) } });
}

describe("64 uploads at once on one client connection", () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let node: GranaryNode;
  beforeAll(async () => {
    dir = await tempDir();
    node = await startSingleNode(dir.path);
  });
  afterAll(async () => {
    await node.close();
    await dir.cleanup();
  });

  /** Runs ROUNDS rounds of UPLOADS concurrent puts on one connection; counts outcomes by kind. */
  async function rounds(namespace: string, bodyOf: (round: number, i: number) => Uint8Array): Promise<Record<string, number>> {
    const conn = publicClient(node);
    const outcomes: Record<string, number> = {};
    try {
      for (let r = 0; r < ROUNDS; r++) {
        await Promise.all(
          Array.from({ length: UPLOADS }, async (_, i) => {
            // Bounds the test, not the node: a call unanswered for this long is a hang to report.
            const signal = AbortSignal.timeout(30_000);
            let outcome: string;
            try {
              const res = await conn.client(ArtifactService).put(upload(namespace, bodyOf(r, i)), { signal });
              outcome = res.manifest?.size === BigInt(BODY_BYTES) ? "stored" : `stored with size ${String(res.manifest?.size)}`;
            } catch (e) {
              outcome = signal.aborted ? "no answer" : (e as Error).message.replace(/namespace ".*/, "namespace ...");
            }
            outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
          }),
        );
      }
    } finally {
      conn.close();
    }
    return outcomes;
  }

  it("refused after their headers: every one gets its status", async () => {
    const body = new Uint8Array(BODY_BYTES).fill(7);
    const outcomes = await rounds("Not A Namespace!", () => body);
    expect(outcomes).toEqual({ "[invalid_argument] namespace ...": UPLOADS * ROUNDS });
  }, 120_000);

  it("accepted: every one is stored while the others queue for a writer lane", async () => {
    const bodies = new Map<string, Uint8Array>();
    const outcomes = await rounds("default", (r, i) => {
      const b = new Uint8Array(BODY_BYTES).fill((r * UPLOADS + i) % 251);
      b[0] = r;
      b[1] = i;
      bodies.set(sha256Hex([b]), b);
      return b;
    });
    expect(outcomes).toEqual({ stored: UPLOADS * ROUNDS });
    for (const d of bodies.keys()) expect(node.store.stat({ namespace: "default", kind: "cas", key: d })?.size).toBe(BODY_BYTES);
  }, 120_000);
});
