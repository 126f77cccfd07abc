/**
 * The images VMs are made from: the two built guests (`default`, the busybox guest; `debian-riscv64`) and images
 * imported into `<home>/images/<name>/` (image.json plus the files it names, copied in). An import is checked
 * before anything is written: the disk's header must parse (raw or qcow2, through src/storage), a kernel must be
 * a riscv64 Linux Image or ELF, and an image without a kernel must say it boots through firmware from its disk.
 */
import { copyFile, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { existsSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { writeJsonAtomic } from './atomic.js';
import { HostError } from './errors.js';
import { isValidVmName } from './home.js';
import { DEBIAN_IMAGE, resolveImage, type GuestImage } from './images.js';
import { isLinuxImage } from '../machine/loaders/image.js';
import { openDisk } from '../storage/index.js';
import type { BlockBackend } from '../storage/backend.js';

export const BUILTIN_IMAGES = ['default', DEBIAN_IMAGE] as const;

export interface ImageView {
  name: string;
  builtin: boolean;
  /** False for a built-in image whose guest is not built yet. */
  available: boolean;
  arch: 'riscv64';
  os?: string;
  /** How it boots: the kernel directly, or firmware (OpenSBI + U-Boot reading the disk's boot config). */
  boot: 'kernel' | 'firmware';
  disk?: { path: string; format: 'raw' | 'qcow2'; virtualBytes: number; fileBytes: number };
  kernel?: string;
  initrd?: string;
  firmware?: string;
  /** VMs created from it (their disks are overlays of its disk). */
  usedBy: string[];
  /** Why a built-in image is not available, and how to build it. */
  note?: string;
}

export interface ImportSpec {
  name: string;
  disk: string;
  /** Linux Image/ELF to boot directly; absent: the image boots through firmware (`boot: 'firmware'`). */
  kernel?: string;
  initrd?: string;
  cmdline?: string;
  /** OpenSBI-style M-mode firmware for firmware-booted images (default: the built OpenSBI with U-Boot). */
  firmware?: string;
  boot?: 'kernel' | 'firmware';
  os?: string;
  /** What the image says it is built for; anything but riscv64 is refused. */
  arch?: string;
}

const EM_RISCV = 243;
const ELFCLASS64 = 2;

/** What kind of riscv64 kernel a file is, or a HostError naming why it is none. */
async function checkKernel(path: string, what: string): Promise<void> {
  const fh = await open(path, 'r').catch((err: NodeJS.ErrnoException) => {
    throw new HostError('INVALID_CONFIG', `${what} ${path}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
  });
  try {
    const head = new Uint8Array(64);
    const { bytesRead } = await fh.read(head, 0, 64, 0);
    const dv = new DataView(head.buffer);
    if (bytesRead >= 20 && dv.getUint32(0) === 0x7f454c46) {
      if (head[4] !== ELFCLASS64 || dv.getUint16(18, true) !== EM_RISCV)
        throw new HostError(
          'INVALID_CONFIG',
          `${what} ${path} is an ELF for another architecture (machine ${dv.getUint16(18, true)}); typevisor runs riscv64`,
        );
      return;
    }
    if (bytesRead === 64 && isLinuxImage(head)) return;
    throw new HostError('INVALID_CONFIG', `${what} ${path} is neither a riscv64 Linux Image nor a riscv64 ELF`);
  } finally {
    await fh.close();
  }
}

/**
 * Why a disk cannot be an image, or undefined: it must hold whole sectors, and a disk that boots itself through
 * U-Boot needs a partition table (an MBR's 0x55AA signature, which a GPT's protective MBR also has).
 */
async function diskProblem(backend: BlockBackend, boot: 'kernel' | 'firmware'): Promise<string | undefined> {
  if (backend.size === 0 || backend.size % 512 !== 0)
    return `its size (${backend.size} bytes) is not a whole number of 512-byte sectors`;
  if (boot !== 'firmware') return undefined;
  const mbr = new Uint8Array(512);
  await backend.read(0, mbr);
  if (mbr[510] !== 0x55 || mbr[511] !== 0xaa)
    return 'it has no partition table (MBR or GPT), so U-Boot cannot boot it; import it with its --kernel instead';
  return undefined;
}

export class ImageStore {
  constructor(
    private readonly imagesDir: string,
    /** Names of VMs per image, from the registry. */
    private readonly usersOf: (image: string) => string[],
  ) {}

  async list(): Promise<ImageView[]> {
    const names = new Set<string>(BUILTIN_IMAGES);
    if (existsSync(this.imagesDir))
      for (const n of readdirSync(this.imagesDir)) if (existsSync(join(this.imagesDir, n, 'image.json'))) names.add(n);
    return Promise.all([...names].sort().map((n) => this.get(n)));
  }

  async get(name: string): Promise<ImageView> {
    const builtin = (BUILTIN_IMAGES as readonly string[]).includes(name);
    let image: GuestImage;
    try {
      image = await resolveImage(name, this.imagesDir);
    } catch (err) {
      if (builtin && err instanceof HostError && err.code === 'IMAGE_NOT_FOUND') {
        return {
          name,
          builtin,
          available: false,
          arch: 'riscv64',
          boot: name === DEBIAN_IMAGE ? 'firmware' : 'kernel',
          usedBy: this.usersOf(name),
          note: `not built: run 'typevisor image build ${name}'`,
        };
      }
      throw err;
    }
    let disk: ImageView['disk'];
    if (image.rootfs) {
      const backend = await openDisk(image.rootfs, { format: image.rootfsFormat, readOnly: true });
      try {
        disk = {
          path: image.rootfs,
          format: image.rootfsFormat,
          virtualBytes: backend.size,
          fileBytes: (await stat(image.rootfs)).blocks * 512,
        };
      } finally {
        await backend.close();
      }
    }
    return {
      name,
      builtin,
      available: true,
      arch: 'riscv64',
      os: image.os ?? (name === 'default' ? 'typevisor busybox guest (Linux 6.1)' : undefined),
      boot: image.firmware ? 'firmware' : 'kernel',
      disk,
      kernel: image.kernel,
      ...(image.initrd ? { initrd: image.initrd } : {}),
      ...(image.firmware ? { firmware: image.firmware } : {}),
      usedBy: this.usersOf(name),
    };
  }

  /** Checks everything, copies the files into a scratch folder, then renames it into place: all or nothing. */
  async import(spec: ImportSpec): Promise<ImageView> {
    if (!isValidVmName(spec.name))
      throw new HostError('INVALID_NAME', `image name ${JSON.stringify(spec.name)} must match [a-z0-9][a-z0-9-]*`);
    if ((BUILTIN_IMAGES as readonly string[]).includes(spec.name) || existsSync(join(this.imagesDir, spec.name)))
      throw new HostError('IMAGE_EXISTS', `an image named '${spec.name}' already exists`);
    if (spec.arch !== undefined && spec.arch !== 'riscv64')
      throw new HostError('INVALID_CONFIG', `unknown architecture '${spec.arch}': typevisor runs riscv64 images only`);
    const boot = spec.boot ?? (spec.kernel ? 'kernel' : 'firmware');
    if (boot === 'kernel' && !spec.kernel)
      throw new HostError(
        'INVALID_CONFIG',
        'a kernel-booted image needs a kernel (or say it boots through firmware from its disk)',
      );
    if (spec.kernel) await checkKernel(spec.kernel, 'kernel');
    let format: 'raw' | 'qcow2';
    let problem: string | undefined;
    try {
      const backend = await openDisk(spec.disk, { readOnly: true });
      try {
        format = backend.format === 'qcow2' ? 'qcow2' : 'raw';
        problem = await diskProblem(backend, boot);
      } finally {
        await backend.close();
      }
    } catch (err) {
      throw new HostError('INVALID_CONFIG', `disk ${spec.disk}: ${(err as Error).message}`);
    }
    if (problem) throw new HostError('INVALID_CONFIG', `disk ${spec.disk}: ${problem}`);
    if (spec.initrd)
      await stat(spec.initrd).catch(() => {
        throw new HostError('INVALID_CONFIG', `initrd ${spec.initrd}: no such file`);
      });
    await mkdir(this.imagesDir, { recursive: true, mode: 0o700 });
    const scratch = join(this.imagesDir, `.import-${spec.name}-${process.pid}`);
    await rm(scratch, { recursive: true, force: true });
    await mkdir(scratch);
    try {
      const diskFile = `disk.${format}`;
      await copyFile(spec.disk, join(scratch, diskFile));
      const record: Record<string, unknown> = { rootfs: diskFile, rootfsFormat: format, ...(spec.os ? { os: spec.os } : {}) };
      for (const [field, path] of [
        ['kernel', spec.kernel],
        ['initrd', spec.initrd],
        ['firmware', spec.firmware],
      ] as const) {
        if (!path) continue;
        const file = `${field}-${basename(path)}`;
        await copyFile(path, join(scratch, file));
        record[field] = file;
      }
      if (spec.cmdline !== undefined) record.rootCmdline = spec.cmdline;
      if (boot === 'firmware') record.boot = 'firmware';
      writeJsonAtomic(join(scratch, 'image.json'), record);
      await rename(scratch, join(this.imagesDir, spec.name));
    } catch (err) {
      await rm(scratch, { recursive: true, force: true });
      throw new HostError('STORAGE_ERROR', `importing '${spec.name}' failed: ${(err as Error).message}`);
    }
    return this.get(spec.name);
  }

  async remove(name: string): Promise<void> {
    if ((BUILTIN_IMAGES as readonly string[]).includes(name))
      throw new HostError('INVALID_STATE', `'${name}' is a built-in image; its files belong to the guest cache`);
    if (!isValidVmName(name) || !existsSync(join(this.imagesDir, name, 'image.json')))
      throw new HostError('IMAGE_NOT_FOUND', `no image named '${name}'`);
    const users = this.usersOf(name);
    if (users.length)
      throw new HostError('IMAGE_IN_USE', `image '${name}' backs the disks of ${users.join(', ')}; delete those VMs first`);
    await rm(join(this.imagesDir, name), { recursive: true, force: true });
  }
}
