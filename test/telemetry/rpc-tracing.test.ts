/**
 * Trace context across the peer plane with BOTH client stacks, in-process: a real mTLS peer
 * listener (connect-node, with the server observe interceptor) called by the grpc-js peer
 * client (traceparent in Metadata) and by the connect-node peer transport (traceparent via the
 * client interceptor). The SDK here is registered by the test (in-memory exporter); the code
 * under test uses @opentelemetry/api only.
 */
import { join } from "node:path";
import { readFileSync } from "node:fs";
import { PassThrough } from "node:stream";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { context, trace } from "@opentelemetry/api";
import { node as sdkNode, tracing } from "@opentelemetry/sdk-node";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { HelloResponseSchema, ReadBodiesResponseSchema, ReplicationService } from "../../src/gen/granary/replication/v1/replication_pb.js";
import { createLogger } from "../../src/telemetry/logger.js";
import { ATTR } from "../../src/telemetry/names.js";
import { observeInterceptor } from "../../src/telemetry/rpc-observe.js";
import { startSpan } from "../../src/telemetry/spans.js";
import { tracingDecision } from "../../src/telemetry/tracing.js";
import { createConnectHandler, kPeerIdentity } from "../../src/transport/connect-handler.js";
import { createGrpcJsPeerClient } from "../../src/transport/peer-client-grpcjs.js";
import { createPeerConnectTransport } from "../../src/transport/peer-transport.js";
import { createPeerServer, type ListeningServer } from "../../src/transport/server.js";
import { makePki } from "../helpers/mesh.js";
import { tempDir } from "../helpers/temp.js";

const exporter = new tracing.InMemorySpanExporter();
const provider = new sdkNode.NodeTracerProvider({ spanProcessors: [new tracing.SimpleSpanProcessor(exporter)] });
let server: ListeningServer;
let tls: { ca: Buffer; cert: Buffer; key: Buffer };
let cleanup: () => Promise<void>;

beforeAll(async () => {
  provider.register();
  const t = await tempDir("granary-rpc-tracing-");
  cleanup = t.cleanup;
  const pki = await makePki(join(t.path, "pki"));
  const srv = await pki.cert("tr-server");
  const cli = await pki.cert("tr-client");
  tls = { ca: readFileSync(pki.ca), cert: readFileSync(cli.cert), key: readFileSync(cli.key) };
  const handler = createConnectHandler({
    routes: (router) =>
      router.service(ReplicationService, {
        hello: () => create(HelloResponseSchema, { nodeId: "tr-server" }),
        async *readBodies() {
          // Work inside a server-streaming handler body must land in the server span's trace.
          startSpan("handler.work").span.end();
          yield create(ReadBodiesResponseSchema, { frame: { case: "missing", value: { index: 0, reason: "not found" } } });
        },
      }),
    interceptors: [observeInterceptor({ traced: { listener: "peer", callerName: (v) => (v as { get: (k: typeof kPeerIdentity) => { nodeName: string } | undefined }).get(kPeerIdentity)?.nodeName } })],
  });
  server = await createPeerServer({ handler, listen: { host: "127.0.0.1", port: 0 }, tls: { caFile: pki.ca, certFile: srv.cert, keyFile: srv.key } });
});

afterAll(async () => {
  await server?.close(1000);
  await provider.shutdown();
  trace.disable();
  context.disable();
  await cleanup?.();
});

beforeEach(() => exporter.reset());

function spans(): tracing.ReadableSpan[] {
  return exporter.getFinishedSpans();
}

function byName(name: string): tracing.ReadableSpan {
  const found = spans().filter((s) => s.name === name);
  if (found.length !== 1) throw new Error(`expected one ${name}, got ${found.length}: ${spans().map((s) => s.name).join(", ")}`);
  return found[0]!;
}

function assertChain(clientName: string, serverName: string, root: tracing.ReadableSpan): void {
  const client = spans().find((s) => s.name === clientName && s.kind === 2 /* CLIENT */)!;
  const srv = spans().find((s) => s.name === serverName && s.kind === 1 /* SERVER */)!;
  expect(client, "client span").toBeDefined();
  expect(srv, "server span").toBeDefined();
  expect(client.parentSpanContext?.spanId).toBe(root.spanContext().spanId);
  expect(srv.spanContext().traceId).toBe(root.spanContext().traceId);
  expect(srv.parentSpanContext?.spanId).toBe(client.spanContext().spanId);
  expect(srv.parentSpanContext?.isRemote).toBe(true);
  expect(srv.attributes[ATTR.callerNode]).toBe("tr-client");
  expect(srv.attributes[ATTR.rpcGrpcStatusCode]).toBe(0);
  expect(client.attributes[ATTR.rpcGrpcStatusCode]).toBe(0);
}

const address = (): string => `https://127.0.0.1:${server.address().port}`;
const REPL = "granary.replication.v1.ReplicationService";

describe("traceparent across the peer plane", () => {
  it("grpc-js peer client -> connect-node server: one trace, handler work inside the server span", async () => {
    const client = createGrpcJsPeerClient(address(), { tls, idleTimeoutMs: 5000 });
    try {
      const root = startSpan("caller", { parent: null });
      await context.with(root.ctx, async () => {
        await client.hello({ nodeId: "tr-client" }, AbortSignal.timeout(10_000));
        for await (const _ of client.readBodies({ bodies: [] }, AbortSignal.timeout(10_000))) void _;
      });
      root.span.end();
      assertChain(`${REPL}/ReadBodies`, `${REPL}/ReadBodies`, byName("caller"));
      const helloServer = spans().find((s) => s.name === `${REPL}/Hello` && s.kind === 1)!;
      const helloClient = spans().find((s) => s.name === `${REPL}/Hello` && s.kind === 2)!;
      expect(helloServer.parentSpanContext?.spanId).toBe(helloClient.spanContext().spanId);
      const work = byName("handler.work");
      const srv = spans().find((s) => s.name === `${REPL}/ReadBodies` && s.kind === 1)!;
      expect(work.parentSpanContext?.spanId).toBe(srv.spanContext().spanId);
      expect(srv.attributes[ATTR.messages]).toBe(1);
    } finally {
      client.close();
    }
  });

  it("connect-node peer transport -> connect-node server: one trace", async () => {
    const t = createPeerConnectTransport({ baseUrl: address(), tls });
    try {
      const client = createClient(ReplicationService, t.transport);
      const root = startSpan("caller", { parent: null });
      await context.with(root.ctx, async () => {
        for await (const _ of client.readBodies({ bodies: [] })) void _;
      });
      root.span.end();
      assertChain(`${REPL}/ReadBodies`, `${REPL}/ReadBodies`, byName("caller"));
    } finally {
      t.close();
    }
  });

  it("a call without a caller span starts a new trace on the server (no context leaks in)", async () => {
    const client = createGrpcJsPeerClient(address(), { tls, idleTimeoutMs: 5000 });
    try {
      await client.hello({ nodeId: "tr-client" }, AbortSignal.timeout(10_000));
      const helloClient = spans().find((s) => s.name === `${REPL}/Hello` && s.kind === 2)!;
      expect(helloClient.parentSpanContext).toBeUndefined();
    } finally {
      client.close();
    }
  });
});

describe("logs inside a span", () => {
  it("carry the span's trace_id and span_id; lines outside any span carry none", () => {
    const out: string[] = [];
    const sink = new PassThrough();
    sink.on("data", (d: Buffer) => out.push(...d.toString().split("\n").filter(Boolean)));
    const log = createLogger({ destination: sink });
    const { span, ctx } = startSpan("with-logs", { parent: null });
    context.with(ctx, () => log.info({ event: "inside" }, "inside"));
    span.end();
    log.info({ event: "outside" }, "outside");
    const [inside, outside] = out.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(inside!["trace_id"]).toBe(span.spanContext().traceId);
    expect(inside!["span_id"]).toBe(span.spanContext().spanId);
    expect(outside!["trace_id"]).toBeUndefined();
  });
});

describe("when tracing is on", () => {
  it("follows the OTLP endpoint convention, --tracing, and the off switches", () => {
    expect(tracingDecision({ env: {} }).enabled).toBe(false);
    expect(tracingDecision({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: "http://jaeger:4318" } }).enabled).toBe(true);
    expect(tracingDecision({ env: { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://jaeger:4318/v1/traces" } }).enabled).toBe(true);
    expect(tracingDecision({ env: {}, force: true }).enabled).toBe(true);
    expect(tracingDecision({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: "http://x:4318", OTEL_SDK_DISABLED: "true" } }).enabled).toBe(false);
    expect(tracingDecision({ env: { OTEL_TRACES_EXPORTER: "none" }, force: true }).enabled).toBe(false);
    expect(tracingDecision({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: "  " } }).reason).toBe("no OTLP endpoint configured");
  });
});
