/**
 * Command-line options as a table: each flag has a type, a default, help text, and an
 * environment variable GRANARY_<FLAG>. Precedence: flag, then environment, then the JSON
 * config file (--config), then the default. Help text is generated from the same table.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { parseBytes } from "../util/bytes.js";

export type OptionKind = "string" | "boolean" | "int" | "bytes" | "list";

export interface OptionSpec {
  readonly name: string;
  readonly kind: OptionKind;
  readonly help: string;
  readonly default?: string;
  readonly short?: string;
  /** Not read from GRANARY_* (e.g. -o). */
  readonly noEnv?: boolean;
}

export type OptionValues = Record<string, string | boolean | number | string[] | undefined>;

export class UsageError extends Error {
  readonly code = "USAGE";
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export function envName(flag: string): string {
  return `GRANARY_${flag.toUpperCase().replace(/-/g, "_")}`;
}

function convert(spec: OptionSpec, raw: string | boolean | string[], source: string): string | boolean | number | string[] {
  const where = `--${spec.name} (${source})`;
  switch (spec.kind) {
    case "boolean":
      if (typeof raw === "boolean") return raw;
      if (/^(1|true|yes|on)$/i.test(String(raw))) return true;
      if (/^(0|false|no|off)$/i.test(String(raw))) return false;
      throw new UsageError(`${where}: expected true or false, got "${String(raw)}"`);
    case "int": {
      const n = Number(raw);
      if (!Number.isSafeInteger(n) || n < 0) throw new UsageError(`${where}: expected a whole number, got "${String(raw)}"`);
      return n;
    }
    case "bytes":
      try {
        return typeof raw === "number" ? raw : parseBytes(String(raw));
      } catch (e) {
        throw new UsageError(`${where}: ${(e as Error).message}`);
      }
    case "list":
      return (Array.isArray(raw) ? raw : [String(raw)]).flatMap((v) => v.split(",")).map((v) => v.trim()).filter(Boolean);
    case "string":
      return String(raw);
  }
}

export interface ParsedCommand {
  readonly values: OptionValues;
  readonly positionals: string[];
}

/** Parses argv against the table, then fills from env, the config file and defaults. */
export function parseCommand(argv: readonly string[], specs: readonly OptionSpec[], env = process.env): ParsedCommand {
  const options: Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }> = {};
  for (const s of specs) {
    options[s.name] = {
      type: s.kind === "boolean" ? "boolean" : "string",
      ...(s.short ? { short: s.short } : {}),
      ...(s.kind === "list" ? { multiple: true } : {}),
    };
  }
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const fromFlags = parsed.values as Record<string, string | boolean | string[] | undefined>;
  let fromFile: Record<string, unknown> = {};
  const configPath = (fromFlags["config"] as string | undefined) ?? env[envName("config")];
  if (configPath && specs.some((s) => s.name === "config")) {
    try {
      fromFile = JSON.parse(readFileSync(configPath, "utf8")) as Record<string, unknown>;
    } catch (e) {
      throw new UsageError(`--config ${configPath}: ${(e as Error).message}`);
    }
    for (const k of Object.keys(fromFile)) {
      if (!specs.some((s) => s.name === k)) throw new UsageError(`--config ${configPath}: unknown setting "${k}"`);
    }
  }
  const values: OptionValues = {};
  for (const s of specs) {
    const flag = fromFlags[s.name];
    const envValue = s.noEnv ? undefined : env[envName(s.name)];
    const fileValue = fromFile[s.name];
    if (flag !== undefined) values[s.name] = convert(s, flag, "flag");
    else if (envValue !== undefined && envValue !== "") values[s.name] = convert(s, envValue, envName(s.name));
    else if (fileValue !== undefined) values[s.name] = convert(s, fileValue as string, "config file");
    else if (s.default !== undefined) values[s.name] = convert(s, s.default, "default");
  }
  return { values, positionals: parsed.positionals };
}

export function helpText(usage: string, summary: string, specs: readonly OptionSpec[]): string {
  const rows = specs.map((s) => {
    const flag = `${s.short ? `-${s.short}, ` : "    "}--${s.name}${s.kind === "boolean" ? "" : ` ${s.kind === "bytes" ? "SIZE" : s.kind === "int" ? "N" : "VALUE"}`}`;
    const extra = [s.default !== undefined ? `default ${s.default}` : "", s.noEnv ? "" : `env ${envName(s.name)}`].filter(Boolean).join("; ");
    return `  ${flag.padEnd(48)} ${s.help}${extra ? ` (${extra})` : ""}`;
  });
  return `Usage: ${usage}\n\n${summary}\n\nOptions:\n${rows.join("\n")}\n`;
}
