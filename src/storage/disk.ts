/**
 * Opening and creating disk images: format probing, backing-chain policy, and the two formats.
 * This is the entry point the rest of typevisor uses (virtio-blk, `typevisor disk`).
 */
import { realpathSync } from 'node:fs';
import { realpath, open as openFile } from 'node:fs/promises';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import { StorageError, type BlockBackend } from './backend.js';
import { ioError, type ImageFile } from './file.js';
import { openablePath, pathAlias } from './path-alias.js';
import { RawImage } from './raw.js';
import { Qcow2Image } from './qcow2/image.js';
import { createQcow2 } from './qcow2/create.js';
import { QCOW_MAGIC } from './qcow2/format.js';

export type DiskFormat = 'raw' | 'qcow2';

export interface OpenDiskOptions {
  /** The caller's word is final: 'raw' is never probed, so a guest cannot turn its raw disk into a qcow2 header. */
  format?: DiskFormat;
  readOnly?: boolean;
  /** 'forbid' refuses any image that names a backing file (use for untrusted images). Default 'allow'. */
  backingFiles?: 'allow' | 'forbid';
  /** When set, every backing file must resolve (after symlinks) inside one of these directories. */
  backingDirs?: string[];
  /** Longest backing chain accepted (default 16). */
  maxBackingDepth?: number;
  /** Internal: open for `disk check -r` (see Qcow2OpenOptions.forRepair). */
  forRepair?: boolean;
  /**
   * Open the images and read their metadata with synchronous calls, on the calling thread: for a VM's own
   * thread, which runs nothing else while it opens its disks (a boot, a restore), and where a trip through a
   * loaded host's I/O thread pool per step made a backing chain's open cost 40-170 ms instead of ~1 ms.
   */
  syncOpen?: boolean;
}

export interface CreateDiskOptions {
  format: DiskFormat;
  /** Bytes; for qcow2 with a backing file it defaults to the backing file's size. */
  size?: number;
  backingFile?: string;
  backingFormat?: DiskFormat;
  clusterSize?: number;
  lazyRefcounts?: boolean;
  refcountBits?: number;
}

const DEFAULT_MAX_BACKING_DEPTH = 16;

/** Looks at the first bytes: qcow2 magic or raw. */
export async function probeFormat(path: string): Promise<DiskFormat> {
  let fh;
  try {
    fh = await openFile(openablePath(path), 'r');
  } catch (err) {
    throw ioError(err, `cannot open ${path}`);
  }
  try {
    const buf = new Uint8Array(4);
    const { bytesRead } = await fh.read(buf, 0, 4, 0);
    return bytesRead === 4 ? formatOfMagic(buf) : 'raw';
  } finally {
    await fh.close();
  }
}

function formatOfMagic(first4: Uint8Array): DiskFormat {
  return new DataView(first4.buffer, first4.byteOffset, 4).getUint32(0) === QCOW_MAGIC ? 'qcow2' : 'raw';
}

/** The error openDisk gives for an image naming a backing file where backing files are forbidden. */
function backingForbidden(path: string, name: string): StorageError {
  return new StorageError('UNSUPPORTED', `${path} names a backing file (${name}), and backing files are forbidden here`);
}

/**
 * openDisk for an image already open as a file (a MemoryFile in tests and fuzzing): probes the format the same
 * way unless `format` is given, and refuses any backing file (a file without a directory has nowhere to resolve
 * one), as openDisk does with `backingFiles: 'forbid'`. Takes ownership of `file`.
 */
export async function openImageFile(file: ImageFile, opts: { format?: DiskFormat } = {}): Promise<BlockBackend> {
  let format = opts.format;
  if (format === undefined) {
    const head = new Uint8Array(4);
    try {
      await file.read(0, head);
      format = (await file.size()) >= 4 ? formatOfMagic(head) : 'raw';
    } catch (err) {
      await file.close().catch(() => undefined);
      throw err;
    }
  }
  if (format === 'raw') return RawImage.openFile(file);
  return Qcow2Image.openFile(file, {
    readOnly: file.readOnly,
    openBacking: async (name) => {
      throw backingForbidden(file.path, name);
    },
  });
}

export function openDisk(path: string, opts: OpenDiskOptions = {}): Promise<BlockBackend> {
  return openChain(path, opts, []);
}

async function openChain(path: string, opts: OpenDiskOptions, chain: string[]): Promise<BlockBackend> {
  let real: string;
  try {
    real = pathAlias(path)?.real ?? (opts.syncOpen ? realpathSync(path) : await realpath(path));
  } catch (err) {
    throw ioError(err, `cannot open ${path}`);
  }
  if (chain.includes(real)) {
    throw new StorageError('BAD_IMAGE', `backing chain loops: ${[...chain, real].join(' -> ')}`);
  }
  const maxDepth = opts.maxBackingDepth ?? DEFAULT_MAX_BACKING_DEPTH;
  if (chain.length > maxDepth) throw new StorageError('BAD_IMAGE', `backing chain is deeper than ${maxDepth}`);
  const format = opts.format ?? (await probeFormat(real));
  if (format === 'raw') return RawImage.open(real, opts.readOnly ?? false, opts.syncOpen);
  if (format !== 'qcow2') throw new StorageError('UNSUPPORTED', `unknown disk format '${String(format)}'`);
  return Qcow2Image.open(real, {
    readOnly: opts.readOnly ?? false,
    forRepair: opts.forRepair,
    syncOpen: opts.syncOpen,
    openBacking: async (name, backingFormat) => {
      if (opts.backingFiles === 'forbid') throw backingForbidden(path, name);
      const target = resolve(dirname(real), name);
      if (opts.backingDirs) await checkAllowed(target, opts.backingDirs);
      if (backingFormat !== null && backingFormat !== 'raw' && backingFormat !== 'qcow2') {
        throw new StorageError('UNSUPPORTED', `backing file format '${backingFormat}' is not supported`);
      }
      // Backing files are only ever read; without a recorded format they are probed (as QEMU does).
      return openChain(
        target,
        { ...opts, forRepair: false, readOnly: true, format: (backingFormat as DiskFormat | null) ?? undefined },
        [...chain, real],
      );
    },
  });
}

async function checkAllowed(target: string, dirs: string[]): Promise<void> {
  let real: string;
  try {
    real = await realpath(target);
  } catch (err) {
    throw ioError(err, `cannot open backing file ${target}`);
  }
  for (const d of dirs) {
    const rel = relative(await realpath(d).catch(() => resolve(d)), real);
    if (rel !== '' && !rel.startsWith('..' + sep) && rel !== '..' && !isAbsolute(rel)) return;
  }
  throw new StorageError('UNSUPPORTED', `backing file ${real} is outside the allowed directories`);
}

export async function createDisk(path: string, opts: CreateDiskOptions): Promise<void> {
  if (opts.format === 'raw') {
    if (opts.backingFile) throw new StorageError('UNSUPPORTED', 'raw images cannot have a backing file');
    if (opts.size === undefined) throw new StorageError('UNSUPPORTED', 'a size is required');
    return RawImage.create(path, opts.size);
  }
  if (opts.format !== 'qcow2') throw new StorageError('UNSUPPORTED', `unknown disk format '${String(opts.format)}'`);
  let size = opts.size;
  let backingFormat = opts.backingFormat;
  if (opts.backingFile) {
    // Open the backing file as the new image will (relative to its directory) to validate it and learn its size.
    const target = resolve(dirname(resolve(path)), opts.backingFile);
    const backing = await openDisk(target, { readOnly: true, format: backingFormat });
    try {
      size ??= backing.size;
      backingFormat ??= backing.format as DiskFormat;
    } finally {
      await backing.close();
    }
  }
  if (size === undefined) throw new StorageError('UNSUPPORTED', 'a size is required');
  return createQcow2(path, {
    size,
    clusterSize: opts.clusterSize,
    backingFile: opts.backingFile,
    backingFormat,
    lazyRefcounts: opts.lazyRefcounts,
    refcountBits: opts.refcountBits,
  });
}
