/**
 * Traces across peers, end to end: two real nodes as child processes (`granary serve`, the
 * CLI entry point that starts the OpenTelemetry SDK) export over OTLP/HTTP protobuf into a
 * receiver inside this test. A fresh node bootstraps from the other; the bootstrap pass on the
 * fresh node and the spans serving it on its peer must be ONE trace, with the fresh node's
 * client span the parent of the peer's server span (W3C traceparent in gRPC metadata).
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NodeService } from "../../src/gen/granary/node/v1/node_pb.js";
import { connectPublic } from "../../src/transport/public-client.js";
import { ATTR, RESOURCE_ATTR, SPAN } from "../../src/telemetry/names.js";
import { startChildNode, type ChildNode } from "../helpers/child-node.js";
import { bytes } from "../helpers/data.js";
import { makePki, putCas, type Pki } from "../helpers/mesh.js";
import { tempDir } from "../helpers/temp.js";
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from "./otlp-receiver.js";

const REPL = "granary.replication.v1.ReplicationService";
const SERVER = 2;
const CLIENT = 3;

let root: string;
let cleanup: () => Promise<void>;
let pki: Pki;
let receiver: OtlpReceiver;
const children: ChildNode[] = [];

beforeAll(async () => {
  const t = await tempDir("granary-otlp-");
  root = t.path;
  cleanup = t.cleanup;
  pki = await makePki(join(root, "pki"));
  receiver = await startOtlpReceiver();
});

afterAll(async () => {
  await Promise.all(children.splice(0).map((c) => c.kill("SIGKILL")));
  await receiver?.close();
  await cleanup?.();
});

async function serve(name: string, peers: string[]): Promise<ChildNode> {
  const c = await pki.cert(name);
  const child = await startChildNode(
    [
      "--data-dir", join(root, name),
      "--node-id", name,
      "--listen", "127.0.0.1:0",
      "--peer-listen", "127.0.0.1:0",
      "--ops-listen", "127.0.0.1:0",
      "--tls-ca", pki.ca,
      "--tls-cert", c.cert,
      "--tls-key", c.key,
      "--shutdown-grace-ms", "2000",
      ...(peers.length > 0 ? ["--peers", peers.join(",")] : []),
    ],
    {
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_BSP_SCHEDULE_DELAY: "50",
      OTEL_SERVICE_NAME: "",
      OTEL_TRACES_SAMPLER: "parentbased_always_on",
      OTEL_SDK_DISABLED: "",
      OTEL_TRACES_EXPORTER: "",
    },
  );
  children.push(child);
  return child;
}

function one(spans: readonly ReceivedSpan[], what: string, pred: (s: ReceivedSpan) => boolean): ReceivedSpan {
  const found = spans.filter(pred);
  if (found.length !== 1) throw new Error(`expected exactly one ${what}, found ${found.length}: ${spans.map((s) => s.name).join(", ")}`);
  return found[0]!;
}

describe("OpenTelemetry traces over OTLP from two real nodes", () => {
  it("a fresh node's bootstrap pass and its peer's serving spans are one trace", async () => {
    const a = await serve("trace-a", []);
    const la = await a.event((e) => e["event"] === "listening", "listening");
    const tracingLine = await a.event((e) => e["event"] === "tracing", "tracing decision");
    expect(tracingLine["enabled"]).toBe(true);
    await a.waitReady();
    const conn = connectPublic({ server: `http://${a.publicAddress}` });
    const large = bytes(11, 2 << 20);
    const digests: string[] = [];
    try {
      digests.push(await putCas(conn, "otlp", large));
      for (let i = 0; i < 5; i++) digests.push(await putCas(conn, "otlp", bytes(20 + i, 5_000)));
    } finally {
      conn.close();
    }

    const b = await serve("trace-b", [a.peerAddress!]);
    const lb = await b.event((e) => e["event"] === "listening", "listening");
    await b.event((e) => e["event"] === "replication.pass_done", "bootstrap pass done");
    await b.waitReady();
    // A live write on A reaches B through its Follow stream: a follow page of its own trace.
    const conn2 = connectPublic({ server: `http://${a.publicAddress}` });
    const connB = connectPublic({ server: `http://${b.publicAddress}` });
    try {
      digests.push(await putCas(conn2, "otlp", bytes(99, 7_000)));
      // B's status stream (server-paced) until its feed holds the 7th change.
      for await (const res of connB.client(NodeService).watchStatus({ intervalMs: 100 }, { signal: AbortSignal.timeout(60_000) })) {
        if ((res.status?.feedHead ?? 0n) >= 7n) break;
      }
    } finally {
      conn2.close();
      connB.close();
    }
    // SIGTERM drains and flushes the exporter before the process exits.
    expect(await b.kill("SIGTERM")).toBe(0);
    expect(await a.kill("SIGTERM")).toBe(0);

    expect(receiver.rejected).toEqual([]);
    const spans = receiver.spans;
    const onA = spans.filter((s) => s.resource[RESOURCE_ATTR.nodeId] === "trace-a");
    const onB = spans.filter((s) => s.resource[RESOURCE_ATTR.nodeId] === "trace-b");
    expect(onA.length).toBeGreaterThan(0);
    expect(onB.length).toBeGreaterThan(0);
    // Resource: service name (default), node id and incarnation on every span.
    for (const s of spans) {
      expect(s.resource[RESOURCE_ATTR.serviceName]).toBe("granary");
      expect(s.scope).toBe("granary");
    }
    expect(onA[0]!.resource[RESOURCE_ATTR.incarnation]).toBe(la["incarnation"]);
    expect(onB[0]!.resource[RESOURCE_ATTR.incarnation]).toBe(lb["incarnation"]);

    // The pass on B: a root span, clean.
    const pass = one(onB, "bootstrap pass", (s) => s.name === SPAN.bootstrapPass);
    expect(pass.parentSpanId).toBe("");
    expect(pass.attributes[ATTR.peerAddress]).toBe(a.peerAddress);
    expect(pass.attributes[ATTR.peerNodeId]).toBe("trace-a");
    expect(pass.attributes[ATTR.outcome]).toBe("clean");
    expect(pass.attributes[ATTR.applied]).toBe(6);
    expect(pass.statusCode).toBe(0);
    const trace = spans.filter((s) => s.traceId === pass.traceId);
    const byId = new Map(trace.map((s) => [s.spanId, s]));

    // ListManifests: B's client span under the pass, A's server span under that.
    const listClient = one(trace, "ListManifests client span", (s) => s.name === `${REPL}/ListManifests` && s.kind === CLIENT);
    expect(listClient.parentSpanId).toBe(pass.spanId);
    expect(listClient.resource[RESOURCE_ATTR.nodeId]).toBe("trace-b");
    const listServer = one(trace, "ListManifests server span", (s) => s.name === `${REPL}/ListManifests` && s.kind === SERVER);
    expect(listServer.resource[RESOURCE_ATTR.nodeId]).toBe("trace-a");
    expect(listServer.parentSpanId).toBe(listClient.spanId);
    expect(listServer.attributes[ATTR.callerNode]).toBe("trace-b");
    expect(listServer.attributes[ATTR.rpcGrpcStatusCode]).toBe(0);

    // Manifest page -> body fetch -> ReadBodies client (B) -> ReadBodies server (A).
    const page = one(trace, "manifest page", (s) => s.name === SPAN.manifestPage);
    expect(page.parentSpanId).toBe(pass.spanId);
    expect(page.attributes[ATTR.items]).toBe(6);
    const fetches = trace.filter((s) => s.name === SPAN.bodyFetch);
    expect(fetches.length).toBe(2); // the 2 MiB body alone, the five small ones batched
    for (const f of fetches) {
      expect(f.parentSpanId).toBe(page.spanId);
      expect(f.attributes[ATTR.peerAddress]).toBe(a.peerAddress);
      expect(f.attributes[ATTR.outcome]).toBe("ok");
      expect(f.events).toContain("staging reserved");
    }
    const largeFetch = one(fetches, "large body fetch", (s) => s.attributes[ATTR.bodies] === 1);
    expect(largeFetch.attributes[ATTR.bytes]).toBe(large.length);
    expect(largeFetch.attributes[ATTR.applied]).toBe(1);
    const batch = one(fetches, "batch fetch", (s) => s.attributes[ATTR.bodies] === 5);
    expect(batch.attributes[ATTR.applied]).toBe(5);
    for (const f of fetches) {
      const client = one(trace, "ReadBodies client span", (s) => s.name === `${REPL}/ReadBodies` && s.kind === CLIENT && s.parentSpanId === f.spanId);
      expect(client.resource[RESOURCE_ATTR.nodeId]).toBe("trace-b");
      const server = one(trace, "ReadBodies server span", (s) => s.name === `${REPL}/ReadBodies` && s.kind === SERVER && s.parentSpanId === client.spanId);
      expect(server.resource[RESOURCE_ATTR.nodeId]).toBe("trace-a");
      expect(server.traceId).toBe(pass.traceId);
      expect(server.attributes[ATTR.callerNode]).toBe("trace-b");
      expect(server.attributes[ATTR.rpcGrpcStatusCode]).toBe(0);
    }
    // The large body's store commit on B, inside its fetch.
    const apply = one(trace, "store.apply", (s) => s.name === SPAN.storeApply);
    expect(apply.parentSpanId).toBe(largeFetch.spanId);
    expect(apply.attributes[ATTR.key]).toBe(digests[0]);
    expect(apply.attributes[ATTR.outcome]).toBe("applied");
    // Every span of the trace hangs off the pass (no orphan from a lost context).
    for (const s of trace) {
      let cur: ReceivedSpan | undefined = s;
      for (let depth = 0; cur && cur.parentSpanId !== "" && depth < 10; depth++) cur = byId.get(cur.parentSpanId);
      expect(cur?.spanId, `${s.name} reaches the pass`).toBe(pass.spanId);
    }

    // Public RPCs on A: Put server spans with the store commit as a child.
    const puts = onA.filter((s) => s.name === "granary.artifact.v1.ArtifactService/Put" && s.kind === SERVER);
    expect(puts).toHaveLength(7);
    const storePuts = onA.filter((s) => s.name === SPAN.storePut);
    expect(storePuts).toHaveLength(7);
    for (const sp of storePuts) expect(puts.map((p) => p.spanId)).toContain(sp.parentSpanId);
    expect(storePuts.map((s) => s.attributes[ATTR.key]).sort()).toEqual([...digests].sort());

    // The follow session B ran after the pass (ended by the shutdown) is a root of its own,
    // and so is each page it applied, linked to the session.
    const session = one(onB, "follow session", (s) => s.name === SPAN.followSession);
    expect(session.parentSpanId).toBe("");
    expect(session.attributes[ATTR.peerNodeId]).toBe("trace-a");
    const followClient = one(onB, "Follow client span", (s) => s.name === `${REPL}/Follow` && s.kind === CLIENT);
    expect(followClient.parentSpanId).toBe(session.spanId);
    const followServer = one(onA, "Follow server span", (s) => s.name === `${REPL}/Follow` && s.kind === SERVER && s.traceId === session.traceId);
    expect(followServer.parentSpanId).toBe(followClient.spanId);
    const followPage = one(onB, "follow page", (s) => s.name === SPAN.followPage && s.attributes[ATTR.applied] === 1);
    expect(followPage.parentSpanId).toBe("");
    expect(followPage.links).toEqual([{ traceId: session.traceId, spanId: session.spanId }]);
    const pageTrace = spans.filter((s) => s.traceId === followPage.traceId);
    const pageFetch = one(pageTrace, "follow page body fetch", (s) => s.name === SPAN.bodyFetch);
    expect(pageFetch.parentSpanId).toBe(followPage.spanId);
    const pageClient = one(pageTrace, "follow ReadBodies client", (s) => s.name === `${REPL}/ReadBodies` && s.kind === CLIENT);
    expect(pageClient.parentSpanId).toBe(pageFetch.spanId);
    const pageServer = one(pageTrace, "follow ReadBodies server", (s) => s.name === `${REPL}/ReadBodies` && s.kind === SERVER);
    expect(pageServer.parentSpanId).toBe(pageClient.spanId);
    expect(pageServer.resource[RESOURCE_ATTR.nodeId]).toBe("trace-a");
  });
});
