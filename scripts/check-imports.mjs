#!/usr/bin/env node
// check-imports: the architecture check behind `make lint`.
//
// Walks src/**/*.ts (not src/gen, which buf owns), reads every import / export-from /
// dynamic import() specifier, and fails when
//   (a) files import each other in a cycle (ESM cycles are where "Cannot access X before
//       initialization" comes from, and they blur which module owns what), or
//   (b) an import points the wrong way between the layers of docs ARCHITECTURE.md, or a
//       layer other than transport reaches for the HTTP/2 / RPC-runtime packages.
//
// Plain Node, no dependencies, so it runs before (and independently of) `npm ci`'d tooling.
// The scanner is a small tokenizer, not a TypeScript parser: it understands comments,
// strings, template literals and regex literals well enough that text inside them is never
// mistaken for an import.
//
// Usage: node scripts/check-imports.mjs [--root DIR] [--list]   (DIR holds src/; default: repo root)

import { readdirSync, readFileSync, statSync, existsSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

// ---------------------------------------------------------------------------------------------
// The rules. Edit here.

/** Folders under src/, top to bottom. A file may import its own folder or any folder below. */
// ops (the operators' HTTP listener and Prometheus metrics) sits below node, which wires it,
// and above api/replication, whose state it reads.
const LAYERS = ["cli", "node", "ops", "api", "replication", "store", "transport", "certs", "telemetry", "util", "gen"];

/** Layers every file may import, whatever its own layer (they are leaves everyone shares). */
const SHARED_LAYERS = ["telemetry", "util", "gen"];

/**
 * Narrower than the order: a layer listed here may be imported only by the layers named.
 * (transport sits below store in the order, yet the store must stay transport-agnostic.)
 */
const ONLY_IMPORTED_BY = {
  transport: ["cli", "node", "api", "replication"],
  ops: ["cli", "node"],
};

/** Explicit denials, checked in addition to the order so the report can say why. */
const FORBIDDEN = {
  store: ["transport", "api", "replication", "node", "cli"],
  replication: ["api", "node", "cli"],
};

/**
 * Packages (and their subpaths) only some layers may import. Everything HTTP/2 and
 * wire-runtime lives in src/transport; src/api speaks @connectrpc/connect (router types),
 * which is not listed here and so stays open.
 */
const RESTRICTED_PACKAGES = [
  { name: "node:http2", layers: ["transport"] },
  { name: "http2", layers: ["transport"] },
  { name: "@connectrpc/connect-node", layers: ["transport"] },
  { name: "@grpc/grpc-js", layers: ["transport"] },
  // The OpenTelemetry SDK is started by the CLI through telemetry/tracing.ts; library code
  // uses @opentelemetry/api only.
  { name: "@opentelemetry/sdk-node", layers: ["telemetry"] },
  { name: "@opentelemetry/sdk-trace-base", layers: ["telemetry"] },
  { name: "@opentelemetry/resources", layers: ["telemetry"] },
  { name: "prom-client", layers: ["ops"] },
];

/** Folders under src/ that are not scanned (generated code: buf owns it). */
const SKIP_DIRS = ["gen"];

/**
 * Whether `import type` / `export type … from` edges count towards cycles. They are erased at
 * runtime, but a type cycle still means two modules each know the other; keep it strict.
 * Type-only edges are marked "(type)" in the report either way.
 */
const CYCLES_INCLUDE_TYPE_ONLY = true;

// ---------------------------------------------------------------------------------------------

const ROOT_LAYER = "(src root)";

function parseArgs(argv) {
  let root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
  let list = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--root") {
      const value = argv[++i];
      if (value === undefined) usage("--root needs a directory");
      root = resolve(value);
    } else if (arg.startsWith("--root=")) {
      root = resolve(arg.slice("--root=".length));
    } else if (arg === "--list") {
      list = true;
    } else if (arg === "-h" || arg === "--help") {
      usage();
    } else {
      usage(`unknown argument: ${arg}`);
    }
  }
  return { root, list };
}

function usage(problem) {
  const out = problem === undefined ? process.stdout : process.stderr;
  if (problem !== undefined) out.write(`check-imports: ${problem}\n`);
  out.write("usage: node scripts/check-imports.mjs [--root DIR] [--list]\n");
  out.write("  --root DIR  the directory holding src/ (default: this repository)\n");
  out.write("  --list      also print every import found, file:line kind specifier\n");
  process.exit(problem === undefined ? 0 : 2);
}

// --- scanning ---------------------------------------------------------------------------------

/** Keywords after which a `/` starts a regex literal rather than a division. */
const REGEX_AFTER_WORD = new Set([
  "return", "typeof", "instanceof", "in", "of", "new", "delete", "void", "throw", "case", "do",
  "else", "yield", "await",
]);

/**
 * Tokenizes TS source into words, string literals and single-char punctuators, dropping
 * comments, whitespace and the text of template literals / regexes (code inside `${}` is
 * tokenized). Returns [{ type: "word"|"string"|"punct", value, line }].
 */
function tokenize(src) {
  const tokens = [];
  const braceStack = []; // "code" for a plain {, "template" for a ${ inside a template
  let i = 0;
  let line = 1;
  const n = src.length;

  const push = (type, value, atLine) => tokens.push({ type, value, line: atLine });
  const prevSignificant = () => tokens[tokens.length - 1];

  const readTemplate = () => {
    // At the char after ` or after the } that closes a ${ }. Reads to the closing ` or to ${.
    while (i < n) {
      const c = src[i];
      if (c === "\\") { i += 2; continue; }
      if (c === "\n") line++;
      if (c === "`") { i++; push("punct", "`", line); return; }
      if (c === "$" && src[i + 1] === "{") { i += 2; braceStack.push("template"); return; }
      i++;
    }
  };

  while (i < n) {
    const c = src[i];
    if (c === "\n") { line++; i++; continue; }
    if (c === " " || c === "\t" || c === "\r" || c === "\f" || c === "\v" || c === "\uFEFF") { i++; continue; }
    if (c === "/" && src[i + 1] === "/") {
      while (i < n && src[i] !== "\n") i++;
      continue;
    }
    if (c === "/" && src[i + 1] === "*") {
      const end = src.indexOf("*/", i + 2);
      const stop = end === -1 ? n : end + 2;
      for (let j = i; j < stop; j++) if (src[j] === "\n") line++;
      i = stop;
      continue;
    }
    if (c === '"' || c === "'") {
      const startLine = line;
      let value = "";
      i++;
      while (i < n && src[i] !== c) {
        if (src[i] === "\\") { value += src[i + 1] ?? ""; i += 2; continue; }
        if (src[i] === "\n") { line++; break; } // unterminated; keep going
        value += src[i++];
      }
      i++;
      push("string", value, startLine);
      continue;
    }
    if (c === "`") {
      i++;
      readTemplate();
      continue;
    }
    if (c === "{") { braceStack.push("code"); push("punct", "{", line); i++; continue; }
    if (c === "}") {
      const kind = braceStack.pop();
      i++;
      if (kind === "template") { readTemplate(); continue; }
      push("punct", "}", line);
      continue;
    }
    if (c === "/") {
      const prev = prevSignificant();
      const regexAllowed =
        prev === undefined ||
        (prev.type === "punct" && !")]}`".includes(prev.value)) ||
        (prev.type === "word" && REGEX_AFTER_WORD.has(prev.value));
      if (regexAllowed) {
        i++;
        let inClass = false;
        while (i < n) {
          const r = src[i];
          if (r === "\\") { i += 2; continue; }
          if (r === "\n") break;
          if (r === "[") inClass = true;
          else if (r === "]") inClass = false;
          else if (r === "/" && !inClass) { i++; break; }
          i++;
        }
        while (i < n && /[A-Za-z]/.test(src[i])) i++; // flags
        push("punct", "regex", line);
        continue;
      }
      push("punct", "/", line);
      i++;
      continue;
    }
    if (/[A-Za-z_$\u0080-\uFFFF]/.test(c)) {
      let j = i + 1;
      while (j < n && /[A-Za-z0-9_$\u0080-\uFFFF]/.test(src[j])) j++;
      push("word", src.slice(i, j), line);
      i = j;
      continue;
    }
    if (/[0-9]/.test(c)) {
      let j = i + 1;
      while (j < n && /[0-9A-Za-z_.]/.test(src[j])) j++;
      push("word", src.slice(i, j), line);
      i = j;
      continue;
    }
    push("punct", c, line);
    i++;
  }
  return tokens;
}

/**
 * Finds module specifiers in a token stream.
 * Returns [{ specifier, line, typeOnly, dynamic }].
 */
function findImports(tokens) {
  const found = [];
  const at = (k) => tokens[k];
  const isPunct = (t, v) => t !== undefined && t.type === "punct" && t.value === v;
  const isWord = (t, v) => t !== undefined && t.type === "word" && t.value === v;

  // From index k, find `from "x"` before the statement ends; returns [specifier, index] or null.
  const scanToFrom = (k) => {
    let depth = 0;
    for (; k < tokens.length; k++) {
      const t = tokens[k];
      if (isPunct(t, "{")) depth++;
      else if (isPunct(t, "}")) depth--;
      else if (depth === 0 && isPunct(t, ";")) return null;
      else if (depth === 0 && isWord(t, "from") && at(k + 1)?.type === "string") return [at(k + 1).value, k + 1];
      else if (depth === 0 && (isWord(t, "import") || isWord(t, "export"))) return null;
      if (depth < 0) return null;
    }
    return null;
  };

  for (let k = 0; k < tokens.length; k++) {
    const t = tokens[k];
    if (t.type !== "word" || (t.value !== "import" && t.value !== "export")) continue;
    const prev = at(k - 1);
    if (isPunct(prev, ".")) continue; // obj.import(...), a property
    const next = at(k + 1);

    if (t.value === "import") {
      if (isPunct(next, ".")) continue; // import.meta
      if (isPunct(next, "(")) {
        const arg = at(k + 2);
        if (arg?.type === "string" && (isPunct(at(k + 3), ")") || isPunct(at(k + 3), ","))) {
          found.push({ specifier: arg.value, line: t.line, typeOnly: false, dynamic: true });
        }
        continue;
      }
      if (next?.type === "string") {
        found.push({ specifier: next.value, line: t.line, typeOnly: false, dynamic: false });
        continue;
      }
      // `import type X from`, but not `import type from "x"` (a default import named type).
      const typeOnly = isWord(next, "type") && !(isWord(at(k + 2), "from") && at(k + 3)?.type === "string");
      const hit = scanToFrom(k + 1);
      if (hit !== null) {
        found.push({ specifier: hit[0], line: t.line, typeOnly, dynamic: false });
        k = hit[1];
      }
      continue;
    }

    // export … from
    let j = k + 1;
    let typeOnly = false;
    if (isWord(at(j), "type") && (isPunct(at(j + 1), "{") || isPunct(at(j + 1), "*"))) { typeOnly = true; j++; }
    if (!(isPunct(at(j), "{") || isPunct(at(j), "*"))) continue;
    const hit = scanToFrom(j);
    if (hit !== null) {
      found.push({ specifier: hit[0], line: t.line, typeOnly, dynamic: false });
      k = hit[1];
    }
  }
  return found;
}

// --- resolution and rules ---------------------------------------------------------------------

function walk(dir, srcDir, out) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (dir === srcDir && SKIP_DIRS.includes(entry.name)) continue;
      if (entry.name === "node_modules" || entry.name.startsWith(".")) continue;
      walk(full, srcDir, out);
    } else if (entry.isFile() && /\.(m|c)?ts$/.test(entry.name) && !entry.name.endsWith(".d.ts")) {
      out.push(full);
    }
  }
  return out;
}

/** Resolves a relative specifier the way tsc's nodenext does for our sources. */
function resolveRelative(fromFile, specifier) {
  const base = resolve(dirname(fromFile), specifier);
  const candidates = [];
  if (/\.js$/.test(base)) candidates.push(base.replace(/\.js$/, ".ts"), base.replace(/\.js$/, ".tsx"));
  if (/\.mjs$/.test(base)) candidates.push(base.replace(/\.mjs$/, ".mts"));
  if (/\.cjs$/.test(base)) candidates.push(base.replace(/\.cjs$/, ".cts"));
  candidates.push(base, `${base}.ts`, join(base, "index.ts"));
  for (const c of candidates) {
    if (existsSync(c) && statSync(c).isFile()) return { path: c, exists: true };
  }
  // Unresolved (tsc reports that); still place it for the layer check.
  return { path: candidates[0], exists: false };
}

function layerOf(file, srcDir) {
  const rel = relative(srcDir, file);
  if (rel.startsWith("..")) return null; // outside src/
  const parts = rel.split(sep);
  return parts.length === 1 ? ROOT_LAYER : parts[0];
}

function packageMatches(specifier, name) {
  return specifier === name || specifier.startsWith(`${name}/`);
}

/** Returns a reason string when `from` may not import `to`, else null. */
function layerViolation(from, to) {
  if (from === to) return null;
  if (to === ROOT_LAYER) return `src/ root files are entry points; no layer imports them`;
  if (!LAYERS.includes(to)) return null; // the folder itself is reported, once per file in it
  if (from === ROOT_LAYER) return null;
  if (!LAYERS.includes(from)) return null; // reported once per file instead
  if (FORBIDDEN[from]?.includes(to)) return `${from} must not import ${to}`;
  const allowed = ONLY_IMPORTED_BY[to];
  if (allowed !== undefined && !allowed.includes(from)) {
    return `${to} may be imported only by ${allowed.join(", ")}`;
  }
  if (SHARED_LAYERS.includes(to)) return null;
  if (LAYERS.indexOf(to) < LAYERS.indexOf(from)) {
    return `${from} sits below ${to}; imports point down (${LAYERS.join(" > ")})`;
  }
  return null;
}

// --- cycles -----------------------------------------------------------------------------------

/** Tarjan's strongly connected components (iterative). graph: Map<node, Set<node>>. */
function stronglyConnected(graph) {
  let index = 0;
  const idx = new Map();
  const low = new Map();
  const onStack = new Set();
  const stack = [];
  const components = [];
  for (const start of graph.keys()) {
    if (idx.has(start)) continue;
    const work = [[start, [...graph.get(start)][Symbol.iterator]()]];
    idx.set(start, index); low.set(start, index); index++;
    stack.push(start); onStack.add(start);
    while (work.length > 0) {
      const frame = work[work.length - 1];
      const [v, it] = frame;
      const step = it.next();
      if (!step.done) {
        const w = step.value;
        if (!graph.has(w)) continue;
        if (!idx.has(w)) {
          idx.set(w, index); low.set(w, index); index++;
          stack.push(w); onStack.add(w);
          work.push([w, [...graph.get(w)][Symbol.iterator]()]);
        } else if (onStack.has(w)) {
          low.set(v, Math.min(low.get(v), idx.get(w)));
        }
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1][0];
        low.set(parent, Math.min(low.get(parent), low.get(v)));
      }
      if (low.get(v) === idx.get(v)) {
        const comp = [];
        let w;
        do { w = stack.pop(); onStack.delete(w); comp.push(w); } while (w !== v);
        components.push(comp);
      }
    }
  }
  return components;
}

/** Shortest cycle through `node` inside `members` (BFS), as [node, …, node]. */
function shortestCycle(graph, node, members) {
  const prev = new Map();
  const queue = [node];
  const seen = new Set([node]);
  while (queue.length > 0) {
    const v = queue.shift();
    for (const w of graph.get(v) ?? []) {
      if (!members.has(w)) continue;
      if (w === node) {
        const chain = [];
        for (let x = v; x !== node; x = prev.get(x)) chain.push(x);
        return [node, ...chain.reverse(), node];
      }
      if (!seen.has(w)) { seen.add(w); prev.set(w, v); queue.push(w); }
    }
  }
  return null;
}

/**
 * A small covering set of cycles: for each tangle (SCC), the shortest cycle through each file
 * that no cycle printed so far passes through. Every file on a cycle appears at least once,
 * without enumerating the (possibly exponential) set of all elementary cycles.
 */
function findCycles(graph) {
  const cycles = [];
  for (const comp of stronglyConnected(graph)) {
    const members = new Set(comp);
    const selfLoop = comp.length === 1 && graph.get(comp[0])?.has(comp[0]);
    if (comp.length === 1 && !selfLoop) continue;
    const covered = new Set();
    for (const node of [...comp].sort()) {
      if (covered.has(node)) continue;
      const cycle = shortestCycle(graph, node, members);
      if (cycle === null) continue;
      cycle.forEach((f) => covered.add(f));
      cycles.push({ cycle, tangle: comp.length });
    }
  }
  return cycles;
}

// --- main -------------------------------------------------------------------------------------

function main() {
  const { root, list } = parseArgs(process.argv.slice(2));
  const srcDir = join(root, "src");
  if (!existsSync(srcDir)) {
    process.stderr.write(`check-imports: no src/ under ${root}\n`);
    process.exit(2);
  }
  const show = (file) => relative(root, file).split(sep).join("/");

  const files = walk(srcDir, srcDir, []).sort();
  const graph = new Map(files.map((f) => [f, new Set()]));
  const typeOnlyEdges = new Set(); // "from\0to" where every import between them is type-only
  const runtimeEdges = new Set();
  const violations = [];
  let importCount = 0;

  for (const file of files) {
    const fromLayer = layerOf(file, srcDir);
    if (fromLayer !== ROOT_LAYER && !LAYERS.includes(fromLayer)) {
      violations.push({
        where: show(file),
        what: `is in src/${fromLayer}/, which is not in the layer table`,
        why: "add the folder to LAYERS in scripts/check-imports.mjs, in its place in the order",
      });
    }
    const imports = findImports(tokenize(readFileSync(file, "utf8")));
    for (const imp of imports) {
      importCount++;
      if (list) {
        const kind = imp.dynamic ? "dynamic" : imp.typeOnly ? "type" : "static";
        process.stdout.write(`${show(file)}:${imp.line}\t${kind}\t${imp.specifier}\n`);
      }
      const where = `${show(file)}:${imp.line}`;
      if (imp.specifier.startsWith(".")) {
        const target = resolveRelative(file, imp.specifier);
        const toLayer = layerOf(target.path, srcDir);
        if (toLayer === null) continue; // outside src/ (package.json and the like)
        const why = layerViolation(fromLayer, toLayer);
        if (why !== null) {
          violations.push({ where, what: `imports ${show(target.path)}${imp.typeOnly ? " (type-only)" : ""}`, why });
        }
        if (target.exists && graph.has(target.path)) {
          if (imp.typeOnly && !CYCLES_INCLUDE_TYPE_ONLY) continue;
          graph.get(file).add(target.path);
          const key = `${file}\0${target.path}`;
          if (imp.typeOnly) typeOnlyEdges.add(key);
          else runtimeEdges.add(key);
        }
        continue;
      }
      for (const rule of RESTRICTED_PACKAGES) {
        if (packageMatches(imp.specifier, rule.name) && !rule.layers.includes(fromLayer)) {
          violations.push({
            where,
            what: `imports "${imp.specifier}"`,
            why: `only ${rule.layers.map((l) => `src/${l}/`).join(", ")} may import ${rule.name}`,
          });
        }
      }
    }
  }

  const cycles = findCycles(graph);
  const edgeLabel = (a, b) => {
    const key = `${a}\0${b}`;
    return typeOnlyEdges.has(key) && !runtimeEdges.has(key) ? " -(type)-> " : " -> ";
  };

  if (cycles.length === 0 && violations.length === 0) {
    process.stdout.write(
      `check-imports: ok — ${files.length} files, ${importCount} imports, no cycles, layer rules hold\n`,
    );
    return;
  }

  const lines = [];
  lines.push(`check-imports: ${cycles.length} import cycle(s), ${violations.length} layer violation(s) in ${show(srcDir)}/`);
  if (cycles.length > 0) {
    lines.push("", "Import cycles (break each by moving the shared part down a layer or into its own file):");
    for (const { cycle, tangle } of cycles) {
      let text = show(cycle[0]);
      for (let k = 1; k < cycle.length; k++) text += edgeLabel(cycle[k - 1], cycle[k]) + show(cycle[k]);
      lines.push(`  ${text}${tangle > cycle.length - 1 ? `   [tangle of ${tangle} files]` : ""}`);
    }
  }
  if (violations.length > 0) {
    lines.push("", `Layer rules (top to bottom: ${LAYERS.join(" > ")}; shared: ${SHARED_LAYERS.join(", ")}):`);
    for (const v of violations) lines.push(`  ${v.where}  ${v.what}\n      ${v.why}`);
  }
  process.stderr.write(`${lines.join("\n")}\n`);
  process.exit(1);
}

main();
