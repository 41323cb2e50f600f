/**
 * Shared fixtures of the transport tests: a real PKI in a temp dir (made by src/certs), a stub
 * ReplicationService that counts handler calls and serves a knob-driven stream, and small
 * promise helpers. Synchronisation is by events and promises only, never sleeps.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { caFiles, initCa, issueCert } from "../../src/certs/dev-pki.js";
import { createHostileCert, type HostileCertKind } from "../../src/certs/hostile-certs.js";
import {
  HelloResponseSchema,
  ReadBodiesResponseSchema,
  type HelloRequest,
  type HelloResponse,
  type ReadBodiesRequest,
  type ReadBodiesResponse,
  ReplicationService,
} from "../../src/gen/granary/replication/v1/replication_pb.js";
import { kPeerIdentity, resetStream } from "../../src/transport/connect-handler.js";
import { withSendDeadline, type SendStallError } from "../../src/transport/deadlines.js";
import type { GrpcJsClient } from "../../src/transport/grpc-js-adapter.js";
import type { PeerTlsPem } from "../../src/transport/peer-channel.js";

export interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
  reject(e: unknown): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

export interface CertPair {
  certFile: string;
  keyFile: string;
}

export interface Pki {
  dir: string;
  caFile: string;
  /** A node certificate issued by this PKI's CA (cached per name). */
  node(name: string): Promise<CertPair>;
  hostile(kind: HostileCertKind): Promise<CertPair>;
  /** PEM material for a client or server: this CA plus the given pair. */
  pem(pair: CertPair): Promise<PeerTlsPem>;
}

export async function makePki(dir: string): Promise<Pki> {
  await initCa({ dir });
  const nodes = new Map<string, Promise<CertPair>>();
  const hostiles = new Map<string, Promise<CertPair>>();
  const caFile = caFiles(dir).certFile;
  return {
    dir,
    caFile,
    node: (name) => {
      let p = nodes.get(name);
      if (p === undefined) {
        p = issueCert({ dir, name });
        nodes.set(name, p);
      }
      return p;
    },
    hostile: (kind) => {
      let p = hostiles.get(kind);
      if (p === undefined) {
        p = createHostileCert({ caDir: dir, outDir: join(dir, "hostile"), kind });
        hostiles.set(kind, p);
      }
      return p;
    },
    pem: async (pair) => ({ ca: await readFile(caFile), cert: await readFile(pair.certFile), key: await readFile(pair.keyFile) }),
  };
}

/** Knobs of the stub's ReadBodies stream, carried as JSON in bodies[0].digest. */
export interface StreamKnobs {
  /** Messages to send. */
  count: number;
  /** Bytes per chunk message. */
  chunkBytes: number;
  /** Pause between messages, ms (the slow-stream scenario, not synchronisation). */
  intervalMs?: number;
  /** After this many messages, send nothing more until the call is cancelled. */
  stallAfter?: number;
  /** Hold every message until `barrier` calls are open at once. */
  barrier?: number;
  /** Wrap the stream in withSendDeadline with this deadline, ms. */
  sendDeadlineMs?: number;
  /** Hold after the first message until the stub's `gate` is opened. */
  gated?: boolean;
}

export function knobs(k: StreamKnobs): { bodies: { digest: string }[] } {
  return { bodies: [{ digest: JSON.stringify(k) }] };
}

/** A ReplicationService with Hello and ReadBodies only, counting every handler call. */
export class StubReplication {
  helloCalls = 0;
  streamCalls = 0;
  active = 0;
  readonly stalls: SendStallError[] = [];
  /** Resolves on the first send stall. */
  readonly stalled = deferred<SendStallError>();
  /** Resolves when a stalled (stallAfter) call's signal is aborted by the client going away. */
  readonly stallCancelled = deferred();
  /** Opened by tests to release `gated` streams. */
  readonly gate = deferred();
  /** Resolves when a `gated` stream has sent its first message. */
  readonly gatedStarted = deferred();
  private barrierWaiters: (() => void)[] = [];

  readonly routes = (router: ConnectRouter): void => {
    router.service(ReplicationService, {
      hello: (req: HelloRequest, ctx: HandlerContext): HelloResponse => {
        this.helloCalls++;
        const id = ctx.values.get(kPeerIdentity);
        return create(HelloResponseSchema, { nodeId: id?.nodeName ?? "anonymous", incarnation: req.incarnation });
      },
      readBodies: (req: ReadBodiesRequest, ctx: HandlerContext): AsyncIterable<ReadBodiesResponse> => {
        this.streamCalls++;
        const k = JSON.parse(req.bodies[0]?.digest ?? "{}") as StreamKnobs;
        const src = this.stream(k, ctx);
        if (k.sendDeadlineMs === undefined) return src;
        return withSendDeadline(src, k.sendDeadlineMs, (err) => {
          this.stalls.push(err);
          this.stalled.resolve(err);
          resetStream(ctx.values);
        });
      },
    });
  };

  private async *stream(k: StreamKnobs, ctx: HandlerContext): AsyncGenerator<ReadBodiesResponse> {
    this.active++;
    try {
      if (k.barrier !== undefined) await this.barrier(k.barrier);
      const chunk = new Uint8Array(k.chunkBytes).fill(7);
      for (let i = 0; i < k.count; i++) {
        if (k.stallAfter !== undefined && i === k.stallAfter) {
          await new Promise<void>((resolve) => {
            if (ctx.signal.aborted) resolve();
            else ctx.signal.addEventListener("abort", () => resolve(), { once: true });
          });
          this.stallCancelled.resolve();
          return;
        }
        if (i > 0 && k.intervalMs !== undefined) await new Promise((r) => setTimeout(r, k.intervalMs));
        if (i === 1 && k.gated === true) {
          this.gatedStarted.resolve();
          await this.gate.promise;
        }
        yield create(ReadBodiesResponseSchema, { frame: { case: "chunk", value: chunk } });
      }
    } finally {
      this.active--;
    }
  }

  private async barrier(n: number): Promise<void> {
    if (this.active >= n) {
      for (const w of this.barrierWaiters.splice(0)) w();
      return;
    }
    await new Promise<void>((resolve) => this.barrierWaiters.push(resolve));
  }
}

/** Calls Hello through a grpc-js client. */
export function grpcHello(client: GrpcJsClient<typeof ReplicationService>, incarnation = "i1", deadlineMs = 20_000): Promise<HelloResponse> {
  return new Promise((resolve, reject) => {
    client.hello({ nodeId: "caller", incarnation }, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) => {
      if (err !== null || res === undefined) reject(err ?? new Error("no response"));
      else resolve(res);
    });
  });
}

/** Collects every message of an async iterable. */
export async function drain<T>(src: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const m of src) out.push(m);
  return out;
}
