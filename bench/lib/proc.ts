/**
 * Child processes of the benchmark: granary nodes (`serve`, from the same dist-bench build),
 * bare reference servers, and per-measurement task processes. Every child is registered and
 * killed by pid when this process exits, whatever the reason; tasks run in their own process
 * group so the orchestrator can end a stuck one together with anything it started.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { createWriteStream, readFileSync, type WriteStream } from "node:fs";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const GRANARY_MAIN = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));
export const BENCH_DIR = fileURLToPath(new URL("../", import.meta.url));

/** Children still running, and whether each leads a process group of its own. */
/** Extra node flags for every benchmark process (BENCH_NODE_ARGS, e.g. --cpu-prof; NODE_OPTIONS refuses it). */
function extraNodeArgs(): string[] {
  return (process.env["BENCH_NODE_ARGS"] ?? "").split(/\s+/).filter((a) => a !== "");
}

const children = new Map<ChildProcess, boolean>();
let exitHookInstalled = false;

function register(proc: ChildProcess, group = false): void {
  children.set(proc, group);
  proc.once("exit", () => children.delete(proc));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once("exit", () => {
      for (const [c, isGroup] of children) {
        if (c.pid === undefined) continue;
        try {
          process.kill(isGroup ? -c.pid : c.pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
    });
  }
}

let clkTck: number | undefined;
function ticksPerSecond(): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/** user+system CPU seconds a process has used so far (Linux /proc). */
export function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may contain spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return (utime + stime) / ticksPerSecond();
}

/** Peak resident set (VmHWM) of a process, in MiB (Linux /proc). */
export function peakRssMibOf(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** This process's CPU seconds (user + system) since `since` (a process.cpuUsage() value). */
export function cpuSecondsSince(since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1e6;
}

function exited(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => proc.once("exit", () => resolve()));
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
export async function stopProcess(proc: ChildProcess, graceMs = 15_000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill("SIGTERM");
  const t = setTimeout(() => proc.kill("SIGKILL"), graceMs);
  await exited(proc);
  clearTimeout(t);
}

export interface GranaryChild {
  readonly proc: ChildProcess;
  readonly pid: number;
  /** HOST:PORT of the public (h2c) listener. */
  readonly publicAddress: string;
  /** https://HOST:PORT of the peer listener, when TLS material was given. */
  readonly peerAddress: string | undefined;
  stop(): Promise<void>;
}

/**
 * Starts `granary serve ARGS` as a child process and resolves once it logged "listening".
 * Its JSON log goes to `logFile`.
 */
export async function startGranaryChild(args: readonly string[], logFile: string, signal: AbortSignal): Promise<GranaryChild> {
  const proc = spawn(process.execPath, [...extraNodeArgs(), GRANARY_MAIN, "serve", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  register(proc);
  const log: WriteStream = createWriteStream(logFile, { flags: "a" });
  proc.stderr!.pipe(log, { end: false });
  let stopped = false;
  const listening = new Promise<Record<string, unknown>>((resolve, reject) => {
    const lines = createInterface({ input: proc.stdout! });
    lines.on("line", (line) => {
      log.write(line + "\n");
      if (!line.includes('"listening"')) return;
      try {
        const e = JSON.parse(line) as Record<string, unknown>;
        if (e["event"] === "listening") resolve(e);
      } catch {
        // not JSON: logged above, ignored here
      }
    });
    proc.once("exit", (code, sig) => reject(new Error(`granary serve exited (${code ?? sig}) before listening; see ${logFile}`)));
    const onAbort = (): void => reject(signal.reason instanceof Error ? signal.reason : new Error("aborted while starting granary serve"));
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
  });
  const stop = async (): Promise<void> => {
    if (stopped) return exited(proc);
    stopped = true;
    await stopProcess(proc);
    await new Promise<void>((resolve) => log.end(resolve));
  };
  let e: Record<string, unknown>;
  try {
    e = await listening;
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    proc,
    pid: proc.pid!,
    publicAddress: String(e["publicAddress"]),
    peerAddress: e["peerAddress"] === undefined ? undefined : String(e["peerAddress"]),
    stop,
  };
}

export interface ServerChild {
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly port: number;
  stop(): Promise<void>;
}

/**
 * Starts a bare reference server (bench/servers/NAME.js). It prints {"port": N} once
 * listening and exits when its stdin closes, so it cannot outlive this process.
 */
export async function startServerChild(name: string, config: unknown, signal: AbortSignal): Promise<ServerChild> {
  const script = fileURLToPath(new URL(`../servers/${name}.js`, import.meta.url));
  const proc = spawn(process.execPath, [...extraNodeArgs(), script, JSON.stringify(config)], { stdio: ["pipe", "pipe", "inherit"] });
  register(proc);
  const port = await new Promise<number>((resolve, reject) => {
    const lines = createInterface({ input: proc.stdout! });
    lines.once("line", (line) => {
      try {
        resolve(Number((JSON.parse(line) as { port: number }).port));
      } catch (e) {
        reject(new Error(`${name}: unexpected first line ${JSON.stringify(line)}`, { cause: e }));
      }
    });
    proc.once("exit", (code) => reject(new Error(`${name} exited (${code}) before listening`)));
    signal.addEventListener("abort", () => reject(new Error(`aborted while starting ${name}`)), { once: true });
  });
  return {
    proc,
    pid: proc.pid!,
    port,
    stop: async () => {
      proc.stdin!.end();
      const t = setTimeout(() => proc.kill("SIGKILL"), 10_000);
      await exited(proc);
      clearTimeout(t);
    },
  };
}

export interface TaskRun {
  readonly ok: boolean;
  readonly output: Record<string, unknown> | undefined;
  readonly error: string | undefined;
  readonly wallMs: number;
}

/**
 * Runs one measurement in a fresh process (`node bench/task.js NAME`) in its own process
 * group; input and output travel as JSON files. A task that outlives `timeoutMs` is killed
 * with its whole group (by the group id, which is the task's pid).
 */
export async function runTaskProcess(
  name: string,
  inputFile: string,
  outputFile: string,
  logFile: string,
  timeoutMs: number,
  nodeArgs: readonly string[] = [],
): Promise<TaskRun> {
  const script = fileURLToPath(new URL("../task.js", import.meta.url));
  const log = createWriteStream(logFile, { flags: "a" });
  await new Promise<void>((resolve) => log.once("open", () => resolve()));
  const started = Date.now();
  const proc = spawn(process.execPath, [...extraNodeArgs(), ...nodeArgs, script, name], {
    detached: true,
    stdio: ["ignore", log, log],
    env: { ...process.env, BENCH_TASK_INPUT: inputFile, BENCH_TASK_OUTPUT: outputFile },
  });
  register(proc, true);
  const killGroup = (): void => {
    try {
      process.kill(-proc.pid!, "SIGKILL");
    } catch {
      // group already gone
    }
  };
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup();
  }, timeoutMs);
  const code = await new Promise<number | null>((resolve) => proc.once("exit", (c) => resolve(c)));
  clearTimeout(timer);
  // Anything the task started and left behind goes with its group.
  killGroup();
  log.end();
  const wallMs = Date.now() - started;
  let output: Record<string, unknown> | undefined;
  try {
    output = JSON.parse(readFileSync(outputFile, "utf8")) as Record<string, unknown>;
  } catch {
    output = undefined;
  }
  if (timedOut) return { ok: false, output: undefined, error: `timed out after ${timeoutMs} ms (killed); see ${logFile}`, wallMs };
  if (code !== 0 || !output || typeof output["error"] === "string") {
    const why = typeof output?.["error"] === "string" ? output["error"] : `exit code ${code}`;
    return { ok: false, output: undefined, error: `${why}; see ${logFile}`, wallMs };
  }
  return { ok: true, output, error: undefined, wallMs };
}
