/**
 * Runs the `openssl` CLI with execFile (never a shell, so no argument is ever interpreted) and
 * turns its failures into CertsError: OPENSSL_MISSING when the binary is not found,
 * OPENSSL_FAILED with openssl's own stderr otherwise.
 */
import { execFile } from "node:child_process";
import { CertsError } from "./errors.js";

export interface OpensslOptions {
  /** The openssl binary; default "openssl" looked up on PATH. */
  opensslBin?: string;
  /** Working directory of the child; default the current one. */
  cwd?: string;
  signal?: AbortSignal;
}

/** Runs `openssl ...args` and resolves with its stdout. */
export function runOpenssl(args: readonly string[], options: OpensslOptions = {}): Promise<string> {
  const bin = options.opensslBin ?? "openssl";
  return new Promise((resolve, reject) => {
    execFile(
      bin,
      args,
      {
        encoding: "utf8",
        maxBuffer: 4 * 1024 * 1024,
        windowsHide: true,
        ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
        ...(options.signal !== undefined ? { signal: options.signal } : {}),
      },
      (err, stdout, stderr) => {
        if (err === null) {
          resolve(stdout);
          return;
        }
        if ((err as NodeJS.ErrnoException).code === "ENOENT") {
          reject(
            new CertsError(
              "OPENSSL_MISSING",
              `the openssl command was not found (tried ${JSON.stringify(bin)}); install OpenSSL 3 (e.g. "apt-get install openssl") and retry`,
              { cause: err },
            ),
          );
          return;
        }
        const detail = stderr.trim().split("\n").slice(-6).join(" / ");
        reject(
          new CertsError("OPENSSL_FAILED", `openssl ${args[0] ?? ""} failed: ${detail !== "" ? detail : err.message}`, {
            cause: err,
          }),
        );
      },
    );
  });
}
