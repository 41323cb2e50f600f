/**
 * `granary dev`: the main job for a newcomer. Makes a dev CA and node certificates, starts N
 * nodes (child processes, each with its own data dir) in a full mTLS mesh on loopback, prints
 * what to try, and relays each node's notable events. Ctrl-C stops every node it started.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { caFiles, initCa, issueCert } from "../certs/dev-pki.js";
import { DEFAULT_OPS_PORT } from "../ops/ops-server.js";
import { helpText, parseCommand, type OptionSpec, UsageError } from "./options.js";

const OPTIONS: OptionSpec[] = [
  { name: "nodes", kind: "int", default: "3", help: "how many nodes", noEnv: true },
  { name: "dir", kind: "string", default: ".granary-dev", help: "folder for certificates, data dirs and logs", noEnv: true },
  { name: "base-port", kind: "int", default: "7070", help: "node i listens on BASE+i (public) and BASE+100+i (peer); its ops listener (metrics, status page) on 9464+i-1", noEnv: true },
  { name: "help", kind: "boolean", short: "h", help: "show this help", noEnv: true },
];

/** Log events worth showing a person watching the mesh. */
const SHOWN = new Set([
  "listening",
  "readiness.changed",
  "replication.phase",
  "replication.pass_started",
  "replication.pass_done",
  "replication.pass_retry",
  "replication.initial_sync",
  "membership.learned",
  "shutdown.done",
]);

export async function devCommand(argv: readonly string[]): Promise<number> {
  const { values } = parseCommand(argv, OPTIONS);
  if (values["help"]) {
    process.stdout.write(helpText("granary dev [--nodes 3] [--dir DIR]", "Starts a local mTLS mesh of N nodes on loopback with generated certificates. Ctrl-C stops it.", OPTIONS));
    return 0;
  }
  const n = values["nodes"] as number;
  if (n < 1 || n > 16) throw new UsageError("--nodes must be between 1 and 16");
  const dir = resolve(values["dir"] as string);
  const base = values["base-port"] as number;
  const certs = join(dir, "certs");
  await mkdir(certs, { recursive: true });
  if (!existsSync(caFiles(certs).certFile)) await initCa({ dir: certs });
  const nodes = Array.from({ length: n }, (_, i) => ({
    name: `node-${i + 1}`,
    publicAddress: `127.0.0.1:${base + i + 1}`,
    peerAddress: `https://127.0.0.1:${base + 100 + i + 1}`,
    opsAddress: `127.0.0.1:${DEFAULT_OPS_PORT + i}`,
  }));
  for (const node of nodes) {
    if (!existsSync(join(certs, `${node.name}.pem`))) await issueCert({ dir: certs, name: node.name });
  }
  const bin = fileURLToPath(new URL("../../bin/granary.js", import.meta.url));
  const children: ChildProcess[] = [];
  let stopping = false;
  const stopAll = (): void => {
    if (stopping) return;
    stopping = true;
    process.stdout.write("\nstopping the mesh...\n");
    for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
  };
  process.on("SIGINT", stopAll);
  process.on("SIGTERM", stopAll);

  const exits: Promise<number>[] = [];
  for (const node of nodes) {
    const dataDir = join(dir, node.name);
    await mkdir(dataDir, { recursive: true });
    const args = [
      bin, "serve",
      "--data-dir", dataDir,
      "--node-id", node.name,
      "--listen", node.publicAddress,
      "--peer-listen", node.peerAddress.replace("https://", ""),
      "--ops-listen", node.opsAddress,
      "--tls-ca", caFiles(certs).certFile,
      "--tls-cert", join(certs, `${node.name}.pem`),
      "--tls-key", join(certs, `${node.name}-key.pem`),
      ...(n > 1 ? ["--peers", nodes.filter((o) => o !== node).map((o) => o.peerAddress).join(",")] : []),
    ];
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    children.push(child);
    const logFile = createWriteStream(join(dir, `${node.name}.log`), { flags: "a" });
    child.stderr!.pipe(logFile);
    createInterface({ input: child.stdout! }).on("line", (line) => {
      logFile.write(`${line}\n`);
      try {
        const ev = JSON.parse(line) as { event?: string; msg?: string; level?: string };
        if ((ev.event && SHOWN.has(ev.event)) || ev.level === "error") process.stdout.write(`[${node.name}] ${ev.msg ?? ev.event}\n`);
      } catch {
        process.stdout.write(`[${node.name}] ${line}\n`);
      }
    });
    exits.push(
      new Promise<number>((res) =>
        child.on("exit", (code, signal) => {
          if (!stopping) {
            process.stdout.write(`[${node.name}] exited (${signal ?? code}); see ${join(dir, `${node.name}.log`)}\n`);
            stopAll();
          }
          res(code ?? 1);
        }),
      ),
    );
  }
  const first = nodes[0]!;
  const last = nodes[nodes.length - 1]!;
  process.stdout.write(`
Granary dev mesh: ${n} node(s), mTLS peer plane, data and logs in ${dir}
${nodes.map((o) => `  ${o.name}  public http://${o.publicAddress}  peer ${o.peerAddress}  status page http://${o.opsAddress}/`).join("\n")}

Try, in another terminal:
  echo hello > /tmp/hello.txt
  npx granary put --server ${first.publicAddress} /tmp/hello.txt          # prints the digest
  npx granary get --server ${last.publicAddress} DIGEST                    # replicated to ${last.name}
  npx granary status --server ${last.publicAddress} --watch

Add a fresh node that bootstraps from the mesh:
  npx granary certs issue --dir ${certs} --name node-new
  npx granary serve --data-dir ${join(dir, "node-new")} --node-id node-new --listen 127.0.0.1:${base + 50} \\
    --peer-listen 127.0.0.1:${base + 150} --ops-listen 127.0.0.1:9470 --tls-ca ${caFiles(certs).certFile} \\
    --tls-cert ${join(certs, "node-new.pem")} --tls-key ${join(certs, "node-new-key.pem")} --peers ${first.peerAddress}

Ctrl-C stops the mesh.
`);
  const codes = await Promise.all(exits);
  return codes.every((c) => c === 0) ? 0 : 1;
}
