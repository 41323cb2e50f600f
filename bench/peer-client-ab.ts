/**
 * A/B of the two peer-client stacks against the SAME product server: a real granary node
 * (child process, mTLS peer listener) serving ReadBodies from its store; this process reads
 * the same bodies with (A) the grpc-js PeerClient the node uses and (B) a connect-node client
 * on the tuned HTTP/2 session manager. 16 concurrent streams on one connection, interleaved
 * rounds, client CPU per MiB from process.cpuUsage(). Bytes are drained, not stored, so the
 * figure is the receive path of each stack.
 *
 *   npx tsc -p tsconfig.bench.json && node dist-bench/bench/peer-client-ab.js [--mib-per-body 32] [--rounds 5]
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { Kind } from "../src/gen/granary/artifact/v1/artifact_pb.js";
import { ReplicationService } from "../src/gen/granary/replication/v1/replication_pb.js";
import { initCa, issueCert } from "../src/certs/dev-pki.js";
import { createGrpcJsPeerClient } from "../src/transport/peer-client-grpcjs.js";
import { createPeerConnectTransport } from "../src/transport/peer-transport.js";
import { connectPublic } from "../src/transport/public-client.js";
import { ArtifactService, PutRequestSchema } from "../src/gen/granary/artifact/v1/artifact_pb.js";
import { create } from "@bufbuild/protobuf";
import { createHash } from "node:crypto";

const { values } = parseArgs({ options: { "mib-per-body": { type: "string", default: "32" }, rounds: { type: "string", default: "5" }, bodies: { type: "string", default: "16" } } });
const MIB = 1 << 20;
const perBody = Number(values["mib-per-body"]) * MIB;
const rounds = Number(values.rounds);
const nBodies = Number(values.bodies);

function body(seed: number): Uint8Array {
  const b = new Uint8Array(perBody);
  let x = seed || 1;
  const w = new Uint32Array(b.buffer);
  for (let i = 0; i < w.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    w[i] = x >>> 0;
  }
  return b;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "granary-ab-"));
  const main = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
  try {
    const pki = join(dir, "pki");
    const ca = await initCa({ dir: pki });
    const src = await issueCert({ dir: pki, name: "ab-src" });
    const me = await issueCert({ dir: pki, name: "ab-client" });
    const node = spawn(
      process.execPath,
      [main, "serve", "--data-dir", join(dir, "src"), "--listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0", "--ops-listen", "off",
        "--tls-ca", ca.certFile, "--tls-cert", src.certFile, "--tls-key", src.keyFile],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    process.once("exit", () => node.kill("SIGKILL"));
    const listening = await new Promise<Record<string, string>>((resolve, reject) => {
      createInterface({ input: node.stdout! }).on("line", (l) => {
        try {
          const e = JSON.parse(l) as Record<string, string>;
          if (e["event"] === "listening") resolve(e);
        } catch {
          // not JSON
        }
      });
      node.once("exit", (c) => reject(new Error(`node exited ${c}`)));
    });
    const conn = connectPublic({ server: listening["publicAddress"]! });
    const digests: string[] = [];
    for (let i = 0; i < nBodies; i++) {
      const b = body(i + 1);
      const digest = createHash("sha256").update(b).digest("hex");
      async function* reqs() {
        yield create(PutRequestSchema, { msg: { case: "header", value: { namespace: "ab", kind: Kind.CAS, key: digest, size: BigInt(b.length) } } });
        for (let o = 0; o < b.length; o += MIB) yield create(PutRequestSchema, { msg: { case: "chunk", value: b.subarray(o, o + MIB) } });
      }
      await conn.client(ArtifactService).put(reqs());
      digests.push(digest);
    }
    conn.close();
    const tls = { ca: readFileSync(ca.certFile), cert: readFileSync(me.certFile), key: readFileSync(me.keyFile) };
    const peer = listening["peerAddress"]!;
    const req = (d: string) => ({ bodies: [{ ref: { namespace: "ab", kind: Kind.CAS, key: d }, digest: d, offset: 0n }] });

    const grpcjs = createGrpcJsPeerClient(peer, { tls, idleTimeoutMs: 30_000 });
    const ct = createPeerConnectTransport({ baseUrl: peer, tls });
    const connectClient = createClient(ReplicationService, ct.transport);
    await grpcjs.hello({ nodeId: "ab-client" }, AbortSignal.timeout(10_000));
    await connectClient.hello({ nodeId: "ab-client" });

    type Run = { mbps: number; cpuMsPerMiB: number };
    const drain = async (it: AsyncIterable<{ frame: { case: string | undefined; value?: unknown } }>): Promise<number> => {
      let n = 0;
      for await (const f of it) if (f.frame.case === "chunk") n += (f.frame.value as Uint8Array).length;
      return n;
    };
    const measure = async (read: (d: string) => AsyncIterable<{ frame: { case: string | undefined; value?: unknown } }>): Promise<Run> => {
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      const total = (await Promise.all(digests.map((d) => drain(read(d))))).reduce((a, b) => a + b, 0);
      const secs = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      if (total !== nBodies * perBody) throw new Error(`read ${total} bytes, expected ${nBodies * perBody}`);
      return { mbps: total / 1e6 / secs, cpuMsPerMiB: (cpu.user + cpu.system) / 1000 / (total / MIB) };
    };
    const a: Run[] = [];
    const b: Run[] = [];
    await measure((d) => grpcjs.readBodies(req(d), AbortSignal.timeout(600_000))); // warm-up
    await measure((d) => connectClient.readBodies(req(d)));
    for (let r = 0; r < rounds; r++) {
      a.push(await measure((d) => grpcjs.readBodies(req(d), AbortSignal.timeout(600_000))));
      b.push(await measure((d) => connectClient.readBodies(req(d))));
    }
    const med = (xs: number[]): number => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)]!;
    const row = (name: string, xs: Run[]): string =>
      `| ${name} | ${med(xs.map((x) => x.mbps)).toFixed(0)} (${Math.min(...xs.map((x) => x.mbps)).toFixed(0)}–${Math.max(...xs.map((x) => x.mbps)).toFixed(0)}) | ${med(xs.map((x) => x.cpuMsPerMiB)).toFixed(2)} (${Math.min(...xs.map((x) => x.cpuMsPerMiB)).toFixed(2)}–${Math.max(...xs.map((x) => x.cpuMsPerMiB)).toFixed(2)}) |`;
    process.stdout.write(
      `peer-client A/B: ${nBodies} bodies x ${perBody / MIB} MiB, ${nBodies} concurrent ReadBodies streams on one connection, ${rounds} interleaved rounds, loopback mTLS, product server (child process)\n\n` +
        `| client | MB/s median (min–max) | client CPU ms/MiB median (min–max) |\n|---|---|---|\n${row("grpc-js (32 MiB window)", a)}\n${row("connect-node (16 MiB stream / 256 MiB conn window, 1 MiB frames)", b)}\n`,
    );
    grpcjs.close();
    ct.close();
    node.kill("SIGTERM");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
