/**
 * Found by the reliability suite (chaos scenario 9): one connection sending HEADERS+RST_STREAM
 * pairs got ~1000 handler starts before nghttp2's own bucket (1000 burst, not settable on Node
 * 20) sent GOAWAY, blocking the event loop ~0.9 s for every client. Each listener now has its
 * own reset budget (limits.streamResetBurst / streamResetRatePerSecond).
 */
import { describe, expect, it } from "vitest";
import { createConnectHandler } from "../../src/transport/connect-handler.js";
import { createPublicServer } from "../../src/transport/server.js";
import { F, frame, grpcRequestHeaders, headerBlock, rawConnect, rst, T } from "../../chaos/lib/h2-frames.js";
import { StubReplication } from "../transport/fixtures.js";

describe("Rapid Reset budget", () => {
  it("sends GOAWAY ENHANCE_YOUR_CALM once a connection resets more streams than the burst", async () => {
    const stub = new StubReplication();
    const server = await createPublicServer({
      handler: createConnectHandler({ routes: stub.routes }),
      listen: { host: "127.0.0.1", port: 0 },
      limits: { streamResetBurst: 20, streamResetRatePerSecond: 1 },
    });
    const resets: Array<string | undefined> = [];
    try {
      const c = await rawConnect(server.address().port);
      c.socket.on("error", () => {});
      const block = headerBlock(grpcRequestHeaders("/granary.replication.v1.ReplicationService/Hello", "127.0.0.1"));
      const frames: Buffer[] = [];
      for (let i = 0; i < 200; i++) frames.push(frame(T.HEADERS, F.END_HEADERS, 2 * i + 1, block), rst(2 * i + 1));
      c.write(Buffer.concat(frames));
      const closed = await c.closed(Date.now());
      resets.push(closed.how);
      expect(c.received.goaway).toBe(11); // ENHANCE_YOUR_CALM
      c.destroy();
    } finally {
      await server.close(0);
    }
    expect(resets).toHaveLength(1);
  });
});
