/**
 * Machine state files on the host: written atomically (temporary file, fsync, rename, directory fsync), so a
 * state file is complete or absent; read with positioned reads, so RAM chunks can be loaded on first touch.
 */
import { closeSync, fstatSync, fsyncSync, openSync, readSync, renameSync, rmSync, writevSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { StateFile, type ByteSource } from '../machine/snapshot/format.js';
import { openablePath, takeHeldDescriptor } from '../storage/path-alias.js';

/** Writes `parts` (encodeStateFile's output) to `path` atomically. */
export function writeStateFileAtomic(path: string, parts: Uint8Array[]): number {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}`);
  const fd = openSync(openablePath(tmp), 'wx', 0o600);
  let written = 0;
  try {
    // writev takes at most IOV_MAX (1024) buffers per call.
    for (let i = 0; i < parts.length; i += 512) {
      const batch = parts.slice(i, i + 512);
      const want = batch.reduce((n, p) => n + p.length, 0);
      let done = writevSync(fd, batch);
      while (done < want) {
        // A short write: finish this batch buffer by buffer.
        let skip = done;
        const rest: Uint8Array[] = [];
        for (const p of batch) {
          if (skip >= p.length) skip -= p.length;
          else {
            rest.push(p.subarray(skip));
            skip = 0;
          }
        }
        done += writevSync(fd, rest);
      }
      written += want;
    }
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(openablePath(tmp), { force: true });
    throw err;
  }
  closeSync(fd);
  renameSync(openablePath(tmp), openablePath(path));
  syncDir(dirname(path));
  return written;
}

export function syncDir(dir: string): void {
  const fd = openSync(openablePath(dir), 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** An open state file; `close()` when no chunk will be read any more (all loaded, or the machine is gone). */
export interface OpenStateFile {
  file: StateFile;
  size: number;
  close(): void;
}

export function openStateFile(path: string): OpenStateFile {
  const fd = takeHeldDescriptor(path) ?? openSync(openablePath(path), 'r');
  let open = true;
  try {
    const size = fstatSync(fd).size;
    const source: ByteSource = {
      size,
      read(offset, length, into) {
        if (!open) throw new Error(`${path} was closed`);
        // Into the caller's range (linear RAM), or an owned buffer: a RAM chunk read either way becomes guest memory
        // without another copy.
        const buf = into && into.length >= length ? into.subarray(0, length) : new Uint8Array(new ArrayBuffer(length));
        let done = 0;
        while (done < length) {
          const n = readSync(fd, buf, done, length - done, offset + done);
          if (n === 0) break;
          done += n;
        }
        return done === length ? buf : buf.subarray(0, done);
      },
    };
    const file = new StateFile(source);
    return {
      file,
      size,
      close() {
        if (open) closeSync(fd);
        open = false;
      },
    };
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}
