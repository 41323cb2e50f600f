/**
 * Interop: a @grpc/grpc-js client (generic client over the generated descriptors) against the
 * public listener, over h2c and over TLS (--public-tls with a node certificate).
 */
import { join } from "node:path";
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ArtifactService, Kind, type GetResponse, type PutResponse } from "../../src/gen/granary/artifact/v1/artifact_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.js";
import { formatHostPort, resolveNodeConfig } from "../../src/node/config.js";
import { GranaryNode } from "../../src/node/granary-node.js";
import { silentLogger } from "../../src/telemetry/logger.js";
import { createGrpcJsClient } from "../../src/transport/grpc-js-adapter.js";
import { connectPublic } from "../../src/transport/public-client.js";
import { bytes, sha256Hex } from "../helpers/data.js";
import { makePki, putCas } from "../helpers/mesh.js";
import { tempDir } from "../helpers/temp.js";

let root: string;
let cleanup: () => Promise<void>;
const nodes: GranaryNode[] = [];

beforeAll(async () => {
  const t = await tempDir("granary-interop-");
  root = t.path;
  cleanup = t.cleanup;
});

afterAll(async () => {
  await Promise.all(nodes.map((n) => n.close()));
  await cleanup?.();
});

async function roundTrip(target: string, creds: grpc.ChannelCredentials, options: grpc.ChannelOptions = {}): Promise<void> {
  const client = createGrpcJsClient(ArtifactService, target, creds, options);
  try {
    const body = bytes(42, (2 << 20) + 99);
    const digest = sha256Hex([body]);
    const put = await new Promise<PutResponse>((resolve, reject) => {
      const call = client.put(new grpc.Metadata(), {}, (err, res) => (err || !res ? reject(err ?? new Error("no response")) : resolve(res)));
      call.write({ msg: { case: "header", value: { namespace: "grpcjs", kind: Kind.CAS, key: digest, size: BigInt(body.length) } } });
      for (let o = 0; o < body.length; o += 1 << 20) call.write({ msg: { case: "chunk", value: body.subarray(o, o + (1 << 20)) } });
      call.end();
    });
    expect(put.manifest?.digest).toBe(digest);
    const parts: Uint8Array[] = [];
    for await (const m of client.get({ namespace: "grpcjs", kind: Kind.CAS, key: digest }) as AsyncIterable<GetResponse>) {
      if (m.msg.case === "chunk") parts.push(m.msg.value);
    }
    expect(sha256Hex(parts)).toBe(digest);
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      const call = client.get({ namespace: "grpcjs", kind: Kind.CAS, key: "0".repeat(64) });
      call.on("data", () => undefined);
      call.on("error", resolve);
    });
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    const health = createGrpcJsClient(Health, target, creds, options);
    try {
      const res = await new Promise<{ status: number }>((resolve, reject) => health.check({ service: "" }, (e, r) => (e || !r ? reject(e) : resolve(r))));
      expect(res.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    } finally {
      health.close();
    }
  } finally {
    client.close();
  }
}

describe("public listener interop", () => {
  it("serves a grpc-js client over h2c", async () => {
    const node = await GranaryNode.start(resolveNodeConfig({ dataDir: join(root, "h2c"), listen: "127.0.0.1:0" }), silentLogger());
    nodes.push(node);
    await roundTrip(formatHostPort(node.publicAddress), grpc.credentials.createInsecure());
  });

  it("serves grpc-js and connect clients over TLS with --public-tls", async () => {
    const pki = await makePki(join(root, "pki"));
    const c = await pki.cert("tls-node");
    const node = await GranaryNode.start(
      resolveNodeConfig({ dataDir: join(root, "tls"), listen: "127.0.0.1:0", publicTls: true, tlsCert: c.cert, tlsKey: c.key }),
      silentLogger(),
    );
    nodes.push(node);
    const target = formatHostPort(node.publicAddress);
    await roundTrip(target, grpc.credentials.createSsl(readFileSync(pki.ca)), { "grpc.ssl_target_name_override": "localhost" });
    const conn = connectPublic({ server: `https://${target}`, caFile: pki.ca });
    try {
      const d = await putCas(conn, "tls", bytes(43, 1000));
      expect(node.store.stat({ namespace: "tls", kind: "cas", key: d })).toBeDefined();
    } finally {
      conn.close();
    }
    // Plain h2c against the TLS port fails instead of being served.
    const plain = connectPublic({ server: `http://${target}` });
    try {
      await expect(putCas(plain, "tls", bytes(44, 10))).rejects.toThrow();
    } finally {
      plain.close();
    }
  });
});
