/**
 * Processes of the WAN lab started in ANOTHER host's namespace (`ip netns exec NS ...`), from
 * a task process that itself runs in the receiver's namespace. Same contract as
 * bench/lib/proc.ts (which spawns in the caller's namespace): a granary node resolves once it
 * logged "listening"; a server child prints {"port": N} and exits when stdin closes; every
 * child is killed by pid when this process exits.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream } from "node:fs";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { capSignal } from "../lib/cap-signal.js";
import { GRANARY_MAIN, stopProcess } from "../lib/proc.js";

const live = new Set<ChildProcess>();
let hooked = false;

function register(p: ChildProcess): void {
  live.add(p);
  p.once("exit", () => live.delete(p));
  if (!hooked) {
    hooked = true;
    process.once("exit", () => {
      for (const c of live) if (c.pid !== undefined) try { process.kill(c.pid, "SIGKILL"); } catch { /* gone */ }
    });
  }
}

function nodeArgs(): string[] {
  return (process.env["BENCH_NODE_ARGS"] ?? "").split(/\s+/).filter((a) => a !== "");
}

export interface NsChild {
  readonly proc: ChildProcess;
  readonly pid: number;
  /** The first JSON line it printed ({"port"} for servers, the "listening" event for nodes). */
  readonly info: Record<string, unknown>;
  stop(): Promise<void>;
}

function firstJsonLine(proc: ChildProcess, match: (e: Record<string, unknown>) => boolean, what: string, signal: AbortSignal, log?: NodeJS.WritableStream): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    createInterface({ input: proc.stdout! }).on("line", (line) => {
      log?.write(line + "\n");
      try {
        const e = JSON.parse(line) as Record<string, unknown>;
        if (match(e)) resolve(e);
      } catch {
        // not JSON
      }
    });
    proc.once("exit", (code, sig) => reject(new Error(`${what} exited (${code ?? sig}) before it was ready`)));
    signal.addEventListener("abort", () => reject(new Error(`aborted while starting ${what}`)), { once: true });
  });
}

/** `granary serve ARGS` inside namespace `ns`; its log goes to logFile. */
export async function startGranaryInNs(ns: string, args: readonly string[], logFile: string, signal: AbortSignal): Promise<NsChild> {
  const proc = spawn("ip", ["netns", "exec", ns, process.execPath, ...nodeArgs(), GRANARY_MAIN, "serve", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  register(proc);
  const log = createWriteStream(logFile, { flags: "a" });
  proc.stderr!.pipe(log, { end: false });
  const stop = async (): Promise<void> => {
    await stopProcess(proc);
    await new Promise<void>((r) => log.end(r));
  };
  try {
    const cap = capSignal(signal, 30_000);
    const info = await firstJsonLine(proc, (e) => e["event"] === "listening", `granary serve in ${ns}`, cap.signal, log).finally(cap.clear);
    return { proc, pid: proc.pid!, info, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** A bench/wan server script (compiled name, e.g. "bare-server") inside namespace `ns`. */
export async function startServerInNs(ns: string, name: string, config: unknown, signal: AbortSignal): Promise<NsChild & { port: number }> {
  const script = fileURLToPath(new URL(`./${name}.js`, import.meta.url));
  const proc = spawn("ip", ["netns", "exec", ns, process.execPath, ...nodeArgs(), script, JSON.stringify(config)], { stdio: ["pipe", "pipe", "inherit"] });
  register(proc);
  const stop = async (): Promise<void> => {
    proc.stdin!.end();
    const t = setTimeout(() => proc.kill("SIGKILL"), 10_000);
    if (proc.exitCode === null && proc.signalCode === null) await new Promise((r) => proc.once("exit", r));
    clearTimeout(t);
  };
  const cap = capSignal(signal, 30_000);
  const info = await firstJsonLine(proc, (e) => typeof e["port"] === "number", name, cap.signal).finally(cap.clear);
  return { proc, pid: proc.pid!, info, port: Number(info["port"]), stop };
}
