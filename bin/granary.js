#!/usr/bin/env node
// Entry point for `npx granary`: runs the compiled CLI (build with `make build`).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const main = fileURLToPath(new URL("../dist/cli/main.js", import.meta.url));
if (!existsSync(main)) {
  process.stderr.write("granary: dist/ is missing; run `make build` (or `npm run build`) first\n");
  process.exit(2);
}
await import(main);
