/**
 * Found by the reliability suite (chaos scenario 10 at full size): a call the server answers
 * before it has read the whole request (a message whose length prefix asks for more than the
 * limit, a unary call carrying two messages) left the rest of the request in the stream's
 * receive buffer. Node destroys an Http2Stream only once that buffer has been read, so each
 * such call kept a slot of the connection's stream table for good; after maxConcurrentStreams
 * of them every new call on that connection was refused with ENHANCE_YOUR_CALM. The listeners
 * now release a stream whose response is complete (src/transport/unread-request.ts).
 */
import { describe, expect, it } from "vitest";
import { grpcFrame, rawCall, rawSession } from "../../chaos/lib/raw-grpc.js";
import { createConnectHandler } from "../../src/transport/connect-handler.js";
import { createPublicServer } from "../../src/transport/server.js";
import { StubReplication } from "../transport/fixtures.js";

const HELLO = "/granary.replication.v1.ReplicationService/Hello";
const STREAM_LIMIT = 8;

describe("a response sent before the request was read", () => {
  it("frees the stream: a connection keeps serving after many more such calls than its stream limit", async () => {
    const stub = new StubReplication();
    const server = await createPublicServer({
      handler: createConnectHandler({ routes: stub.routes }),
      listen: { host: "127.0.0.1", port: 0 },
      limits: { maxConcurrentStreams: STREAM_LIMIT },
    });
    const outcomes: string[] = [];
    try {
      const session = await rawSession(`http://127.0.0.1:${server.address().port}`);
      session.on("error", () => {});
      const payload = Buffer.alloc(1 << 20, 1);
      // Sequential calls, each answered early: RESOURCE_EXHAUSTED for a prefix above the message
      // limit, then a unary call with two messages (the second one is never read).
      for (let i = 0; i < 4 * STREAM_LIMIT; i++) {
        const body = i % 2 === 0 ? grpcFrame(payload, 0xffffffff) : Buffer.concat([grpcFrame(payload), grpcFrame(payload)]);
        const out = await rawCall(session, HELLO, body, 10_000);
        outcomes.push(out.status !== undefined ? `status ${out.status}` : `no status (${out.failure})`);
      }
      session.close();
    } finally {
      await server.close(0);
    }
    expect(outcomes.filter((o) => !o.startsWith("status"))).toEqual([]);
    expect(new Set(outcomes)).toEqual(new Set(["status 8", "status 13"]));
  });
});
