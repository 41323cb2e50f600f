/** What the numbers were measured on: CPU, cores, memory, kernel, Node, filesystem, git commit, load. */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import * as os from "node:os";

function sh(cmd: string, args: string[], cwd?: string): string {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", cwd, stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "";
  }
}

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"));
    if (m) return m[1]!.trim();
  } catch {
    // not Linux
  }
  return os.cpus()[0]?.model ?? "unknown";
}

export interface MachineInfo {
  cpuModel: string;
  cpuFlagsOfNote: string[];
  cores: number;
  memoryGiB: number;
  kernel: string;
  node: string;
  openssl: string;
  nghttp2: string;
  tmpFilesystem: string;
  gitCommit: string;
  /** Paths with uncommitted changes when the run started (the build includes them). */
  gitDirty: string[];
  loadAverageAtStart: number[];
}

export function machineInfo(repoRoot: string, tmpDir: string): MachineInfo {
  let flags: string[] = [];
  try {
    const f = /^flags\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1]?.split(/\s+/) ?? [];
    flags = ["aes", "vaes", "sha_ni", "avx2", "avx512f"].filter((x) => f.includes(x));
  } catch {
    // not Linux
  }
  const dfLine = sh("df", ["-PT", tmpDir]).split("\n")[1] ?? "";
  const df = dfLine.split(/\s+/);
  return {
    cpuModel: cpuModel(),
    cpuFlagsOfNote: flags,
    cores: os.availableParallelism(),
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    openssl: process.versions.openssl ?? "",
    nghttp2: process.versions.nghttp2 ?? "",
    tmpFilesystem: df.length >= 7 ? `${df[0]} ${df[1]} mounted on ${df[6]} (${tmpDir})` : tmpDir,
    // BENCH_GIT_COMMIT: the run is from a clean export of that commit (git archive), not a checkout.
    gitCommit: process.env["BENCH_GIT_COMMIT"] ?? sh("git", ["rev-parse", "HEAD"], repoRoot),
    gitDirty: process.env["BENCH_GIT_COMMIT"] !== undefined ? [] : sh("git", ["status", "--porcelain"], repoRoot).split("\n").filter((l) => l.trim() !== ""),
    loadAverageAtStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}
