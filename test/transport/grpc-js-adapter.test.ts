/**
 * The grpc-js ServiceDefinition built from the protobuf-es descriptor, served by a grpc-js
 * server over mTLS and called by both client stacks: proves paths, streaming kinds and
 * (de)serializers interoperate with connect-node's encoding.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  HelloResponseSchema,
  ReadBodiesResponseSchema,
  ReplicationService,
  type HelloRequest,
  type HelloResponse,
  type ReadBodiesRequest,
  type ReadBodiesResponse,
} from "../../src/gen/granary/replication/v1/replication_pb.js";
import { grpcServiceDefinition } from "../../src/transport/grpc-js-adapter.js";
import { createPeerGrpcClient } from "../../src/transport/peer-channel.js";
import { createPeerConnectTransport } from "../../src/transport/peer-transport.js";
import { drain, grpcHello, makePki, type Pki } from "./fixtures.js";

let root: string;
let pki: Pki;
let server: grpc.Server;
let port: number;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "granary-grpcjs-test-"));
  pki = await makePki(join(root, "pki"));
  const a = await pki.node("node-a");
  server = new grpc.Server({ "grpc.max_concurrent_streams": 64 });
  server.addService(grpcServiceDefinition(ReplicationService), {
    hello: (call: grpc.ServerUnaryCall<HelloRequest, HelloResponse>, cb: grpc.sendUnaryData<HelloResponse>) => {
      cb(null, create(HelloResponseSchema, { nodeId: `echo:${call.request.nodeId}`, feedHead: 2n ** 60n + 1n }));
    },
    readBodies: (call: grpc.ServerWritableStream<ReadBodiesRequest, ReadBodiesResponse>) => {
      const n = call.request.bodies.length;
      for (let i = 0; i < n; i++) call.write(create(ReadBodiesResponseSchema, { frame: { case: "chunk", value: new Uint8Array(1000).fill(i) } }));
      call.end();
    },
  });
  const creds = grpc.ServerCredentials.createSsl(
    await readFile(pki.caFile),
    [{ cert_chain: await readFile(a.certFile), private_key: await readFile(a.keyFile) }],
    true,
  );
  port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", creds, (err, p) => (err ? reject(err) : resolve(p))));
});
afterAll(async () => {
  server.forceShutdown();
  await rm(root, { recursive: true, force: true });
});

describe("grpcServiceDefinition", () => {
  it("keys methods by localName with the right paths and kinds", () => {
    const def = grpcServiceDefinition(ReplicationService);
    expect(Object.keys(def).sort()).toEqual(["follow", "hello", "listManifests", "readBodies"]);
    expect(def["readBodies"]).toMatchObject({ path: "/granary.replication.v1.ReplicationService/ReadBodies", requestStream: false, responseStream: true });
    expect(def["hello"]).toMatchObject({ requestStream: false, responseStream: false });
  });

  it("serves the grpc-js client (uint64 above 2^53 intact)", async () => {
    const client = createPeerGrpcClient(ReplicationService, `127.0.0.1:${port}`, await pki.pem(await pki.node("node-b")));
    try {
      const res = await grpcHello(client);
      expect(res.nodeId).toBe("echo:caller");
      expect(res.feedHead).toBe(2n ** 60n + 1n);
      const msgs = await drain(client.readBodies({ bodies: [{}, {}, {}] }) as AsyncIterable<ReadBodiesResponse>);
      expect(msgs.map((m) => (m.frame.case === "chunk" ? m.frame.value[0] : -1))).toEqual([0, 1, 2]);
    } finally {
      client.close();
    }
  });

  it("serves the connect-node client", async () => {
    const t = createPeerConnectTransport({ baseUrl: `https://127.0.0.1:${port}`, tls: await pki.pem(await pki.node("node-b")) });
    try {
      const client = createClient(ReplicationService, t.transport);
      expect((await client.hello({ nodeId: "c" })).feedHead).toBe(2n ** 60n + 1n);
      expect(await drain(client.readBodies({ bodies: [{}, {}] }))).toHaveLength(2);
    } finally {
      t.close();
    }
  });
});
