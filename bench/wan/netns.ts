/**
 * The WAN lab's network: N host namespaces, one per node, each with its own address
 * (host i = 10.200.i.2/24, its router side 10.200.i.1), joined through one router namespace
 * that delays every forwarded packet by RTT/2 in a user-space TUN delay line
 * (bench/wan/tundelay.py: the kernel here has no netem), shapes each router→host egress with
 * tbf (the bottleneck queue toward every receiver) and can drop a fraction of forwarded packets
 * (nftables numgen). See docs/PERFORMANCE-WAN.md and ../shared/research/perf-anchors.md §A6.
 *
 * Addresses exist only inside namespaces created here. Names carry the prefix
 * `gwan-<pid>-`, so parallel runs do not collide and bench/wan/cleanup.ts can remove what a
 * dead run left. Everything created here (namespaces with their links, the delay line, every
 * process started in a namespace) is removed by close(), at process exit, on SIGINT/SIGTERM
 * and on an uncaught error. Needs root (CAP_NET_ADMIN): wanAvailable() says why not.
 */
import { execFile, execFileSync, spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const NS_PREFIX = "gwan-";
const PYTHON = "/usr/bin/python3";
const TUN_NAME = "dly0";
/** Source file of the delay line (not compiled: dist-bench/bench/wan/ points back to bench/wan/). */
const TUNDELAY = fileURLToPath(new URL("../../../bench/wan/tundelay.py", import.meta.url));
const LOSS_TABLE = "wanloss";

export interface LinkParams {
  /** Round-trip time added by the router (each direction gets half). */
  readonly rttMs: number;
  /** tbf rate of every router→host egress, Mbit/s (10^6 bit/s); 0 = unshaped. */
  readonly rateMbit: number;
  /** Percent of forwarded packets dropped, both directions (0.1 = 0.1 %). */
  readonly lossPercent: number;
}

export interface Host {
  readonly index: number;
  readonly ns: string;
  /** This host's address (IPv4 literal). */
  readonly address: string;
}

/** Why the WAN lab cannot run here, or undefined when it can. */
export function wanUnavailableReason(): string | undefined {
  if (process.platform !== "linux") return "not Linux";
  if (process.getuid?.() !== 0) return "not root (network namespaces, TUN and tbf need CAP_NET_ADMIN); run `make bench-wan` as root";
  for (const tool of ["ip", "tc", "nft"]) {
    try {
      execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
    } catch {
      return `${tool} is not installed (apt-get install iproute2 nftables)`;
    }
  }
  if (!existsSync(PYTHON)) return `${PYTHON} is missing (the TUN delay line runs on it)`;
  if (!existsSync("/dev/net/tun")) return "/dev/net/tun is missing";
  return undefined;
}

function sh(cmd: string, args: readonly string[], input?: string): string {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["pipe", "pipe", "pipe"], timeout: 20_000, ...(input !== undefined ? { input } : {}) });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(" ")}: ${(err.stderr ?? "").trim() || err.message}`, { cause: e });
  }
}

function nsExec(ns: string, args: readonly string[], input?: string): string {
  return sh("ip", ["netns", "exec", ns, ...args], input);
}

/** Kills every process inside namespace `ns` (by pid), then deletes it; never throws. */
export function removeNamespace(ns: string): void {
  for (let round = 0; round < 5; round++) {
    let pids: number[] = [];
    try {
      pids = execFileSync("ip", ["netns", "pids", ns], { encoding: "utf8", timeout: 5_000 }).split(/\s+/).filter(Boolean).map(Number);
    } catch {
      break;
    }
    if (pids.length === 0) break;
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone already
      }
    }
    execFileSync("sleep", ["0.1"]);
  }
  try {
    execFileSync("ip", ["netns", "del", ns], { stdio: "ignore", timeout: 5_000 });
  } catch {
    // not there
  }
}

/** Every namespace whose name starts with `prefix`. */
export function listNamespaces(prefix = NS_PREFIX): string[] {
  let out = "";
  try {
    out = execFileSync("ip", ["netns", "list"], { encoding: "utf8", timeout: 5_000 });
  } catch {
    return [];
  }
  return out
    .split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((n) => n.startsWith(prefix));
}

export class WanTopology {
  readonly prefix: string;
  readonly router: string;
  readonly hosts: Host[];
  private readonly namespaces: string[] = [];
  private readonly children = new Set<ChildProcess>();
  private delayLine: ChildProcess | undefined;
  private closed = false;
  private params: LinkParams;
  private readonly onSignal = (sig: NodeJS.Signals): void => {
    process.stderr.write(`\nwan: ${sig}: removing namespaces ${this.prefix}*\n`);
    this.close();
    process.exit(130);
  };
  private readonly onExit = (): void => this.close();

  private constructor(hostCount: number, params: LinkParams) {
    this.prefix = `${NS_PREFIX}${process.pid}-`;
    this.router = `${this.prefix}r`;
    this.hosts = Array.from({ length: hostCount }, (_, k) => ({ index: k + 1, ns: `${this.prefix}h${k + 1}`, address: `10.200.${k + 1}.2` }));
    this.params = params;
  }

  /** Builds the topology; on any failure removes what it made and rethrows. */
  static async create(hostCount: number, params: LinkParams): Promise<WanTopology> {
    if (hostCount < 2 || hostCount > 250) throw new Error(`hosts: want 2..250, got ${hostCount}`);
    const why = wanUnavailableReason();
    if (why !== undefined) throw new Error(`WAN lab unavailable: ${why}`);
    const t = new WanTopology(hostCount, params);
    process.once("SIGINT", t.onSignal);
    process.once("SIGTERM", t.onSignal);
    process.once("exit", t.onExit);
    try {
      await t.build();
    } catch (e) {
      t.close();
      throw e;
    }
    return t;
  }

  private addNamespace(ns: string): void {
    sh("ip", ["netns", "add", ns]);
    this.namespaces.push(ns);
    sh("ip", ["-n", ns, "link", "set", "lo", "up"]);
  }

  private async build(): Promise<void> {
    this.addNamespace(this.router);
    nsExec(this.router, ["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"]);
    for (const h of this.hosts) {
      this.addNamespace(h.ns);
      const rIf = `h${h.index}`;
      // Created directly inside the namespaces: no name ever exists in the root namespace.
      sh("ip", ["link", "add", "eth0", "netns", h.ns, "type", "veth", "peer", "name", rIf, "netns", this.router]);
      sh("ip", ["-n", h.ns, "addr", "add", `${h.address}/24`, "dev", "eth0"]);
      sh("ip", ["-n", h.ns, "link", "set", "eth0", "up"]);
      sh("ip", ["-n", h.ns, "route", "add", "default", "via", `10.200.${h.index}.1`]);
      sh("ip", ["-n", this.router, "addr", "add", `10.200.${h.index}.1/24`, "dev", rIf]);
      sh("ip", ["-n", this.router, "link", "set", rIf, "up"]);
      // Forwarded packets arriving from a host go to the delay line (table 100); what the
      // delay line writes back arrives on the TUN and takes the main table.
      sh("ip", ["-n", this.router, "rule", "add", "iif", rIf, "lookup", "100"]);
    }
    await this.startDelayLine(this.params.rttMs);
    this.applyRate(this.params.rateMbit);
    this.applyLoss(this.params.lossPercent);
  }

  private async startDelayLine(rttMs: number): Promise<void> {
    const proc = this.spawnIn(this.router, PYTHON, [TUNDELAY, TUN_NAME, String(rttMs / 2)], { stdio: ["pipe", "pipe", "inherit"] });
    this.delayLine = proc;
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("tundelay.py did not report ready within 10 s")), 10_000);
      createInterface({ input: proc.stdout! }).once("line", (l) => {
        clearTimeout(t);
        if (l.trim() === "ready") resolve();
        else reject(new Error(`tundelay.py: unexpected ${JSON.stringify(l)}`));
      });
      proc.once("exit", (code) => {
        clearTimeout(t);
        reject(new Error(`tundelay.py exited (${code})`));
      });
    });
    sh("ip", ["-n", this.router, "link", "set", TUN_NAME, "up", "txqueuelen", "5000"]);
    nsExec(this.router, ["sysctl", "-qw", `net.ipv4.conf.${TUN_NAME}.rp_filter=0`]);
    sh("ip", ["-n", this.router, "route", "replace", "default", "dev", TUN_NAME, "table", "100"]);
  }

  /** Changes the delay line's RTT (each direction gets half); takes effect for new packets. */
  async setRtt(rttMs: number): Promise<void> {
    const stdin = this.delayLine?.stdin;
    if (!stdin) throw new Error("the delay line is not running");
    stdin.write(`${rttMs / 2}\n`);
    // Let what is queued at the old delay drain before measuring at the new one.
    await new Promise((r) => setTimeout(r, Math.max(200, this.params.rttMs * 2)));
    this.params = { ...this.params, rttMs };
  }

  /** tbf on every router→host egress (each receiver's bottleneck); 0 removes it. */
  applyRate(rateMbit: number): void {
    for (const h of this.hosts) {
      const dev = `h${h.index}`;
      try {
        sh("ip", ["netns", "exec", this.router, "tc", "qdisc", "del", "dev", dev, "root"]);
      } catch {
        // none yet
      }
      if (rateMbit > 0) {
        // burst >= rate x 10 ms keeps tbf accurate at high rates; latency bounds the queue (drops past it).
        const burstKb = Math.max(256, Math.ceil((rateMbit * 1e6) / 8 / 100 / 1000));
        nsExec(this.router, ["tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", `${rateMbit}mbit`, "burst", `${burstKb}kb`, "latency", "50ms"]);
      }
    }
    this.params = { ...this.params, rateMbit };
  }

  /** Drops lossPercent % of the packets entering the router from any host (both directions). */
  applyLoss(lossPercent: number): void {
    try {
      nsExec(this.router, ["nft", "delete", "table", "inet", LOSS_TABLE]);
    } catch {
      // none yet
    }
    if (lossPercent > 0) {
      const perHundredThousand = Math.round(lossPercent * 1000);
      nsExec(this.router, ["nft", "-f", "-"], `table inet ${LOSS_TABLE} {\n chain lossfwd {\n  type filter hook forward priority 0; policy accept;\n  iifname != "${TUN_NAME}" numgen random mod 100000 < ${perHundredThousand} counter drop\n }\n}\n`);
    }
    this.params = { ...this.params, lossPercent };
  }

  /** Packets dropped by the loss rule so far. */
  lossDrops(): number {
    try {
      const m = /packets (\d+)/.exec(nsExec(this.router, ["nft", "list", "table", "inet", LOSS_TABLE]));
      return m ? Number(m[1]) : 0;
    } catch {
      return 0;
    }
  }

  /**
   * Default TCP congestion control of every host namespace (the sender's choice governs a
   * bulk transfer). BBR is the kernel's default. A namespace may only default to an algorithm
   * of the global allowed list (kernel rule), and cubic is not on it here: the list gets cubic
   * for the few milliseconds of the per-namespace sysctl and is restored right after, so the
   * host's own settings are left as they were.
   */
  setCongestionControl(cc: "bbr" | "cubic" | "reno"): void {
    const allowedFile = "/proc/sys/net/ipv4/tcp_allowed_congestion_control";
    const before = readFileSync(allowedFile, "utf8").trim();
    const needs = !before.split(/\s+/).includes(cc);
    if (needs) writeFileSync(allowedFile, `${before} ${cc}`);
    try {
      for (const h of this.hosts) nsExec(h.ns, ["sysctl", "-qw", `net.ipv4.tcp_congestion_control=${cc}`]);
    } finally {
      if (needs) writeFileSync(allowedFile, before);
    }
    for (const h of this.hosts) {
      const got = nsExec(h.ns, ["cat", "/proc/sys/net/ipv4/tcp_congestion_control"]).trim();
      if (got !== cc) throw new Error(`${h.ns}: congestion control is ${got}, wanted ${cc}`);
    }
  }

  congestionControl(host: Host): string {
    return nsExec(host.ns, ["cat", "/proc/sys/net/ipv4/tcp_congestion_control"]).trim();
  }

  link(): LinkParams {
    return this.params;
  }

  /** Starts a process inside a namespace; it is killed (by pid) when the topology closes. */
  spawnIn(ns: string, cmd: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
    const proc = spawn("ip", ["netns", "exec", ns, cmd, ...args], options);
    this.children.add(proc);
    proc.once("exit", () => this.children.delete(proc));
    return proc;
  }

  /** Runs a command inside a namespace to completion (bounded by timeoutMs); returns stdout. */
  run(ns: string, args: readonly string[], timeoutMs = 120_000): string {
    return execFileSync("ip", ["netns", "exec", ns, ...args], { encoding: "utf8", timeout: timeoutMs, killSignal: "SIGKILL", maxBuffer: 64 << 20 });
  }

  /** Like run(), without blocking the event loop (so Ctrl-C is handled at once). */
  runAsync(ns: string, args: readonly string[], timeoutMs = 120_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const c = execFile("ip", ["netns", "exec", ns, ...args], { encoding: "utf8", timeout: timeoutMs, killSignal: "SIGKILL", maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
        this.children.delete(c);
        if (err) reject(new Error(`${args.join(" ")} in ${ns}: ${stderr.trim() || err.message}`, { cause: err }));
        else resolve(stdout);
      });
      this.children.add(c);
    });
  }

  /** Kills everything started here and removes every namespace (with its links). Idempotent, synchronous. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    process.removeListener("SIGINT", this.onSignal);
    process.removeListener("SIGTERM", this.onSignal);
    process.removeListener("exit", this.onExit);
    for (const c of this.children) {
      if (c.pid === undefined) continue;
      try {
        process.kill(c.pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    this.delayLine = undefined;
    for (const ns of [...this.namespaces].reverse()) removeNamespace(ns);
  }
}
