/**
 * Child-process nodes for scenarios that kill them: `granary serve` from dist/ (built by the
 * global setup), failpoints through the environment, and a registry so every child started
 * is killed (by pid) when the scenario ends, also on failure.
 */
import { startChildNode, type ChildNode } from "../../test/helpers/child-node.js";

const live = new Set<ChildNode>();

export async function startNode(args: readonly string[], failpoints?: string): Promise<ChildNode> {
  const env: NodeJS.ProcessEnv = failpoints ? { GRANARY_ENABLE_FAILPOINTS: "1", GRANARY_FAILPOINTS: failpoints } : {};
  const child = await startChildNode(["--listen", "127.0.0.1:0", "--ops-listen", "off", "--log-level", "info", ...args], env);
  live.add(child);
  child.proc.once("exit", () => live.delete(child));
  return child;
}

/** Kills every child still running (SIGKILL), waiting for each to exit. */
export async function killAll(): Promise<void> {
  await Promise.all([...live].map((c) => c.kill("SIGKILL")));
  live.clear();
}

/** Exit of a child: resolves with its signal or code once it is gone. */
export function exitOf(child: ChildNode): Promise<string> {
  if (child.proc.exitCode !== null || child.proc.signalCode !== null) return Promise.resolve(String(child.proc.signalCode ?? child.proc.exitCode));
  return new Promise((resolve) => child.proc.once("exit", (code, signal) => resolve(String(signal ?? code))));
}
