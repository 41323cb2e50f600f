/**
 * The `granary` command: dispatches subcommands, turns errors into one clear line on stderr
 * and an exit code (2 usage, 1 failure).
 */
import { ConfigError } from "../node/config.js";
import { causeChain } from "../util/cause-chain.js";
import { certsCommand } from "./certs-command.js";
import { devCommand } from "./dev-command.js";
import { describeRpcError, getCommand, kvCommand, putCommand, statCommand } from "./client-commands.js";
import { UsageError } from "./options.js";
import { serveCommand } from "./serve.js";
import { statusCommand } from "./status-command.js";

const USAGE = `Usage: granary <command> [options]

Commands:
  dev          start a local mTLS mesh            granary dev [--nodes 3] [--dir DIR]
  serve        run a node                         granary serve --data-dir DIR [--peers ...]
  status       show a node's status             granary status [--watch] [--json]
  put          upload files (CAS)                 granary put FILE...
  get          download a CAS artifact            granary get DIGEST [-o FILE]
  stat         look up CAS artifacts              granary stat DIGEST...
  kv put|get   action-cache style values          granary kv put KEY FILE | kv get KEY [-o FILE]
  certs        dev PKI for the mesh's mTLS        granary certs init --dir DIR | certs issue --dir DIR --name NODE

Run \`granary <command> --help\` for a command's options.
`;

const COMMANDS: Record<string, (argv: readonly string[]) => Promise<number>> = {
  serve: serveCommand,
  put: putCommand,
  get: getCommand,
  stat: statCommand,
  kv: kvCommand,
  certs: certsCommand,
  dev: devCommand,
  status: statusCommand,
};

async function main(argv: readonly string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === "help" || cmd === "--help" || cmd === "-h") {
    process.stdout.write(USAGE);
    return cmd === undefined ? 2 : 0;
  }
  const run = COMMANDS[cmd];
  if (!run) {
    process.stderr.write(`granary: unknown command "${cmd}"\n\n${USAGE}`);
    return 2;
  }
  try {
    return await run(rest);
  } catch (e) {
    if (e instanceof UsageError || e instanceof ConfigError) {
      process.stderr.write(`granary ${cmd}: ${e.message}\n`);
      return 2;
    }
    const rpc = describeRpcError(e);
    process.stderr.write(`granary ${cmd}: ${rpc ?? causeChain(e)}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
