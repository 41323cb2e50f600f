/**
 * The WAN lab (bench/wan/netns.ts: a namespace per node at 10.200.i.2, a router namespace with
 * the TUN delay line and tbf) made usable from a chaos scenario, which runs in the ROOT
 * namespace, where no 10.200.* address is reachable:
 *
 * - the lab's module is loaded from its compiled copy (dist-bench/, rebuilt when older than
 *   its source): netns.ts finds tundelay.py relative to dist-bench/bench/wan/, so its source
 *   module, run by vitest, would look one directory too high;
 * - `granary serve` children run inside a host namespace (`ip netns exec`, which execs, so the
 *   child's pid is the node's) and are registered with the topology, which kills them by pid;
 * - the scenario reaches a node's listeners through a relay per host: a small node process in
 *   the host's namespace listens on unix sockets (filesystem names cross namespaces) and
 *   connects to the node's loopback ports there; this process turns each socket into a
 *   127.0.0.1 port. Clients are thus next to their node; only node-to-node traffic crosses the
 *   emulated WAN.
 */
import { execFileSync, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync, statSync } from "node:fs";
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";
import type * as Netns from "../../bench/wan/netns.js";
import { BIN } from "../../test/helpers/child-node.js";

export type WanTopology = Netns.WanTopology;
export type WanHost = Netns.Host;
export type WanLinkParams = Netns.LinkParams;

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const COMPILED = join(REPO, "dist-bench", "bench", "wan", "netns.js");
const SOURCE = join(REPO, "bench", "wan", "netns.ts");

/** The lab's module (compiled), building dist-bench first when it is missing or stale. */
export async function loadWanLab(): Promise<typeof Netns> {
  if (!existsSync(COMPILED) || statSync(COMPILED).mtimeMs < statSync(SOURCE).mtimeMs) {
    execFileSync(process.execPath, [join(REPO, "node_modules", "typescript", "bin", "tsc"), "-p", join(REPO, "tsconfig.bench.json")], { cwd: REPO, stdio: "inherit", timeout: 300_000 });
  }
  return (await import(pathToFileURL(COMPILED).href)) as typeof Netns;
}

/** Why the lab cannot run here (not root, tools missing), or undefined. */
export async function wanUnavailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return "not root (network namespaces, TUN and tbf need CAP_NET_ADMIN): run make chaos as root";
  return (await loadWanLab()).wanUnavailableReason();
}

/** Runs inside a host namespace: argv = [sockPath=HOST:PORT ...]; prints "ready" once all listen. */
const RELAY_SOURCE = `
const net = require("node:net"), fs = require("node:fs");
const pairs = process.argv.slice(1).map((a) => { const [p, t] = a.split("="); const i = t.lastIndexOf(":"); return { p, host: t.slice(0, i), port: Number(t.slice(i + 1)) }; });
let left = pairs.length;
for (const { p, host, port } of pairs) {
  try { fs.unlinkSync(p); } catch {}
  net.createServer((c) => {
    const u = net.connect(port, host);
    c.pipe(u); u.pipe(c);
    u.on("error", () => c.destroy()); c.on("error", () => u.destroy());
    u.on("close", () => c.destroy()); c.on("close", () => u.destroy());
  }).listen(p, () => { if (--left === 0) process.stdout.write("ready\\n"); });
}
process.stdin.resume(); process.stdin.on("end", () => process.exit(0));
`;

export interface Relay {
  /** 127.0.0.1 port in this process for each name given. */
  readonly ports: Readonly<Record<string, number>>;
  close(): Promise<void>;
}

/**
 * Relays `targets` (name -> HOST:PORT inside host's namespace) to 127.0.0.1 ports here, through
 * unix sockets in `dir`. A connection to a port whose target is not listening is closed.
 */
export async function startRelay(topo: WanTopology, host: WanHost, dir: string, targets: Readonly<Record<string, string>>): Promise<Relay> {
  const socks = Object.entries(targets).map(([name, target]) => ({ name, target, path: join(dir, `h${host.index}-${name}.sock`) }));
  const proc = topo.spawnIn(host.ns, process.execPath, ["-e", RELAY_SOURCE, ...socks.map((s) => `${s.path}=${s.target}`)], { stdio: ["pipe", "pipe", "inherit"] });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`relay in ${host.ns} not ready within 20 s`)), 20_000);
    createInterface({ input: proc.stdout! }).once("line", () => {
      clearTimeout(t);
      resolve();
    });
    proc.once("exit", (code) => {
      clearTimeout(t);
      reject(new Error(`relay in ${host.ns} exited (${code})`));
    });
  });
  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  const ports: Record<string, number> = {};
  for (const s of socks) {
    const server = createServer((c) => {
      const u = connect(s.path);
      sockets.add(c).add(u);
      c.pipe(u);
      u.pipe(c);
      u.on("error", () => c.destroy());
      c.on("error", () => u.destroy());
      u.on("close", () => (c.destroy(), sockets.delete(u)));
      c.on("close", () => (u.destroy(), sockets.delete(c)));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    servers.push(server);
    ports[s.name] = (server.address() as AddressInfo).port;
  }
  return {
    ports,
    close: async () => {
      for (const c of sockets) c.destroy();
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
      proc.stdin?.end();
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    },
  };
}

export interface NsNode {
  readonly name: string;
  readonly proc: ChildProcess;
  /** Every JSON log line it printed so far, in order. */
  readonly events: Array<Record<string, unknown>>;
  /** Resolves with the first event matching `pred` (past or future); rejects on exit or after timeoutMs. */
  event(pred: (e: Record<string, unknown>) => boolean, what: string, timeoutMs: number): Promise<Record<string, unknown>>;
  /** SIGTERM, then SIGKILL after killAfterMs; resolves once it exited and its log is flushed. */
  stop(killAfterMs?: number): Promise<void>;
}

/** `granary serve ARGS` (dist/, via bin/granary.js) inside host's namespace; stdout and stderr go to logFile. */
export function startNodeInNs(topo: WanTopology, host: WanHost, name: string, args: readonly string[], logFile: string): NsNode {
  const proc = topo.spawnIn(host.ns, process.execPath, [BIN, "serve", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const log = createWriteStream(logFile, { flags: "a" });
  proc.stderr!.pipe(log, { end: false });
  const events: Array<Record<string, unknown>> = [];
  const waiters = new Set<{ pred: (e: Record<string, unknown>) => boolean; resolve: (e: Record<string, unknown>) => void }>();
  const exited = new Promise<string>((resolve) => proc.once("exit", (code, sig) => resolve(String(sig ?? code))));
  const lines = createInterface({ input: proc.stdout! });
  const drained = new Promise<void>((r) => lines.once("close", r));
  lines.on("line", (line) => {
    log.write(`${line}\n`);
    let e: Record<string, unknown>;
    try {
      e = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    events.push(e);
    for (const w of [...waiters]) if (w.pred(e)) (waiters.delete(w), w.resolve(e));
  });
  return {
    name,
    proc,
    events,
    event(pred, what, timeoutMs) {
      const seen = events.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve: (e: Record<string, unknown>): void => (clearTimeout(t), resolve(e)) };
        const t = setTimeout(() => (waiters.delete(w), reject(new Error(`${name}: no ${what} within ${timeoutMs} ms`))), timeoutMs);
        waiters.add(w);
        void exited.then((how) => {
          if (!waiters.delete(w)) return;
          clearTimeout(t);
          reject(new Error(`${name} exited (${how}) before ${what}`));
        });
      });
    },
    async stop(killAfterMs = 15_000) {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGTERM");
        const t = setTimeout(() => proc.kill("SIGKILL"), killAfterMs);
        await exited;
        clearTimeout(t);
      }
      await Promise.race([drained, new Promise((r) => setTimeout(r, 2000))]);
      await new Promise<void>((r) => log.end(r));
    },
  };
}
