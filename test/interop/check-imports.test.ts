// The architecture checker that `make lint` runs (scripts/check-imports.mjs), exercised on
// fixture trees so a checker that silently passes everything cannot go unnoticed.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";

const script = resolve(dirname(fileURLToPath(import.meta.url)), "../../scripts/check-imports.mjs");

const roots: string[] = [];

afterEach(() => {
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
});

/** Writes `files` (path under the fixture root -> contents) and returns the root. */
function fixture(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), "granary-check-imports-"));
  roots.push(root);
  for (const [path, text] of Object.entries(files)) {
    const full = join(root, path);
    mkdirSync(dirname(full), { recursive: true });
    writeFileSync(full, text);
  }
  return root;
}

function check(root: string): { status: number | null; output: string } {
  const run = spawnSync(process.execPath, [script, "--root", root], { encoding: "utf8" });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

describe("check-imports", () => {
  it("passes a tree whose imports point down and never loop", () => {
    const root = fixture({
      "src/cli/main.ts": `import { start } from "../node/node.js";\nimport "../transport/server.js";\n`,
      "src/node/node.ts": `import { routes } from "../api/routes.js";\nexport const start = () => routes;\n`,
      "src/api/routes.ts":
        `import { Code } from "@connectrpc/connect";\nimport { open } from "../store/store.js";\n` +
        `import type { Log } from "../telemetry/log.js";\nexport const routes = [Code, open];\n`,
      "src/store/store.ts": `import { bytes } from "../util/bytes.js";\nexport const open = bytes;\n`,
      "src/transport/server.ts": `import * as http2 from "node:http2";\nimport "@connectrpc/connect-node";\nexport { http2 };\n`,
      "src/telemetry/log.ts": `import { bytes } from "../util/bytes.js";\nexport type Log = typeof bytes;\n`,
      "src/util/bytes.ts": `export const bytes = 1;\n`,
      // Generated code is not scanned, whatever it contains.
      "src/gen/x_pb.ts": `import "../cli/main.js";\n`,
    });
    const { status, output } = check(root);
    expect(output).toMatch(/check-imports: ok — 7 files/);
    expect(status).toBe(0);
  });

  it("reports a cycle with its path and a layer violation with its reason", () => {
    const root = fixture({
      // A three-file cycle inside the store, closed by a dynamic import.
      "src/store/a.ts": `import { b } from "./b.js";\nexport const a = b;\n`,
      "src/store/b.ts": `export { c as b } from "./c.js";\n`,
      "src/store/c.ts": `export const c = 1;\nexport const later = () => import("./a.js");\n`,
      // The store reaching up into the API layer.
      "src/store/index.ts": `// import "../cli/commented-out.js" must not count\nimport { handler } from "../api/handler.js";\nexport { handler };\n`,
      "src/api/handler.ts":
        `import { connectNodeAdapter } from "@connectrpc/connect-node";\nexport const handler = connectNodeAdapter;\n`,
    });
    const { status, output } = check(root);
    expect(status).toBe(1);
    expect(output).toContain("src/store/a.ts -> src/store/b.ts -> src/store/c.ts -> src/store/a.ts");
    expect(output).toMatch(/src\/store\/index\.ts:2 +imports src\/api\/handler\.ts\s+store must not import api/);
    expect(output).toMatch(/src\/api\/handler\.ts:1 +imports "@connectrpc\/connect-node"\s+only src\/transport\/ may import/);
    expect(output).not.toContain("commented-out");
  });

  it("flags upward imports, transport outside its importers, and unknown folders", () => {
    const root = fixture({
      "src/transport/dial.ts": `import { retry } from "../replication/retry.js";\nexport const dial = retry;\n`,
      "src/replication/retry.ts": `export const retry = 1;\n`,
      "src/store/seg.ts": `import type { Dial } from "../transport/types.js";\nexport type S = Dial;\n`,
      "src/transport/types.ts": `export type Dial = number;\n`,
      "src/misc/thing.ts": `export const thing = 1;\n`,
    });
    const { status, output } = check(root);
    expect(status).toBe(1);
    expect(output).toMatch(/src\/transport\/dial\.ts:1 +imports src\/replication\/retry\.ts\s+transport sits below replication/);
    expect(output).toMatch(/src\/store\/seg\.ts:1 +imports src\/transport\/types\.ts \(type-only\)\s+store must not import transport/);
    expect(output).toMatch(/src\/misc\/thing\.ts +is in src\/misc\/, which is not in the layer table/);
  });
});
