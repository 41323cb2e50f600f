/** Damage to a node's segment files, as a failing disk would do it (tests of the read checks). */
import { open, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";

/** Where `body` starts in a data dir's segment files (its first 64 bytes must be unique). */
export async function locateBody(dataDir: string, body: Uint8Array): Promise<{ path: string; at: number }> {
  const dir = join(dataDir, "segments");
  for (const f of (await readdir(dir)).filter((n) => n.endsWith(".seg"))) {
    const at = (await readFile(join(dir, f))).indexOf(body.subarray(0, 64));
    if (at >= 0) return { path: join(dir, f), at };
  }
  throw new Error("body not found in any segment");
}

/** Flips one bit (0x20) of the byte at `at`. */
export async function flipByte(path: string, at: number): Promise<void> {
  const h = await open(path, "r+");
  try {
    const one = Buffer.alloc(1);
    await h.read(one, 0, 1, at);
    one[0] = (one[0] ?? 0) ^ 0x20;
    await h.write(one, 0, 1, at);
  } finally {
    await h.close();
  }
}
