/**
 * An honest crash test: a child process runs concurrent puts against a real data dir and is
 * killed with SIGKILL mid-write; after reopening, every put it acknowledged reads back
 * byte-exact. The child cannot import .ts on Node 20, so beforeAll transpiles src/store with the
 * TypeScript compiler API (type-only, per file: isolatedModules holds) into a scratch folder
 * under node_modules/.cache, where lmdb and p-limit resolve; it does not depend on dist/ or on
 * the rest of src/ compiling.
 */
import { spawn } from "node:child_process";
import { createCipheriv, createHash } from "node:crypto";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import ts from "typescript";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Kind } from "../../src/store/types.js";
import { collect, open, sha256, tempDir } from "./helpers.js";

const ROOT = resolve(import.meta.dirname, "../..");
const ACKS_BEFORE_KILL = 300;

function childBody(n: number): Buffer {
  const size = 1 + ((n * 7919) % 150_000);
  const key = createHash("sha256").update(`crash-${n}`).digest();
  return createCipheriv("aes-256-ctr", key, Buffer.alloc(16)).update(Buffer.alloc(size));
}

interface Ack {
  readonly n: number;
  readonly kind: Kind;
  readonly key: string;
  readonly digest: string;
  readonly size: number;
}

describe("crash safety", () => {
  let moduleDir: string;

  beforeAll(async () => {
    moduleDir = join(ROOT, "node_modules", ".cache", `granary-store-crash-${process.pid}-${Date.now()}`);
    await mkdir(moduleDir, { recursive: true });
    await writeFile(join(moduleDir, "package.json"), '{ "type": "module" }\n');
    const srcDir = join(ROOT, "src", "store");
    for (const name of await readdir(srcDir)) {
      if (!name.endsWith(".ts")) continue;
      const out = ts.transpileModule(await readFile(join(srcDir, name), "utf8"), {
        fileName: name,
        compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
      });
      await writeFile(join(moduleDir, name.replace(/\.ts$/, ".js")), out.outputText);
    }
  });

  afterAll(async () => {
    await rm(moduleDir, { recursive: true, force: true });
  });

  it("every put acknowledged before SIGKILL reads back byte-exact", async () => {
    const dir = await tempDir();
    try {
      const child = spawn(process.execPath, [join(ROOT, "test/store/crash-child.mjs"), moduleDir, dir.path], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
      const exited = new Promise<NodeJS.Signals | number | null>((resolveExit) =>
        child.on("exit", (code, signal) => resolveExit(signal ?? code)),
      );
      await new Promise<void>((resolveKill, rejectKill) => {
        child.stdout.setEncoding("utf8").on("data", (d: string) => {
          stdout += d;
          if (stdout.split("\n").length > ACKS_BEFORE_KILL && child.exitCode === null && !child.killed) {
            child.kill("SIGKILL");
            resolveKill();
          }
        });
        void exited.then((how) => rejectKill(new Error(`child exited early (${String(how)}): ${stderr}`)));
      });
      expect(await exited).toBe("SIGKILL");

      const acks: Ack[] = stdout
        .split("\n")
        .slice(0, -1) // the last line may be cut short by the kill
        .map((line) => {
          const [tag, n, kind, key, digest, size] = line.split(" ");
          expect(tag).toBe("ACK");
          return { n: Number(n), kind: kind as Kind, key: key ?? "", digest: digest ?? "", size: Number(size) };
        });
      expect(acks.length).toBeGreaterThanOrEqual(ACKS_BEFORE_KILL);

      const { store } = await open(dir.path, { nodeId: "crash-child", lanes: 4, segmentMaxBytes: 256 * 1024 });
      try {
        for (const ack of acks) {
          const expected = childBody(ack.n);
          expect(ack.digest).toBe(sha256(expected));
          const m = store.stat({ namespace: "crash", kind: ack.kind, key: ack.key });
          expect(m, `acked put ${ack.n} is missing`).toMatchObject({ digest: ack.digest, size: ack.size });
          const got = await collect(store.read({ namespace: "crash", kind: ack.kind, key: ack.key }).chunks);
          expect(got.equals(expected), `acked put ${ack.n} reads back different bytes`).toBe(true);
        }
        // The recovered store keeps working.
        const again = await store.put({ namespace: "crash", kind: "kv", key: "after" }, (async function* () {
          yield Buffer.from("after the crash");
        })());
        expect((await collect(store.read(again.manifest).chunks)).toString()).toBe("after the crash");
        expect(store.feedHead()).toBeGreaterThan(acks.length);
      } finally {
        await store.close();
      }
    } finally {
      await dir.cleanup();
    }
  });
});
