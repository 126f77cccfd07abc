/**
 * The files a VM process opens while it still may (before it drops its privileges, drop-privileges.ts): the
 * kernel, initrd and firmware, held open read-only and read again through their descriptors at each boot (a guest
 * reboot names paths its uid may not reach; a restore reads none of them, so its start does not wait for them), and
 * every disk with its whole backing chain, handed to the first attach. Files opened later (a snapshot's new overlays, state files, the backing chain again) are opened
 * as the VM's uid through descriptors kept of its folder and of each base image outside it (HeldPaths), so no
 * directory above them needs to let the VM's uid pass.
 */
import { closeSync, constants, fstatSync, openSync, readSync, realpathSync } from 'node:fs';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { backingInfo } from '../host/layer-merge.js';
import type { BlockBackend } from '../storage/backend.js';
import type { PathAlias } from '../storage/path-alias.js';
import { openDisk } from '../storage/index.js';
import type { VmConfig } from './config.js';
import { ImageReadError, type ImageReader } from './machine-loop.js';

/** Largest boot image read through a held descriptor (the guest's RAM bounds what a boot can use anyway). */
const MAX_IMAGE_BYTES = 1 << 30;

export class PreopenedFiles {
  private constructor(
    private readonly images: Map<string, number>,
    private readonly disks: Map<string, BlockBackend>,
  ) {}

  /** Opens everything `config` names; on failure nothing stays open and the error says which file. */
  static async open(config: VmConfig): Promise<PreopenedFiles> {
    const images = new Map<string, number>();
    const disks = new Map<string, BlockBackend>();
    try {
      const named: [string, string | undefined][] = [
        ['firmware', config.firmware.kind === 'file' ? config.firmware.path : undefined],
        ['kernel', config.kernel],
        ['initrd', config.initrd],
      ];
      for (const [what, path] of named) {
        if (!path || images.has(path)) continue;
        try {
          images.set(path, openSync(path, 'r'));
        } catch (err) {
          throw new ImageReadError(what, path, err);
        }
      }
      for (const d of config.disks) {
        if (disks.has(d.path)) continue;
        disks.set(d.path, await openDisk(d.path, { format: d.format, readOnly: d.readOnly }));
      }
    } catch (err) {
      for (const fd of images.values()) closeSync(fd);
      await Promise.allSettled([...disks.values()].map((b) => b.close()));
      throw err;
    }
    return new PreopenedFiles(images, disks);
  }

  /** Reads a boot image opened before, whole, from its start (each boot reads it again). */
  readonly readImage: ImageReader = async (what, path) => {
    const fd = this.images.get(path);
    if (fd === undefined)
      throw new ImageReadError(what, path, new Error('it was not opened before the process dropped its privileges'));
    try {
      const size = fstatSync(fd).size;
      if (size > MAX_IMAGE_BYTES) throw new Error(`${size} bytes is more than ${MAX_IMAGE_BYTES}`);
      const bytes = new Uint8Array(size);
      let done = 0;
      while (done < size) {
        const n = readSync(fd, bytes, done, size - done, done);
        if (n === 0) throw new Error(`it ended at ${done} of ${size} bytes`);
        done += n;
      }
      return bytes;
    } catch (err) {
      throw err instanceof ImageReadError ? err : new ImageReadError(what, path, err);
    }
  };

  /** The disk opened for `path`, once: a later open of the same path (after a snapshot) goes to the file again. */
  takeDisk(path: string): BlockBackend | undefined {
    const b = this.disks.get(path);
    this.disks.delete(path);
    return b;
  }

  /** Closes the disks no attach took (the VM ended before it started). */
  async closeUnused(): Promise<void> {
    const left = [...this.disks.values()];
    this.disks.clear();
    await Promise.allSettled(left.map((b) => b.close()));
  }
}

const MAX_CHAIN = 17;

function inside(dir: string, path: string): boolean {
  const rel = relative(dir, path);
  return rel !== '' && !rel.startsWith('..' + sep) && rel !== '..' && !isAbsolute(rel);
}

/**
 * Descriptors of the VM's folder and of the base images its disks rest on outside it, opened while every path is
 * reachable; `alias` maps a path to /proc/self/fd/... (see src/storage/path-alias.ts). Base images are held read
 * only: the kernel checks the file's own mode when the process opens one again.
 */
export class HeldPaths {
  private constructor(
    private readonly dirs: { dir: string; fd: number }[],
    private readonly files: Map<string, { real: string; fd: number }>,
    private readonly once: Map<string, number>,
  ) {}

  /** `restoreFrom`: a state file to start from, which may be in another VM's folder (a running clone's source). */
  static open(vmDir: string, config: VmConfig, restoreFrom?: string): HeldPaths {
    const realDir = realpathSync(vmDir);
    const dirFd = openSync(realDir, constants.O_RDONLY | constants.O_DIRECTORY);
    const dirs = [{ dir: realDir, fd: dirFd }];
    if (resolve(vmDir) !== realDir) dirs.push({ dir: resolve(vmDir), fd: dirFd });
    const files = new Map<string, { real: string; fd: number }>();
    for (const d of config.disks) {
      let p: string | undefined = resolve(vmDir, d.path);
      for (let depth = 0; p && depth < MAX_CHAIN; depth++) {
        let real: string;
        try {
          real = realpathSync(p);
        } catch {
          break; // a missing file: the start reports it
        }
        if (!inside(realDir, real) && !files.has(real)) {
          const held = { real, fd: openSync(real, 'r') };
          files.set(real, held);
          files.set(p, held);
        }
        p = backingInfo(real)?.path;
      }
    }
    const once = new Map<string, number>();
    if (restoreFrom) {
      try {
        once.set(resolve(restoreFrom), openSync(resolve(restoreFrom), 'r'));
      } catch {
        /* missing: the restore reports it */
      }
    }
    return new HeldPaths(dirs, files, once);
  }

  /** The descriptor opened for a state file, once. */
  take(path: string): number | undefined {
    const abs = resolve(path);
    const fd = this.once.get(abs);
    this.once.delete(abs);
    return fd;
  }

  alias(path: string): PathAlias | undefined {
    const abs = resolve(path);
    const held = this.files.get(abs);
    if (held) return { real: held.real, open: `/proc/self/fd/${held.fd}` };
    for (const { dir, fd } of this.dirs)
      if (inside(dir, abs)) return { real: abs, open: `/proc/self/fd/${fd}/${relative(dir, abs)}` };
    if (this.dirs.some((d) => d.dir === abs)) return { real: abs, open: `/proc/self/fd/${this.dirs[0]!.fd}` };
    return undefined;
  }
}
