/**
 * `granary put | get | stat | kv put | kv get`: a build client on the command line. Bodies
 * stream from and to files; nothing is held whole in memory.
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { rename, rm, stat as fsStat } from "node:fs/promises";
import { finished } from "node:stream/promises";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ArtifactService, Kind, type Manifest, PutRequestSchema } from "../gen/granary/artifact/v1/artifact_pb.js";
import { connectPublic, type PublicConnection } from "../transport/public-client.js";
import { helpText, parseCommand, type OptionSpec, UsageError } from "./options.js";
import { Progress } from "./progress.js";

const PUT_CHUNK_BYTES = 1 << 20;

const COMMON: OptionSpec[] = [
  { name: "server", kind: "string", default: "http://127.0.0.1:7070", help: "node's public address (http:// for h2c, https:// for TLS)" },
  { name: "namespace", kind: "string", default: "default", help: "namespace of the artifacts" },
  { name: "ca", kind: "string", help: "CA file to verify an https server" },
  { name: "json", kind: "boolean", help: "print JSON lines instead of text" },
  { name: "help", kind: "boolean", short: "h", help: "show this help", noEnv: true },
];
const OUT: OptionSpec = { name: "output", kind: "string", short: "o", help: "write the body to FILE (default stdout)", noEnv: true };

function connect(values: Record<string, unknown>): PublicConnection {
  return connectPublic({ server: values["server"] as string, caFile: values["ca"] as string | undefined });
}

function manifestJson(m: Manifest | undefined): Record<string, unknown> | null {
  if (!m) return null;
  return {
    namespace: m.namespace,
    kind: m.kind === Kind.CAS ? "cas" : "kv",
    key: m.key,
    size: m.size.toString(),
    digest: m.digest,
    version: m.version.toString(),
    origin: m.origin,
  };
}

async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: PUT_CHUNK_BYTES })) h.update(chunk as Buffer);
  return h.digest("hex");
}

async function putFile(
  conn: PublicConnection,
  namespace: string,
  kind: Kind,
  key: string,
  path: string,
  size: number,
): Promise<{ manifest: Manifest | undefined; alreadyPresent: boolean }> {
  const client = conn.client(ArtifactService);
  const progress = new Progress(`put ${path}`, size);
  async function* requests() {
    yield create(PutRequestSchema, { msg: { case: "header", value: { namespace, kind, key, size: BigInt(size) } } });
    for await (const chunk of createReadStream(path, { highWaterMark: PUT_CHUNK_BYTES })) {
      progress.add((chunk as Buffer).length);
      yield create(PutRequestSchema, { msg: { case: "chunk", value: chunk as Buffer } });
    }
  }
  try {
    const res = await client.put(requests());
    return { manifest: res.manifest, alreadyPresent: res.alreadyPresent };
  } finally {
    progress.stop();
  }
}

/** Streams a Get into `output` (atomically: temp file then rename) or stdout. */
async function getToOutput(conn: PublicConnection, namespace: string, kind: Kind, key: string, output: string | undefined): Promise<Manifest> {
  const client = conn.client(ArtifactService);
  const tmp = output ? `${output}.granary-partial-${process.pid}` : undefined;
  const sink = tmp ? createWriteStream(tmp) : process.stdout;
  const hash = createHash("sha256");
  let manifest: Manifest | undefined;
  let expected = 0n;
  let received = 0n;
  let progress: Progress | undefined;
  try {
    for await (const res of client.get({ namespace, kind, key })) {
      if (res.msg.case === "header") {
        manifest = res.msg.value.manifest;
        expected = res.msg.value.length;
        progress = new Progress(`get ${key}`, Number(expected));
      } else if (res.msg.case === "chunk") {
        const chunk = res.msg.value;
        received += BigInt(chunk.length);
        hash.update(chunk);
        progress?.add(chunk.length);
        if (!sink.write(chunk)) await new Promise<void>((r) => sink.once("drain", () => r()));
      }
    }
    if (!manifest) throw new Error("server ended the stream without a header");
    if (received !== expected) throw new Error(`server sent ${received} of ${expected} bytes`);
    const digest = hash.digest("hex");
    if (digest !== manifest.digest) throw new Error(`body hashes to ${digest}, manifest says ${manifest.digest}`);
    if (tmp && output) {
      sink.end();
      await finished(sink);
      await rename(tmp, output);
    }
    return manifest;
  } catch (e) {
    if (tmp) {
      sink.destroy();
      await rm(tmp, { force: true });
    }
    throw e;
  } finally {
    progress?.stop();
  }
}

function print(json: boolean, obj: Record<string, unknown>, text: string): void {
  process.stdout.write(json ? `${JSON.stringify(obj)}\n` : `${text}\n`);
}

export async function putCommand(argv: readonly string[]): Promise<number> {
  const specs = COMMON;
  const { values, positionals } = parseCommand(argv, specs);
  if (values["help"]) {
    process.stdout.write(helpText("granary put [options] FILE...", "Uploads files as content-addressed (CAS) artifacts and prints `<digest> <size> <file>` for each.", specs));
    return 0;
  }
  if (positionals.length === 0) throw new UsageError("granary put needs at least one FILE");
  const conn = connect(values);
  try {
    for (const file of positionals) {
      const size = (await fsStat(file)).size;
      const digest = await sha256File(file);
      const res = await putFile(conn, values["namespace"] as string, Kind.CAS, digest, file, size);
      print(Boolean(values["json"]), { file, digest, size, alreadyPresent: res.alreadyPresent, manifest: manifestJson(res.manifest) }, `${digest} ${size} ${file}`);
    }
  } finally {
    conn.close();
  }
  return 0;
}

export async function getCommand(argv: readonly string[]): Promise<number> {
  const specs = [...COMMON, OUT];
  const { values, positionals } = parseCommand(argv, specs);
  if (values["help"]) {
    process.stdout.write(helpText("granary get [options] DIGEST [-o FILE]", "Downloads a CAS artifact (verifying its digest) to FILE or stdout.", specs));
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError("granary get needs exactly one DIGEST");
  const conn = connect(values);
  try {
    const m = await getToOutput(conn, values["namespace"] as string, Kind.CAS, positionals[0]!, values["output"] as string | undefined);
    if (values["output"]) print(Boolean(values["json"]), { file: values["output"], manifest: manifestJson(m) }, `${m.digest} ${m.size} ${String(values["output"])}`);
  } finally {
    conn.close();
  }
  return 0;
}

export async function statCommand(argv: readonly string[]): Promise<number> {
  const specs = COMMON;
  const { values, positionals } = parseCommand(argv, specs);
  if (values["help"]) {
    process.stdout.write(helpText("granary stat [options] DIGEST...", "Shows whether the node holds each CAS artifact: `<digest> <size> <version> <origin>` or `<digest> missing`.", specs));
    return 0;
  }
  if (positionals.length === 0) throw new UsageError("granary stat needs at least one DIGEST");
  const conn = connect(values);
  let missing = 0;
  try {
    const ns = values["namespace"] as string;
    const res = await conn.client(ArtifactService).stat({ refs: positionals.map((key) => ({ namespace: ns, kind: Kind.CAS, key })) });
    for (const r of res.results) {
      const m = r.manifest;
      if (!m) missing++;
      print(Boolean(values["json"]), { digest: r.ref?.key, found: Boolean(m), manifest: manifestJson(m) }, m ? `${m.key} ${m.size} ${m.version} ${m.origin}` : `${r.ref?.key ?? "?"} missing`);
    }
  } finally {
    conn.close();
  }
  return missing > 0 ? 3 : 0;
}

export async function kvCommand(argv: readonly string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === "put") {
    const specs = COMMON;
    const { values, positionals } = parseCommand(rest, specs);
    if (values["help"]) {
      process.stdout.write(helpText("granary kv put [options] KEY FILE", "Stores FILE under KEY (action-cache style; overwrites, last writer wins).", specs));
      return 0;
    }
    if (positionals.length !== 2) throw new UsageError("granary kv put needs KEY and FILE");
    const [key, file] = positionals as [string, string];
    const conn = connect(values);
    try {
      const size = (await fsStat(file)).size;
      const res = await putFile(conn, values["namespace"] as string, Kind.KV, key, file, size);
      print(Boolean(values["json"]), { key, file, manifest: manifestJson(res.manifest) }, `${key} ${size} ${res.manifest?.digest ?? ""} ${res.manifest?.version ?? ""}`);
    } finally {
      conn.close();
    }
    return 0;
  }
  if (sub === "get") {
    const specs = [...COMMON, OUT];
    const { values, positionals } = parseCommand(rest, specs);
    if (values["help"]) {
      process.stdout.write(helpText("granary kv get [options] KEY [-o FILE]", "Fetches the value stored under KEY to FILE or stdout.", specs));
      return 0;
    }
    if (positionals.length !== 1) throw new UsageError("granary kv get needs exactly one KEY");
    const conn = connect(values);
    try {
      const m = await getToOutput(conn, values["namespace"] as string, Kind.KV, positionals[0]!, values["output"] as string | undefined);
      if (values["output"]) print(Boolean(values["json"]), { key: positionals[0], file: values["output"], manifest: manifestJson(m) }, `${m.key} ${m.size} ${String(values["output"])}`);
    } finally {
      conn.close();
    }
    return 0;
  }
  throw new UsageError("usage: granary kv put KEY FILE | granary kv get KEY [-o FILE]");
}

/** Renders an RPC failure for a person: the code name and the server's message. */
export function describeRpcError(e: unknown): string | undefined {
  if (e instanceof ConnectError) return `${Code[e.code]}: ${e.rawMessage}`;
  return undefined;
}
