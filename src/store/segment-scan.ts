/**
 * Reads a segment file record by record and classifies what it finds: valid records (prefix,
 * trailer and body CRCs all match), bad records in the middle (lengths readable, contents not:
 * skipped and reported), and where the valid data ends (a zero or unreadable prefix, or a record
 * running past EOF or failing its checks as the very last thing in the file, is a torn tail).
 * Read-only: deciding to truncate or re-index is recovery.ts's job.
 */
import { open } from "node:fs/promises";
import { crc32 } from "node:zlib";
import { decodePrefix, decodeTrailer, PREFIX_BYTES, recordLength } from "./record-format.js";
import type { Manifest } from "./types.js";

const SCAN_CHUNK_BYTES = 1024 * 1024;

export interface ScannedRecord {
  readonly off: number;
  readonly bodyLen: number;
  readonly trailerLen: number;
  readonly bodyCrc: number;
  readonly manifest: Manifest;
}

export interface BadRecord {
  readonly off: number;
  readonly reason: string;
  /** Present when the trailer could still be decoded. */
  readonly manifest: Manifest | undefined;
}

export interface ScanResult {
  readonly fileSize: number;
  readonly records: ScannedRecord[];
  readonly bad: BadRecord[];
  /** End of the last valid or skipped record: everything from here on is a torn tail. */
  readonly validEnd: number;
  readonly tailReason: string | undefined;
}

export async function scanSegment(path: string, from: number): Promise<ScanResult> {
  const handle = await open(path, "r");
  try {
    const { size } = await handle.stat();
    const records: ScannedRecord[] = [];
    const bad: BadRecord[] = [];
    const prefixBuf = Buffer.alloc(PREFIX_BYTES);
    const chunk = Buffer.allocUnsafe(SCAN_CHUNK_BYTES);
    let p = Math.min(from, size);
    let tailReason: string | undefined;

    const readExactly = async (buf: Buffer, length: number, position: number): Promise<boolean> => {
      let filled = 0;
      while (filled < length) {
        const { bytesRead } = await handle.read(buf, filled, length - filled, position + filled);
        if (bytesRead === 0) return false;
        filled += bytesRead;
      }
      return true;
    };

    while (p < size) {
      if (size - p < PREFIX_BYTES || !(await readExactly(prefixBuf, PREFIX_BYTES, p))) {
        tailReason = "a partial record prefix";
        break;
      }
      const decoded = decodePrefix(prefixBuf);
      if (decoded.state === "zero") {
        tailReason = "a zero prefix (the body was still streaming in)";
        break;
      }
      if (decoded.state === "invalid") {
        tailReason = `an unreadable prefix (${decoded.reason})`;
        break;
      }
      const { bodyLen, trailerLen, bodyCrc, trailerCrc } = decoded.prefix;
      const end = p + recordLength(bodyLen, trailerLen);
      if (end > size) {
        tailReason = `a record running ${end - size} bytes past the end of the file`;
        break;
      }
      const isLast = end === size;
      const trailer = Buffer.allocUnsafe(trailerLen);
      let problem: string | undefined;
      let manifest: Manifest | undefined;
      if (!(await readExactly(trailer, trailerLen, p + PREFIX_BYTES + bodyLen))) {
        problem = "trailer unreadable";
      } else if (crc32(trailer) !== trailerCrc) {
        problem = "trailer CRC mismatch";
      } else {
        try {
          manifest = decodeTrailer(trailer);
          if (manifest.size !== bodyLen) problem = `trailer size ${manifest.size} differs from body length ${bodyLen}`;
        } catch (error) {
          problem = `trailer invalid: ${(error as Error).message}`;
        }
      }
      if (!problem) {
        let crc = 0;
        let position = p + PREFIX_BYTES;
        let remaining = bodyLen;
        while (remaining > 0) {
          const want = Math.min(remaining, chunk.length);
          if (!(await readExactly(chunk, want, position))) {
            problem = "body unreadable";
            break;
          }
          crc = crc32(chunk.subarray(0, want), crc);
          position += want;
          remaining -= want;
        }
        if (!problem && crc >>> 0 !== bodyCrc) problem = "body CRC mismatch";
      }
      if (problem) {
        if (isLast) {
          tailReason = `a last record with ${problem}`;
          break;
        }
        bad.push({ off: p, reason: problem, manifest });
      } else if (manifest) {
        records.push({ off: p, bodyLen, trailerLen, bodyCrc, manifest });
      }
      p = end;
    }
    return { fileSize: size, records, bad, validEnd: tailReason === undefined ? size : p, tailReason };
  } finally {
    await handle.close();
  }
}
