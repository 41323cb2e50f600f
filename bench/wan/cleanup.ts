/**
 * Removes what dead WAN-lab runs left behind: every namespace named `gwan-<pid>-*` whose
 * <pid> is no longer alive (its processes are killed by pid first, which takes their links
 * and the delay line with them). Live runs are left alone.
 *
 * Usage (as root): node dist-bench/bench/wan/cleanup.js [--all]   (--all: live runs' too)
 */
import { listNamespaces, NS_PREFIX, removeNamespace } from "./netns.js";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

const all = process.argv.includes("--all");
let removed = 0;
for (const ns of listNamespaces(NS_PREFIX)) {
  const pid = Number(/^gwan-(\d+)-/.exec(ns)?.[1]);
  if (!all && Number.isInteger(pid) && pid !== process.pid && alive(pid)) continue;
  removeNamespace(ns);
  removed++;
  process.stdout.write(`removed ${ns}\n`);
}
process.stdout.write(`wan cleanup: ${removed} namespace(s) removed\n`);
