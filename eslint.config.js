// Lint: type-aware rules that catch what tsc does not (floating promises above all), and the
// syntactic parts of STYLE.md (named exports only, no `export *`). Import cycles and the
// layer rules are checked by scripts/check-imports.mjs (also in `make lint`), not here.
import tseslint from "typescript-eslint";
import importX from "eslint-plugin-import-x";

// Node globals the plain-JS scripts use (no `globals` package among our dependencies).
const nodeGlobals = Object.fromEntries(
  [
    "process", "console", "Buffer", "URL", "URLSearchParams", "TextEncoder", "TextDecoder",
    "AbortController", "AbortSignal", "setTimeout", "clearTimeout", "setInterval",
    "clearInterval", "setImmediate", "queueMicrotask", "structuredClone", "performance",
  ].map((name) => [name, "readonly"]),
);

export default tseslint.config(
  { ignores: ["dist/**", "dist-bench/**", "test-artifacts/**", "chaos/results/**", "src/gen/**", "node_modules/**", "bench/results/**", "interop/**", "coverage/**"] },
  {
    files: ["**/*.ts"],
    extends: [tseslint.configs.base],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { "import-x": importX },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": ["error", { checksVoidReturn: { arguments: false } }],
      "@typescript-eslint/await-thenable": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/consistent-type-imports": "error",
      "no-console": "off",
    },
  },
  {
    files: ["src/**/*.ts"],
    rules: {
      // STYLE.md: named exports only, no `export *` (re-export by name so the surface is visible).
      "import-x/no-default-export": "error",
      "import-x/avoid-re-export-all": "error",
    },
  },
  {
    files: ["src/**/*.ts"],
    ignores: ["src/cli/**"],
    rules: { "no-console": "error" },
  },
  {
    // Our plain-JS entry points and tools: untyped, so only the rules that need no types.
    files: ["**/*.js", "**/*.mjs"],
    languageOptions: { ecmaVersion: 2023, sourceType: "module", globals: nodeGlobals },
    rules: {
      "no-undef": "error",
      "no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "prefer-const": "error",
      "no-var": "error",
      eqeqeq: ["error", "always"],
    },
  },
);
