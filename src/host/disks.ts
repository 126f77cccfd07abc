/**
 * Creating a VM's disk files. qcow2 overlays over a base image are the default for image-based VMs: creating
 * one writes a few KiB of metadata, so a VM is ready in milliseconds whatever the base image's size.
 * The qcow2 writer is src/storage's createDisk; a raw disk is a sparse file.
 */
import { closeSync, ftruncateSync, openSync } from 'node:fs';

export interface NewDisk {
  path: string;
  format: 'raw' | 'qcow2';
  /** Virtual size; for an overlay it defaults to the backing file's size. */
  sizeBytes?: number;
  backingFile?: string;
  backingFormat?: 'raw' | 'qcow2';
}

type StorageModule = {
  createDisk?: (
    path: string,
    opts: { format: 'raw' | 'qcow2'; size?: number; backingFile?: string; backingFormat?: 'raw' | 'qcow2' },
  ) => Promise<unknown>;
};

let storage: StorageModule | undefined;
async function storageModule(): Promise<StorageModule> {
  if (!storage) {
    try {
      storage = (await import(new URL('../storage/index.js', import.meta.url).href)) as StorageModule;
    } catch {
      storage = {};
    }
  }
  return storage;
}

export class DiskCreateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DiskCreateError';
  }
}

export async function createDiskFile(d: NewDisk): Promise<void> {
  if (d.format === 'raw') {
    if (d.backingFile) throw new DiskCreateError('a raw disk cannot have a backing image; use qcow2');
    if (!d.sizeBytes) throw new DiskCreateError('a raw disk needs a size');
    const fd = openSync(d.path, 'wx', 0o600);
    try {
      ftruncateSync(fd, d.sizeBytes);
    } finally {
      closeSync(fd);
    }
    return;
  }
  const mod = await storageModule();
  if (typeof mod.createDisk !== 'function')
    throw new DiskCreateError('qcow2 disks need src/storage (createDisk), which this build lacks');
  await mod.createDisk(d.path, {
    format: 'qcow2',
    size: d.sizeBytes,
    backingFile: d.backingFile,
    backingFormat: d.backingFile ? (d.backingFormat ?? 'raw') : undefined,
  });
}
