// Interop: a Python build client, generated from our protos with Debian's protoc and
// grpc_python_plugin, against a real `granary serve` child process (the built CLI in dist/).
// The protos are a public contract for other languages; this is where a wire-level slip
// (uint64, oneof framing, status codes, chunking) would show.
//
// Needs (installed by .ci/run): /usr/bin/python3 with Debian's python3-grpcio and
// python3-protobuf, /usr/bin/protoc, /usr/bin/grpc_python_plugin; and `make build` first
// (`make test` does it). Missing prerequisites fail the test with what to install — they are
// never skipped, or CI would go green without ever running the other-language client.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
// Debian's interpreter on purpose: a python3 earlier on PATH (pyenv) cannot see python3-grpcio.
const PYTHON = "/usr/bin/python3";
const PROTOC = "/usr/bin/protoc";
const GRPC_PYTHON_PLUGIN = "/usr/bin/grpc_python_plugin";
const APT_HINT = "apt-get install -y protobuf-compiler protobuf-compiler-grpc python3-grpcio python3-protobuf (see .ci/run)";
// Bounds a wait that would otherwise hang until vitest's hook timeout with no explanation.
const LISTENING_WAIT_MS = 30_000;

const EXPECTED_CHECKS = [
  "cas_put",
  "cas_put_again",
  "cas_get",
  "cas_get_range",
  "stat",
  "find_missing",
  "kv_roundtrip",
  "bad_namespace_invalid_argument",
  "absent_key_not_found",
];

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A `granary serve` child and what it has said so far. */
interface NodeProcess {
  child: ChildProcess;
  exited: Promise<Exit>;
  output: string[];
}

function requirePrerequisites(): void {
  const missing = [PYTHON, PROTOC, GRPC_PYTHON_PLUGIN].filter((p) => !existsSync(p));
  if (missing.length > 0) {
    throw new Error(`Python interop needs ${missing.join(", ")}, which are missing: ${APT_HINT}`);
  }
  const probe = spawnSync(PYTHON, ["-c", "import grpc, google.protobuf; print(grpc.__version__, google.protobuf.__version__)"], {
    encoding: "utf8",
  });
  if (probe.status !== 0) {
    throw new Error(`${PYTHON} cannot import grpc / google.protobuf (${probe.stderr.trim()}): ${APT_HINT}`);
  }
  if (!existsSync(join(repo, "bin", "granary.js"))) {
    throw new Error("bin/granary.js (the CLI entry point this test runs as `granary serve`) is missing from the tree");
  }
  if (!existsSync(join(repo, "dist", "cli", "main.js"))) {
    throw new Error("dist/cli/main.js is missing: run `make build` first (`make test` builds before testing)");
  }
}

/** Generates the Python stubs into `outBase`/interop/python/gen; returns that directory. */
function generatePython(outBase: string): string {
  const buf = join(repo, "node_modules", ".bin", "buf");
  const run = spawnSync(buf, ["generate", "--template", "buf.gen.python.yaml", "--output", outBase], {
    cwd: repo,
    encoding: "utf8",
  });
  if (run.status !== 0) {
    throw new Error(`buf generate --template buf.gen.python.yaml failed (${run.status}):\n${run.stdout}${run.stderr}`);
  }
  const genDir = join(outBase, "interop", "python", "gen");
  if (!existsSync(join(genDir, "granary", "artifact", "v1", "artifact_pb2_grpc.py"))) {
    throw new Error(`buf generate succeeded but wrote no artifact_pb2_grpc.py under ${genDir}`);
  }
  return genDir;
}

/** The environment without GRANARY_* settings, so a developer's shell cannot change the node. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("GRANARY_")));
}

function startNode(dataDir: string): NodeProcess {
  const child = spawn(
    process.execPath,
    ["bin/granary.js", "serve", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0"],
    { cwd: repo, env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] },
  );
  const exited = once(child, "exit").then(([code, signal]) => ({ code, signal }) as Exit);
  const output: string[] = [];
  child.stderr?.setEncoding("utf8").on("data", (text: string) => output.push(text));
  return { child, exited, output };
}

/** Resolves with publicAddress from the node's `"msg":"listening"` log line. */
async function waitForListening(node: NodeProcess): Promise<string> {
  const lines = createInterface({ input: node.child.stdout! });
  const found = new Promise<string>((resolveAddress, reject) => {
    lines.on("line", (line) => {
      node.output.push(`${line}\n`);
      let record: unknown;
      try {
        record = JSON.parse(line);
      } catch {
        return; // not a structured log line
      }
      if (typeof record !== "object" || record === null) return;
      const { msg, publicAddress } = record as { msg?: unknown; publicAddress?: unknown };
      if (msg === "listening" && typeof publicAddress === "string") resolveAddress(publicAddress);
    });
    void node.exited.then(({ code, signal }) =>
      reject(new Error(`granary serve exited (code ${code}, signal ${signal}) before listening:\n${node.output.join("")}`)),
    );
  });
  const timeout = new Promise<never>((_, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no "listening" log line within ${LISTENING_WAIT_MS} ms:\n${node.output.join("")}`)),
      LISTENING_WAIT_MS,
    );
    timer.unref();
    void found.finally(() => clearTimeout(timer)).catch(() => undefined);
  });
  return Promise.race([found, timeout]);
}

async function runClient(genDir: string, target: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(
    PYTHON,
    [join(repo, "interop", "python", "client.py"), "--target", target, "--gen-dir", genDir, "roundtrip"],
    { cwd: repo, stdio: ["ignore", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (t: string) => (stdout += t));
  child.stderr.setEncoding("utf8").on("data", (t: string) => (stderr += t));
  const [code] = (await once(child, "close")) as [number | null];
  return { code, stdout, stderr };
}

describe("Python client (Debian grpcio) against granary serve", () => {
  let work = "";
  let genDir = "";
  let node: NodeProcess | undefined;
  let target = "";

  beforeAll(async () => {
    requirePrerequisites();
    work = mkdtempSync(join(tmpdir(), "granary-interop-py-"));
    genDir = generatePython(join(work, "gen-out"));
    node = startNode(join(work, "data"));
    target = await waitForListening(node);
  });

  afterAll(async () => {
    if (node !== undefined && node.child.exitCode === null && node.child.signalCode === null) {
      node.child.kill("SIGKILL"); // only reached when a test failed before the SIGTERM test
      await node.exited;
    }
    if (work !== "") rmSync(work, { recursive: true, force: true });
  });

  it("round-trips CAS and KV artifacts and gets the documented status codes", async () => {
    expect(target).toMatch(/^127\.0\.0\.1:\d+$/);
    const { code, stdout, stderr } = await runClient(genDir, target);
    const context = `client exit ${code}\nstdout: ${stdout}\nstderr: ${stderr}\nnode log:\n${node?.output.join("") ?? ""}`;
    const last = stdout.trim().split("\n").at(-1) ?? "";
    let report: { ok?: unknown; checks?: Record<string, { ok?: unknown }> };
    try {
      report = JSON.parse(last) as typeof report;
    } catch {
      throw new Error(`client.py printed no JSON result line\n${context}`);
    }
    const failed = Object.entries(report.checks ?? {}).filter(([, r]) => r.ok !== true);
    expect(failed, context).toEqual([]);
    expect(Object.keys(report.checks ?? {}).sort(), context).toEqual([...EXPECTED_CHECKS].sort());
    expect(report.ok, context).toBe(true);
    expect(code, context).toBe(0);
  });

  it("drains and exits cleanly on SIGTERM", async () => {
    expect(node).toBeDefined();
    node!.child.kill("SIGTERM");
    const exit = await node!.exited;
    expect(exit, `node log:\n${node!.output.join("")}`).toEqual({ code: 0, signal: null });
  });
});
