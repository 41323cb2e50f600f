/**
 * TLS material read from PEM files, and a watcher that notices when the files change so a
 * listener can swap its secure context without a restart (certificate rotation). Directories
 * are watched rather than files: tools replace certificates by writing a new file and
 * renaming it over the old one, and a watch on the old inode would never fire again.
 */
import { watch, type FSWatcher } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import { createSecureContext, type SecureContextOptions } from "node:tls";
import { TransportError } from "./errors.js";

/** PEM files of a listener: its certificate chain and key, and (peer listener) the mesh CA. */
export interface TlsFiles {
  certFile: string;
  keyFile: string;
  /** Trust anchors for client certificates; replaces Node's public CA list. */
  caFile?: string;
}

export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
}

/** Reads the files; a missing or unreadable one is a TransportError naming it. */
export async function readTlsFiles(files: TlsFiles): Promise<TlsMaterial> {
  const read = async (f: string): Promise<Buffer> => {
    try {
      return await readFile(f);
    } catch (e) {
      throw new TransportError("TLS_FILES", `cannot read ${f}`, { cause: e });
    }
  };
  const [cert, key, ca] = await Promise.all([read(files.certFile), read(files.keyFile), files.caFile !== undefined ? read(files.caFile) : undefined]);
  return ca !== undefined ? { cert, key, ca } : { cert, key };
}

/**
 * Builds a secure context from `options` to prove the material is usable (parsable PEM, key
 * matching certificate) before a listener adopts it; throws TransportError otherwise.
 */
export function assertUsableTls(options: SecureContextOptions, what: string): void {
  try {
    createSecureContext(options);
  } catch (e) {
    throw new TransportError("TLS_FILES", `${what} is not usable (is the key the certificate's, and are both PEM?)`, { cause: e });
  }
}

export interface TlsWatcher {
  close(): void;
}

/**
 * Calls `onChange` (debounced by `debounceMs`, so a cert+key pair written back to back
 * reloads once) whenever one of the files is created, replaced or written.
 */
export function watchTlsFiles(files: TlsFiles, onChange: () => void, debounceMs: number): TlsWatcher {
  const paths = [files.certFile, files.keyFile, ...(files.caFile !== undefined ? [files.caFile] : [])].map((p) => resolve(p));
  const byDir = new Map<string, Set<string>>();
  for (const p of paths) {
    const names = byDir.get(dirname(p)) ?? new Set<string>();
    names.add(basename(p));
    byDir.set(dirname(p), names);
  }
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const fire = (): void => {
    if (closed) return;
    clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      if (!closed) onChange();
    }, debounceMs);
    timer.unref();
  };
  const watchers: FSWatcher[] = [];
  for (const [dir, names] of byDir) {
    const w = watch(dir, { persistent: false }, (_event, filename) => {
      // filename can be null on some platforms: then any change in the dir counts.
      if (filename === null || names.has(filename.toString())) fire();
    });
    w.on("error", () => {
      // The directory went away; nothing to watch. A later manual reloadTls() still works.
      w.close();
    });
    watchers.push(w);
  }
  return {
    close(): void {
      closed = true;
      clearTimeout(timer);
      for (const w of watchers) w.close();
    },
  };
}
