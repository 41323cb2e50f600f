/**
 * References of the WAN lab, run from the orchestrator on the lab's path: iperf3 goodput
 * (the link limit, `-R` so the source host sends, as in a bootstrap) and an rsync daemon
 * transfer of the source node's data directory (what an operator would use to seed a node).
 */
import { mkdirSync, rmSync, statSync, writeFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { Host, WanTopology } from "./netns.js";

export interface IperfOptions {
  readonly seconds: number;
  readonly parallel: number;
  /** Per-socket congestion control (`-C`, both ends); undefined = the namespace default. */
  readonly cc?: "bbr" | "cubic" | "reno";
}

async function waitForPort(topo: WanTopology, ns: string, port: number, ms: number): Promise<void> {
  const until = performance.now() + ms;
  for (let i = 0; i < 200 && performance.now() < until; i++) {
    if (topo.run(ns, ["ss", "-Hltn", `sport = :${port}`], 5_000).trim() !== "") return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on :${port} in ${ns} after ${ms} ms`);
}

let iperfRuns = 0;

/** Goodput (Mbit/s received) of `receiver` pulling from `source` with iperf3 -R. */
export async function iperf3(topo: WanTopology, source: Host, receiver: Host, o: IperfOptions): Promise<Record<string, number>> {
  // A fresh port each run: the previous run's server may still hold its port for a moment.
  const port = 5201 + (iperfRuns++ % 200);
  const server = topo.spawnIn(source.ns, "iperf3", ["-s", "-1", "-B", source.address, "-p", String(port)], { stdio: "ignore" });
  try {
    await waitForPort(topo, source.ns, port, 10_000);
    const args = ["iperf3", "-c", source.address, "-p", String(port), "-R", "-J", "-t", String(o.seconds), "-P", String(o.parallel), ...(o.cc ? ["-C", o.cc] : [])];
    const out = JSON.parse(await topo.runAsync(receiver.ns, args, (o.seconds + 30) * 1000)) as {
      end?: { sum_received?: { bits_per_second: number }; sum_sent?: { retransmits?: number } };
      error?: string;
    };
    if (out.error) throw new Error(`iperf3: ${out.error}`);
    return {
      mbitPerSecond: (out.end?.sum_received?.bits_per_second ?? NaN) / 1e6,
      mbPerSecond: (out.end?.sum_received?.bits_per_second ?? NaN) / 8e6,
      retransmits: out.end?.sum_sent?.retransmits ?? NaN,
    };
  } finally {
    if (server.exitCode === null) server.kill("SIGKILL");
  }
}

function dirBytes(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) n += statSync(join(e.parentPath, e.name)).size;
  }
  return n;
}

/** rsync daemon in the source namespace serving `dir`; the receiver pulls it into a fresh dir. */
export async function rsyncPull(topo: WanTopology, source: Host, receiver: Host, dir: string, scratch: string, maxSeconds: number): Promise<Record<string, number>> {
  const port = 8873;
  const conf = join(scratch, `rsyncd-${process.pid}.conf`);
  writeFileSync(conf, `use chroot = no\nnumeric ids = yes\n[data]\n  path = ${dir}\n  read only = yes\n`);
  const dest = join(scratch, `rsync-dest-${process.pid}`);
  rmSync(dest, { recursive: true, force: true });
  mkdirSync(dest, { recursive: true });
  const daemon = topo.spawnIn(source.ns, "rsync", ["--daemon", "--no-detach", `--config=${conf}`, `--address=${source.address}`, `--port=${port}`], { stdio: "ignore" });
  try {
    await waitForPort(topo, source.ns, port, 5_000);
    const bytes = dirBytes(dir);
    const t0 = performance.now();
    // -W: whole files (no delta algorithm: the receiver has nothing); no compression (random bytes).
    await topo.runAsync(receiver.ns, ["rsync", "-a", "-W", `rsync://${source.address}:${port}/data/`, `${dest}/`], maxSeconds * 1000);
    const ms = performance.now() - t0;
    const got = dirBytes(dest);
    if (got !== bytes) throw new Error(`rsync moved ${got} of ${bytes} bytes`);
    return { seconds: ms / 1000, bytes, mbPerSecond: bytes / 1e6 / (ms / 1000), mbitPerSecond: (bytes * 8) / 1e6 / (ms / 1000) };
  } finally {
    if (daemon.exitCode === null) daemon.kill("SIGKILL");
    rmSync(dest, { recursive: true, force: true });
    rmSync(conf, { force: true });
  }
}
