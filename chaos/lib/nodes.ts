/** In-process single nodes (no peer plane) for scenarios that need no process death. */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveNodeConfig, type RawNodeConfig } from "../../src/node/config.js";
import { GranaryNode, type NodeHooks } from "../../src/node/granary-node.js";
import { silentLogger, type Logger } from "../../src/telemetry/logger.js";

export async function startSingleNode(dataDir: string, raw: Partial<RawNodeConfig> = {}, hooks: NodeHooks & { log?: Logger } = {}): Promise<GranaryNode> {
  const { log, ...rest } = hooks;
  return GranaryNode.start(resolveNodeConfig({ dataDir, listen: "127.0.0.1:0", shutdownGraceMs: 1000, ...raw }), log ?? silentLogger(), { processMetrics: false, ...rest });
}

export async function scratch(prefix: string): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `granary-chaos-${prefix}-`));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}
