/**
 * Reference measurements (no product code on the measured path): the disk's append+fdatasync
 * rates, the bare node:http2 ceiling on loopback, and the bare grpc-js transport over mTLS.
 * Each gives the figure a product measurement is divided by.
 */
import { closeSync, fdatasyncSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import * as http2 from "node:http2";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import * as grpc from "@grpc/grpc-js";
import { peerChannelCredentials, peerChannelOptions, resolvePeerChannelOptions } from "../../src/transport/peer-channel.js";
import { mbPerSecond, peakRssMib, perSecond, pool } from "../lib/common.js";
import { keystream } from "../lib/data.js";
import { cpuSecondsOf, cpuSecondsSince, startServerChild } from "../lib/proc.js";
import { BARE_FETCH_PATH, encodeSizes, H2_BIG_CONNECTION_WINDOW, H2_BIG_SETTINGS, identity } from "../lib/refs.js";
import { percentile } from "../lib/stats.js";
import type { TaskContext } from "./task-context.js";

export interface DiskSeqInput {
  readonly dir: string;
  readonly totalBytes: number;
  readonly appendBytes: number;
  readonly syncEveryBytes: number;
}

/** Appends totalBytes in appendBytes writes, fdatasync every syncEveryBytes and at the end (all timed). */
export function diskSeq(input: DiskSeqInput, ctx: TaskContext): Record<string, number> {
  const file = join(input.dir, `disk-seq-${process.pid}.bin`);
  const buf = keystream(3, "disk-seq", input.appendBytes);
  const fd = openSync(file, "a");
  const syncMs: number[] = [];
  try {
    const t0 = performance.now();
    let sinceSync = 0;
    for (let written = 0; written < input.totalBytes; ) {
      if (ctx.signal.aborted) throw new Error("disk-seq: out of time");
      const n = Math.min(buf.length, input.totalBytes - written);
      writeSync(fd, buf, 0, n);
      written += n;
      sinceSync += n;
      if (sinceSync >= input.syncEveryBytes) {
        const s = performance.now();
        fdatasyncSync(fd);
        syncMs.push(performance.now() - s);
        sinceSync = 0;
      }
    }
    if (sinceSync > 0) fdatasyncSync(fd);
    const ms = performance.now() - t0;
    return { mbPerSecond: mbPerSecond(input.totalBytes, ms), seconds: ms / 1000, bytes: input.totalBytes, fsyncP50Ms: percentile(syncMs, 50) };
  } finally {
    closeSync(fd);
    rmSync(file, { force: true });
  }
}

export interface DiskSmallInput {
  readonly dir: string;
  readonly opBytes: number;
  readonly maxOps: number;
  readonly maxMs: number;
}

/** One writer: append opBytes, fdatasync, repeat; bounded by maxOps and maxMs. */
export function diskSmall(input: DiskSmallInput, ctx: TaskContext): Record<string, number> {
  const file = join(input.dir, `disk-small-${process.pid}.bin`);
  const buf = keystream(4, "disk-small", input.opBytes);
  const fd = openSync(file, "a");
  const lat: number[] = [];
  try {
    const t0 = performance.now();
    let ops = 0;
    while (ops < input.maxOps && performance.now() - t0 < input.maxMs && !ctx.signal.aborted) {
      const s = performance.now();
      writeSync(fd, buf);
      fdatasyncSync(fd);
      lat.push(performance.now() - s);
      ops++;
    }
    const ms = performance.now() - t0;
    return { opsPerSecond: perSecond(ops, ms), ops, seconds: ms / 1000, opP50Ms: percentile(lat, 50), opP99Ms: percentile(lat, 99) };
  } finally {
    closeSync(fd);
    rmSync(file, { force: true });
  }
}

function h2Get(session: http2.ClientHttp2Session, n: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ":path": `/bytes/${n}` });
    let got = 0;
    req.on("data", (d: Buffer) => (got += d.length));
    req.on("end", () => (got === n ? resolve(got) : reject(new Error(`h2: got ${got} of ${n} bytes`))));
    req.on("error", reject);
    req.end();
  });
}

async function h2Session(port: number): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(`http://127.0.0.1:${port}`, { settings: H2_BIG_SETTINGS, maxSessionMemory: 1024 });
  await new Promise<void>((resolve, reject) => {
    session.once("connect", () => resolve());
    session.once("error", reject);
  });
  session.setLocalWindowSize(H2_BIG_CONNECTION_WINDOW);
  await h2Get(session, 1);
  return session;
}

export interface H2BulkInput {
  readonly totalBytes: number;
  readonly streams: number;
}

/** The node:http2 ceiling: totalBytes server -> client, split over `streams` concurrent streams. */
export async function h2Bulk(input: H2BulkInput, ctx: TaskContext): Promise<Record<string, number>> {
  const server = await startServerChild("h2-server", {}, ctx.signal);
  const session = await h2Session(server.port);
  try {
    const per = Math.floor(input.totalBytes / input.streams);
    const sizes = Array.from({ length: input.streams }, (_, i) => (i === input.streams - 1 ? input.totalBytes - per * (input.streams - 1) : per));
    const cpu0 = process.cpuUsage();
    const srv0 = cpuSecondsOf(server.pid);
    const t0 = performance.now();
    await pool(sizes.length, input.streams, async (i) => void (await h2Get(session, sizes[i]!)), ctx.signal);
    const ms = performance.now() - t0;
    const gb = input.totalBytes / 1e9;
    return {
      mbPerSecond: mbPerSecond(input.totalBytes, ms),
      seconds: ms / 1000,
      clientCpuSecondsPerGb: cpuSecondsSince(cpu0) / gb,
      serverCpuSecondsPerGb: (cpuSecondsOf(server.pid) - srv0) / gb,
    };
  } finally {
    session.close();
    await server.stop();
  }
}

export interface H2SmallInput {
  readonly count: number;
  readonly bytes: number;
  readonly concurrency: number;
}

/** Per-stream ceiling of node:http2: `count` GETs of `bytes` each, `concurrency` in flight on one connection. */
export async function h2Small(input: H2SmallInput, ctx: TaskContext): Promise<Record<string, number>> {
  const server = await startServerChild("h2-server", {}, ctx.signal);
  const session = await h2Session(server.port);
  try {
    const t0 = performance.now();
    await pool(input.count, input.concurrency, async () => void (await h2Get(session, input.bytes)), ctx.signal);
    const ms = performance.now() - t0;
    return { streamsPerSecond: perSecond(input.count, ms), seconds: ms / 1000 };
  } finally {
    session.close();
    await server.stop();
  }
}

export interface BareGrpcInput {
  readonly ca: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
  /** One call per group; each group's sizes are streamed back to back. */
  readonly groups: ReadonlyArray<readonly number[]>;
  readonly streams: number;
}

/**
 * The bare transport of bootstrap: grpc-js over mTLS with the product's peer channel options
 * (window, message limits) and raw-Buffer messages, no protobuf, no store. Receiver = this
 * process; its CPU is measured around the transfer.
 */
export async function bareGrpc(input: BareGrpcInput, ctx: TaskContext): Promise<Record<string, number>> {
  const server = await startServerChild("grpc-server", { ca: input.ca, cert: input.serverCert, key: input.serverKey }, ctx.signal);
  const tls = { ca: readFileSync(input.ca), cert: readFileSync(input.clientCert), key: readFileSync(input.clientKey) };
  const options = resolvePeerChannelOptions({});
  const client = new grpc.Client(`127.0.0.1:${server.port}`, peerChannelCredentials(tls), peerChannelOptions(options));
  const fetch = (sizes: readonly number[]): Promise<{ bytes: number; messages: number }> =>
    new Promise((resolve, reject) => {
      const call = client.makeServerStreamRequest<Buffer, Buffer>(BARE_FETCH_PATH, identity, identity, encodeSizes(sizes));
      let bytes = 0;
      let messages = 0;
      call.on("data", (b: Buffer) => {
        bytes += b.length;
        messages++;
      });
      const onAbort = (): void => call.cancel();
      ctx.signal.addEventListener("abort", onAbort, { once: true });
      call.on("end", () => {
        ctx.signal.removeEventListener("abort", onAbort);
        resolve({ bytes, messages });
      });
      call.on("error", (e) => {
        ctx.signal.removeEventListener("abort", onAbort);
        reject(e);
      });
    });
  try {
    await new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + 10_000, (e) => (e ? reject(e) : resolve())));
    await fetch([1]);
    const want = input.groups.reduce((n, g) => n + g.reduce((m, s) => m + s, 0), 0);
    const bodies = input.groups.reduce((n, g) => n + g.length, 0);
    let got = 0;
    const cpu0 = process.cpuUsage();
    const srv0 = cpuSecondsOf(server.pid);
    const t0 = performance.now();
    await pool(
      input.groups.length,
      input.streams,
      async (i) => {
        const r = await fetch(input.groups[i]!);
        got += r.bytes;
      },
      ctx.signal,
    );
    const ms = performance.now() - t0;
    if (got !== want) throw new Error(`bare transport moved ${got} of ${want} bytes`);
    const gb = want / 1e9;
    return {
      mbPerSecond: mbPerSecond(want, ms),
      bodiesPerSecond: perSecond(bodies, ms),
      seconds: ms / 1000,
      receiverCpuSeconds: cpuSecondsSince(cpu0),
      receiverCpuSecondsPerGb: cpuSecondsSince(cpu0) / gb,
      senderCpuSecondsPerGb: (cpuSecondsOf(server.pid) - srv0) / gb,
      receiverPeakRssMib: peakRssMib(),
    };
  } finally {
    client.close();
    await server.stop();
  }
}
