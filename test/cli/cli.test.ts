/**
 * The CLI end to end, through real child processes: certs, serve, put/get/stat, kv, status,
 * graceful shutdown, and kill -9 mid-put with every acknowledged artifact intact.
 */
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bytes, sha256Hex } from "../helpers/data.js";
import { BIN, startChildNode, type ChildNode } from "../helpers/child-node.js";
import { tempDir } from "../helpers/temp.js";

const run = promisify(execFile);

async function granary(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], { maxBuffer: 64 << 20 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === "number" ? err.code : 1, stdout: err.stdout ?? "", stderr: err.stderr ?? "" };
  }
}

let dir: string;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  const t = await tempDir("granary-cli-");
  dir = t.path;
  cleanup = t.cleanup;
});

afterAll(async () => {
  await cleanup?.();
});

describe("granary CLI", () => {
  it("documents every serve option and its environment variable", async () => {
    const r = await granary(["serve", "--help"]);
    expect(r.code).toBe(0);
    for (const flag of ["--data-dir", "--listen", "--peer-listen", "--capacity", "--node-id", "--public-tls", "--tls-ca", "--peers"]) expect(r.stdout).toContain(flag);
    expect(r.stdout).toContain("GRANARY_DATA_DIR");
  });

  it("refuses bad flags with exit 2 and a message naming the flag", async () => {
    const r = await granary(["serve", "--data-dir", join(dir, "x"), "--listen", "nonsense"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--listen/);
  });

  it("puts, gets, stats and kv round-trips through a real node, and drains on SIGTERM", async () => {
    const node: ChildNode = await startChildNode(["--data-dir", join(dir, "n1"), "--listen", "127.0.0.1:0"], { GRANARY_NODE_ID: "cli-node" });
    try {
      await node.waitReady();
      const server = node.publicAddress;
      const f1 = join(dir, "a.bin");
      const f2 = join(dir, "b.bin");
      const b1 = bytes(1, 3 << 20);
      const b2 = bytes(2, 1234);
      await writeFile(f1, b1);
      await writeFile(f2, b2);
      const put = await granary(["put", "--server", server, "--namespace", "cli", f1, f2]);
      expect(put.stderr).toBe("");
      expect(put.code).toBe(0);
      const lines = put.stdout.trim().split("\n");
      expect(lines).toEqual([`${sha256Hex([b1])} ${b1.length} ${f1}`, `${sha256Hex([b2])} ${b2.length} ${f2}`]);

      const out = join(dir, "a.out");
      const get = await granary(["get", "--server", server, "--namespace", "cli", sha256Hex([b1]), "-o", out]);
      expect(get.code).toBe(0);
      expect(Buffer.compare(await readFile(out), Buffer.from(b1))).toBe(0);

      const absent = "e".repeat(64);
      const stat = await granary(["stat", "--server", server, "--namespace", "cli", "--json", sha256Hex([b2]), absent]);
      const rows = stat.stdout.trim().split("\n").map((l) => JSON.parse(l) as { digest: string; found: boolean });
      expect(rows.map((r) => [r.digest, r.found])).toEqual([[sha256Hex([b2]), true], [absent, false]]);
      expect(stat.code).toBe(3);

      const missing = await granary(["get", "--server", server, "--namespace", "cli", absent]);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toMatch(/NotFound/);

      await granary(["kv", "put", "--server", server, "--namespace", "cli", "action/1", f2]);
      const kvOut = join(dir, "kv.out");
      const kv = await granary(["kv", "get", "--server", server, "--namespace", "cli", "action/1", "-o", kvOut]);
      expect(kv.code, kv.stderr).toBe(0);
      expect(Buffer.compare(await readFile(kvOut), Buffer.from(b2))).toBe(0);
      const text = join(dir, "text.txt");
      await writeFile(text, "hello\n");
      await granary(["kv", "put", "--server", server, "--namespace", "cli", "greeting", text]);
      expect((await granary(["kv", "get", "--server", server, "--namespace", "cli", "greeting"])).stdout).toBe("hello\n");

      const status = await granary(["status", "--server", server, "--json"]);
      expect(status.code).toBe(0);
      expect((JSON.parse(status.stdout) as { nodeId: string }).nodeId).toBe("cli-node");
    } finally {
      expect(await node.kill("SIGTERM")).toBe(0);
    }
    expect(node.lines.some((l) => l.includes('"shutdown.done"'))).toBe(true);
  });

  it("keeps every acknowledged put after kill -9 mid-put", async () => {
    const dataDir = join(dir, "crash");
    let node = await startChildNode(["--data-dir", dataDir, "--listen", "127.0.0.1:0"]);
    const { connectPublic } = await import("../../src/transport/public-client.js");
    const { putCas } = await import("../helpers/mesh.js");
    const conn = connectPublic({ server: node.publicAddress });
    const acked: Array<{ digest: string; seed: number; size: number }> = [];
    const writers = Array.from({ length: 8 }, async (_, w) => {
      for (let i = 0; ; i++) {
        const seed = 10_000 + w * 1000 + i;
        const size = 8192 + ((seed * 7919) % (2 << 20));
        try {
          const digest = await putCas(conn, "crash", bytes(seed, size));
          acked.push({ digest, seed, size });
        } catch {
          return;
        }
        if (acked.length >= 40 && w === 0) {
          // kill -9 while the other writers are mid-put
          node.proc.kill("SIGKILL");
          return;
        }
      }
    });
    await Promise.all(writers);
    conn.close();
    await node.kill("SIGKILL");
    expect(acked.length).toBeGreaterThanOrEqual(40);
    node = await startChildNode(["--data-dir", dataDir, "--listen", "127.0.0.1:0"]);
    const { ArtifactService, Kind } = await import("../../src/gen/granary/artifact/v1/artifact_pb.js");
    const reader = connectPublic({ server: node.publicAddress });
    try {
      for (const a of acked) {
        const parts: Uint8Array[] = [];
        for await (const r of reader.client(ArtifactService).get({ namespace: "crash", kind: Kind.CAS, key: a.digest })) {
          if (r.msg.case === "chunk") parts.push(r.msg.value);
        }
        const body = Buffer.concat(parts);
        expect(body.length).toBe(a.size);
        expect(sha256Hex([body])).toBe(a.digest);
      }
    } finally {
      reader.close();
      await node.kill("SIGTERM");
    }
  });
});
