/**
 * One store per data directory: two writers appending to the same segment files would corrupt
 * them. A LOCK file holds the owner's pid; a lock whose pid is dead (a crashed or killed node) is
 * taken over. Within one process a set of open directories catches a second openStore.
 * Owns only the lock; it is advisory and assumes no two hosts share the directory.
 */
import { open, readFile, realpath, unlink } from "node:fs/promises";
import { join } from "node:path";
import { DataDirLockedError } from "./errors.js";

const openInThisProcess = new Set<string>();

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

export class DataDirLock {
  readonly #dir: string;
  readonly #path: string;
  #released = false;

  private constructor(dir: string) {
    this.#dir = dir;
    this.#path = join(dir, "LOCK");
  }

  static async acquire(dataDir: string): Promise<DataDirLock> {
    const dir = await realpath(dataDir);
    if (openInThisProcess.has(dir)) throw new DataDirLockedError(dataDir, process.pid);
    const lock = new DataDirLock(dir);
    openInThisProcess.add(dir);
    try {
      await lock.#take(dataDir);
    } catch (error) {
      openInThisProcess.delete(dir);
      throw error;
    }
    return lock;
  }

  async #take(shownDir: string): Promise<void> {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const handle = await open(this.#path, "wx", 0o644);
        try {
          await handle.writeFile(`${process.pid}\n`);
          await handle.sync();
        } finally {
          await handle.close();
        }
        return;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      }
      let holder = Number.NaN;
      try {
        holder = Number.parseInt(await readFile(this.#path, "utf8"), 10);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") continue;
        throw error;
      }
      // Our own pid with no open store here is a leftover of an earlier run (pid 1 in a container).
      if (Number.isSafeInteger(holder) && holder > 0 && holder !== process.pid && pidAlive(holder)) {
        throw new DataDirLockedError(shownDir, holder);
      }
      await unlink(this.#path).catch((error: unknown) => {
        if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
      });
    }
    throw new DataDirLockedError(shownDir, Number.NaN);
  }

  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    try {
      await unlink(this.#path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    } finally {
      openInThisProcess.delete(this.#dir);
    }
  }
}
