/**
 * Scratch space for openssl runs, created inside the destination directory so finished files
 * can be moved into place with rename(2) (atomic, and never across filesystems). Readers of
 * DIR/NAME.pem therefore see either the old file or the new one, never half of one.
 */
import { chmod, mkdir, mkdtemp, rename, rm } from "node:fs/promises";
import { join } from "node:path";

/** Runs `fn` with a fresh private scratch directory inside `dir` (created 0700), then removes it. */
export async function withWorkDir<T>(dir: string, fn: (work: string) => Promise<T>): Promise<T> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const work = await mkdtemp(join(dir, ".granary-certs-"));
  try {
    return await fn(work);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Sets `mode` on `from` and renames it to `to` (replacing `to`). */
export async function installFile(from: string, to: string, mode: number): Promise<void> {
  await chmod(from, mode);
  await rename(from, to);
}
