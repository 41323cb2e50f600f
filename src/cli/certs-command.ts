/**
 * `granary certs init | issue`: a private dev CA and node certificates for the mesh's mTLS.
 */
import { initCa, issueCert } from "../certs/dev-pki.js";
import { helpText, parseCommand, type OptionSpec, UsageError } from "./options.js";

const INIT_OPTIONS: OptionSpec[] = [
  { name: "dir", kind: "string", help: "folder for ca.pem and ca-key.pem (created when absent)", noEnv: true },
  { name: "force", kind: "boolean", help: "overwrite an existing CA", noEnv: true },
  { name: "help", kind: "boolean", short: "h", help: "show this help", noEnv: true },
];
const ISSUE_OPTIONS: OptionSpec[] = [
  { name: "dir", kind: "string", help: "folder holding the CA; NODE.pem and NODE-key.pem are written there", noEnv: true },
  { name: "name", kind: "string", help: "node name (1-63 of [a-z0-9-]); the identity is spiffe://granary/node/NAME", noEnv: true },
  { name: "san", kind: "list", help: "extra DNS name or IP address (repeatable); localhost and 127.0.0.1 are always added", noEnv: true },
  { name: "days", kind: "int", help: "validity in days (default 90)", noEnv: true },
  { name: "help", kind: "boolean", short: "h", help: "show this help", noEnv: true },
];

export async function certsCommand(argv: readonly string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === "init") {
    const { values } = parseCommand(rest, INIT_OPTIONS);
    if (values["help"]) {
      process.stdout.write(helpText("granary certs init --dir DIR", "Creates a private dev CA (EC P-256) as DIR/ca.pem and DIR/ca-key.pem.", INIT_OPTIONS));
      return 0;
    }
    const dir = values["dir"] as string | undefined;
    if (!dir) throw new UsageError("granary certs init needs --dir DIR");
    const out = await initCa({ dir, force: Boolean(values["force"]) });
    process.stdout.write(`${out.certFile}\n${out.keyFile}\n`);
    return 0;
  }
  if (sub === "issue") {
    const { values } = parseCommand(rest, ISSUE_OPTIONS);
    if (values["help"]) {
      process.stdout.write(helpText("granary certs issue --dir DIR --name NODE [--san NAME-OR-IP ...]", "Issues a node certificate signed by the CA in DIR, for both server and client use on the peer plane.", ISSUE_OPTIONS));
      return 0;
    }
    const dir = values["dir"] as string | undefined;
    const name = values["name"] as string | undefined;
    if (!dir || !name) throw new UsageError("granary certs issue needs --dir DIR and --name NODE");
    const out = await issueCert({ dir, name, sans: (values["san"] as string[] | undefined) ?? [], ...(values["days"] === undefined ? {} : { days: values["days"] as number }) });
    process.stdout.write(`${out.certFile}\n${out.keyFile}\n`);
    return 0;
  }
  throw new UsageError("usage: granary certs init --dir DIR | granary certs issue --dir DIR --name NODE [--san NAME-OR-IP ...]");
}
