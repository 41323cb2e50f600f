/**
 * A node as a real child process (`node bin/granary.js serve`), for tests where a node must
 * die (kill -9) or where the CLI itself is under test. Events are read from its JSON log.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";

export const BIN = new URL("../../bin/granary.js", import.meta.url).pathname;

export interface ChildNode {
  readonly proc: ChildProcess;
  readonly publicAddress: string;
  readonly peerAddress: string | undefined;
  readonly lines: string[];
  /** Everything the process wrote to stderr (a crash's stack, a V8 or allocation abort). */
  stderr(): string;
  /** Resolves with the first log event matching `pred` (past or future). */
  event(pred: (e: Record<string, unknown>) => boolean, what: string): Promise<Record<string, unknown>>;
  waitReady(): Promise<void>;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function startChildNode(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<ChildNode> {
  const proc = spawn(process.execPath, [BIN, "serve", ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  const lines: string[] = [];
  const events: Array<Record<string, unknown>> = [];
  const waiters: Array<{ pred: (e: Record<string, unknown>) => boolean; resolve: (e: Record<string, unknown>) => void }> = [];
  let stderr = "";
  proc.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
  createInterface({ input: proc.stdout! }).on("line", (line) => {
    lines.push(line);
    let e: Record<string, unknown>;
    try {
      e = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    events.push(e);
    for (const w of [...waiters]) {
      if (w.pred(e)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(e);
      }
    }
  });
  const event = (pred: (e: Record<string, unknown>) => boolean, what: string): Promise<Record<string, unknown>> => {
    const seen = events.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      waiters.push({ pred, resolve });
      void exited.then((code) => reject(new Error(`node exited (${code}) before ${what}\nstderr: ${stderr}\nlog: ${lines.slice(-20).join("\n")}`)));
    });
  };
  const listening = await event((e) => e["event"] === "listening", "listening");
  return {
    proc,
    publicAddress: String(listening["publicAddress"]),
    peerAddress: listening["peerAddress"] === undefined ? undefined : String(listening["peerAddress"]),
    lines,
    stderr: () => stderr,
    event,
    waitReady: async () => {
      await event((e) => e["event"] === "readiness.changed" && e["ready"] === true, "ready");
    },
    kill: async (signal = "SIGTERM") => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}
