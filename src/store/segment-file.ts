/**
 * Segment files on disk: naming, creation (with the directory fsync that makes a new file's
 * name durable), and the writable handle of an active segment. Owns positional writes and the
 * truncation of an active segment's unsynced tail; it never truncates a sealed segment (the
 * store only holds an ActiveSegment for segments that are not sealed).
 */
import { constants as fsConstants, writeSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { Failpoints } from "../util/failpoints.js";
import { GroupSync } from "./group-sync.js";

const SEGMENT_NAME_RE = /^(\d{8,10})\.seg$/;
/** Writes up to this size are made synchronously (page cache, tens of microseconds). */
export const SYNC_WRITE_MAX_BYTES = 256 * 1024;

export function segmentFileName(id: number): string {
  return `${String(id).padStart(8, "0")}.seg`;
}

export function segmentPath(segmentsDir: string, id: number): string {
  return join(segmentsDir, segmentFileName(id));
}

/** The segment id of a file name, or undefined for files that are not segments. */
export function parseSegmentFileName(name: string): number | undefined {
  const match = SEGMENT_NAME_RE.exec(name);
  if (!match?.[1]) return undefined;
  const id = Number(match[1]);
  return Number.isSafeInteger(id) && id > 0 ? id : undefined;
}

/** fsync a directory so entries created or removed in it survive a crash. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export async function writeFully(handle: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, position + done);
    if (bytesWritten <= 0) throw new Error(`write returned ${bytesWritten}`);
    done += bytesWritten;
  }
}

/**
 * The writable end of a segment. Exactly one put at a time appends to it (the lane owner), so
 * `size` (the end of everything written, including a record still streaming in) is only changed
 * by that owner, and the owner may cut back the tail it wrote and has not had synced.
 */
export class ActiveSegment {
  readonly id: number;
  readonly path: string;
  size: number;
  readonly syncer: GroupSync;
  /** Set when a write path failed in a way that leaves the tail unknown; the lane drops it. */
  failed: Error | undefined;
  readonly #handle: FileHandle;
  #closed = false;

  private constructor(id: number, path: string, handle: FileHandle, size: number, failpoints: Failpoints | undefined) {
    this.id = id;
    this.path = path;
    this.#handle = handle;
    this.size = size;
    this.syncer = new GroupSync({
      syncedTo: size,
      currentEnd: () => this.size,
      // "store.segment.datasync": a test injects the EIO a failing disk returns here.
      datasync: failpoints
        ? async () => {
            await failpoints.hit("store.segment.datasync", { segment: id });
            await this.#handle.datasync();
          }
        : () => this.#handle.datasync(),
      label: `segment ${segmentFileName(id)}`,
    });
  }

  /** Creates a new empty segment file and makes its directory entry durable. */
  static async create(segmentsDir: string, id: number, failpoints?: Failpoints): Promise<ActiveSegment> {
    const path = segmentPath(segmentsDir, id);
    const handle = await open(path, "wx+", 0o644);
    try {
      await syncDirectory(segmentsDir);
    } catch (error) {
      await handle.close();
      throw error;
    }
    return new ActiveSegment(id, path, handle, 0, failpoints);
  }

  /** Reopens an existing unsealed segment (already scanned and synced) to append after `size`. */
  static async reopen(segmentsDir: string, id: number, size: number, failpoints?: Failpoints): Promise<ActiveSegment> {
    const path = segmentPath(segmentsDir, id);
    const handle = await open(path, "r+");
    return new ActiveSegment(id, path, handle, size, failpoints);
  }

  async write(bytes: Uint8Array, position: number): Promise<void> {
    if (bytes.length <= SYNC_WRITE_MAX_BYTES) {
      // Small writes go straight to the page cache from this thread: through the libuv pool
      // they would queue behind the segments' fdatasyncs (4 pool threads), and a lane that
      // cannot write while its segment syncs cannot batch records into the next fdatasync.
      let done = 0;
      while (done < bytes.length) {
        const n = writeSync(this.#handle.fd, bytes, done, bytes.length - done, position + done);
        if (n <= 0) throw new Error(`write returned ${n}`);
        done += n;
      }
    } else {
      await writeFully(this.#handle, bytes, position);
    }
    if (position + bytes.length > this.size) this.size = position + bytes.length;
  }

  /** Cuts the unsynced tail back to `to` (the start of the owner's failed record). */
  async truncate(to: number): Promise<void> {
    this.syncer.noteTruncate(to);
    this.size = to;
    await this.#handle.truncate(to);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.syncer.idle();
    await this.#handle.close();
  }
}
