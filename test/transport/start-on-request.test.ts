/**
 * Found by chaos scenario 9: a connection opening streams (HEADERS only, up to the concurrent
 * stream limit) started a connect-node handler for each (~0.3 ms each, ~150 ms of event loop for
 * 256), slowing every other client. Handlers now start on the request's first byte (or its end):
 * streams that never send one, and streams closed before they do, start nothing.
 */
import { expect, it } from "vitest";
import { createConnectHandler } from "../../src/transport/connect-handler.js";
import { createPublicServer } from "../../src/transport/server.js";
import { F, frame, grpcRequestHeaders, headerBlock, rawConnect, T } from "../../chaos/lib/h2-frames.js";
import { grpcFrame } from "../../chaos/lib/raw-grpc.js";
import { StubReplication } from "./fixtures.js";

it("starts no handler for a stream that sends only HEADERS, and one for a stream that sends its request", async () => {
  const stub = new StubReplication();
  const inner = createConnectHandler({ routes: stub.routes });
  let started = 0;
  const server = await createPublicServer({
    handler: (req, res) => {
      started++;
      inner(req, res);
    },
    listen: { host: "127.0.0.1", port: 0 },
  });
  try {
    const c = await rawConnect(server.address().port);
    c.socket.on("error", () => {});
    const block = headerBlock(grpcRequestHeaders("/granary.replication.v1.ReplicationService/Hello", "127.0.0.1"));
    const idle: Buffer[] = [];
    for (let i = 0; i < 50; i++) idle.push(frame(T.HEADERS, F.END_HEADERS, 2 * i + 1, block));
    // After them on the same connection, a whole unary call: HEADERS, then its message with END_STREAM.
    const legit = 2 * 50 + 1;
    c.write(Buffer.concat([...idle, frame(T.HEADERS, F.END_HEADERS, legit, block), frame(T.DATA, F.END_STREAM, legit, grpcFrame(new Uint8Array(0)))]));
    // The server answers with response HEADERS and trailers (a second HEADERS frame).
    await new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if ((c.received.frames[T.HEADERS] ?? 0) >= 2) resolve();
      };
      c.socket.on("data", () => setImmediate(check));
      c.socket.once("close", () => reject(new Error(`connection closed; frames ${JSON.stringify(c.received.frames)}`)));
    });
    expect(started).toBe(1);
    expect(stub.helloCalls).toBe(1);
    // Closing the connection closes the 50 idle streams: that must not start their handlers.
    c.destroy();
  } finally {
    await server.close(0);
  }
  expect(started).toBe(1);
});
