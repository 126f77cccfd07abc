/**
 * The files a VM process opens while it still may (before it drops its privileges, drop-privileges.ts): the
 * kernel, initrd and firmware bytes, kept for every boot of this process (a guest reboot or a restore reads them
 * again otherwise, by paths its uid may not reach), and every disk with its whole backing chain, handed to the
 * first attach. Files opened later (a snapshot's new overlays, state files) are opened by path as the VM's uid.
 */
import type { BlockBackend } from '../storage/backend.js';
import { openDisk } from '../storage/index.js';
import type { VmConfig } from './config.js';
import { loadBootImages, type BootImages } from './machine-runner.js';

export class PreopenedFiles {
  private constructor(
    readonly bootImages: BootImages,
    private readonly disks: Map<string, BlockBackend>,
  ) {}

  /** Opens everything `config` names; on failure nothing stays open and the error says which file. */
  static async open(config: VmConfig): Promise<PreopenedFiles> {
    const bootImages = await loadBootImages(config);
    const disks = new Map<string, BlockBackend>();
    try {
      for (const d of config.disks) {
        if (disks.has(d.path)) continue;
        disks.set(d.path, await openDisk(d.path, { format: d.format, readOnly: d.readOnly }));
      }
    } catch (err) {
      await Promise.allSettled([...disks.values()].map((b) => b.close()));
      throw err;
    }
    return new PreopenedFiles(bootImages, disks);
  }

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
