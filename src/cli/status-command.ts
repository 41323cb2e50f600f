/**
 * `granary status [--watch] [--json]`: a node's readiness, store and per-peer replication
 * state. --watch streams updates (WatchStatus) and draws a progress bar per peer (cli-progress)
 * when attached to a terminal; otherwise it prints a line per update.
 */
import cliProgress from "cli-progress";
import { toJson } from "@bufbuild/protobuf";
import { NodeService, NodeStatusSchema, PeerPhase, type NodeStatus, type PeerStatus } from "../gen/granary/node/v1/node_pb.js";
import { connectPublic } from "../transport/public-client.js";
import { formatBytes } from "../util/bytes.js";
import { helpText, parseCommand, type OptionSpec } from "./options.js";

const OPTIONS: OptionSpec[] = [
  { name: "server", kind: "string", default: "http://127.0.0.1:7070", help: "node's public address" },
  { name: "ca", kind: "string", help: "CA file to verify an https server" },
  { name: "watch", kind: "boolean", help: "keep updating", noEnv: true },
  { name: "interval-ms", kind: "int", default: "1000", help: "update interval with --watch", noEnv: true },
  { name: "json", kind: "boolean", help: "print JSON (one object per update with --watch)" },
  { name: "help", kind: "boolean", short: "h", help: "show this help", noEnv: true },
];

function phaseName(p: PeerPhase): string {
  return (PeerPhase[p] ?? "UNSPECIFIED").replace(/^PEER_PHASE_/, "").toLowerCase();
}

function duration(s: number): string {
  if (!(s > 0) || !Number.isFinite(s)) return "-";
  if (s < 60) return `${s.toFixed(0)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${Math.round(s % 60)}s`;
  return `${Math.floor(s / 3600)}h${Math.round((s % 3600) / 60)}m`;
}

export function peerLine(p: PeerStatus): string {
  const parts = [
    `${p.nodeId || "?"} ${p.address}`,
    phaseName(p.phase) + (p.stalled ? " (stalled)" : ""),
    `cursor ${p.cursorSeq}/${p.headSeq}`,
    `lag ${p.lagChanges} changes, ${p.lagSeconds.toFixed(1)}s`,
    `fetched ${formatBytes(Number(p.bytesFetched))} in ${p.artifactsFetched} artifacts`,
    `${formatBytes(p.rateBytesPerSecond)}/s`,
  ];
  if (p.phase === PeerPhase.BOOTSTRAPPING) parts.push(`ETA ${duration(p.etaSeconds)}`);
  if (p.failedCount > 0n) parts.push(`failed ${p.failedCount}`);
  if (p.lastError) parts.push(`last error: ${p.lastError}`);
  return parts.join(" | ");
}

export function statusText(s: NodeStatus): string {
  const u = s.store;
  const lines = [
    `node ${s.nodeId} (incarnation ${s.incarnation}) ${s.ready ? "READY" : "NOT READY"}: ${s.readinessReason}`,
    `  public ${s.publicAddress}  peer ${s.peerAddress || "(peer plane off)"}`,
    `  store ${u ? `${formatBytes(Number(u.liveBytes))} live in ${u.artifactCount} artifacts, ${u.segmentCount} segments${u.capacityBytes > 0n ? `, capacity ${formatBytes(Number(u.capacityBytes))}` : ""}, ${u.evictedCount} evicted` : "?"}`,
    `  feed head ${s.feedHead} floor ${s.feedFloor}`,
    ...(s.peers.length === 0 ? ["  no peers"] : s.peers.map((p) => `  peer ${peerLine(p)}`)),
  ];
  return lines.join("\n");
}

export async function statusCommand(argv: readonly string[]): Promise<number> {
  const { values } = parseCommand(argv, OPTIONS);
  if (values["help"]) {
    process.stdout.write(helpText("granary status [--server URL] [--watch] [--json]", "Shows a node's readiness, store usage and per-peer replication progress.", OPTIONS));
    return 0;
  }
  const conn = connectPublic({ server: values["server"] as string, caFile: values["ca"] as string | undefined });
  const client = conn.client(NodeService);
  const json = Boolean(values["json"]);
  const print = (s: NodeStatus): void => {
    process.stdout.write(json ? `${JSON.stringify(toJson(NodeStatusSchema, s))}\n` : `${statusText(s)}\n`);
  };
  try {
    if (!values["watch"]) {
      const res = await client.getStatus({});
      if (res.status) print(res.status);
      return res.status?.ready ? 0 : 4;
    }
    const ac = new AbortController();
    const stop = (): void => ac.abort();
    process.once("SIGINT", stop);
    const bars = !json && process.stdout.isTTY ? new PeerBars() : undefined;
    try {
      for await (const res of client.watchStatus({ intervalMs: values["interval-ms"] as number }, { signal: ac.signal })) {
        if (!res.status) continue;
        if (bars) bars.render(res.status);
        else print(res.status);
      }
    } catch (e) {
      if (!ac.signal.aborted) throw e;
    } finally {
      bars?.stop();
      process.off("SIGINT", stop);
    }
    return 0;
  } finally {
    conn.close();
  }
}

/** One bar per peer: bootstrap progress while bootstrapping, feed cursor otherwise. */
class PeerBars {
  private readonly multi = new cliProgress.MultiBar(
    { format: "{label} [{bar}] {percentage}% | {info}", hideCursor: true, clearOnComplete: false, stopOnComplete: false, forceRedraw: true },
    cliProgress.Presets.shades_classic,
  );
  private readonly header = this.multi.create(1, 0, { label: "", info: "" }, { format: "{info}" });
  private readonly bars = new Map<string, cliProgress.SingleBar>();

  render(s: NodeStatus): void {
    this.header.update(0, { info: `${s.nodeId} ${s.ready ? "READY" : "NOT READY"}: ${s.readinessReason} | ${s.store?.artifactCount ?? 0} artifacts, feed head ${s.feedHead}` });
    for (const p of s.peers) {
      const key = p.address;
      let bar = this.bars.get(key);
      if (!bar) {
        bar = this.multi.create(1, 0, { label: "", info: "" });
        this.bars.set(key, bar);
      }
      const boot = p.phase === PeerPhase.BOOTSTRAPPING && p.bootstrapTotalBytes > 0n;
      const total = boot ? Number(p.bootstrapTotalBytes) : Math.max(1, Number(p.headSeq));
      // A follower at the head is complete, also when the head is 0 (an empty peer).
      const value = boot ? Number(p.bootstrapDoneBytes) : p.cursorSeq >= p.headSeq ? total : Number(p.cursorSeq);
      bar.setTotal(total);
      bar.update(Math.min(value, total), { label: (p.nodeId || p.address).padEnd(12), info: peerLine(p) });
    }
  }

  stop(): void {
    this.multi.stop();
  }
}
