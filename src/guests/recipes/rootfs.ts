// The ext4 root disk: the same userland, /sbin/init running typevisor-init (boot with root=/dev/vda rw).
// mke2fs -d copies a folder into the new filesystem without mounting anything; e2fsck -fn checks it.
import { join } from 'node:path';
import type { Recipe } from '../recipe.js';
import { stageUserland } from './userland.js';

/** Size of the root disk image; the guest can grow it with resize2fs after the host enlarges the disk. */
export const ROOTFS_SIZE_MIB = 64;

export const rootfs: Recipe = {
  name: 'rootfs',
  revision: 1,
  deps: ['busybox'],
  packages: ['e2fsprogs'],
  keyPackages: ['e2fsprogs'],
  inputs: ['userland'],
  outputs: ['rootfs.ext4'],
  async build(ctx) {
    const root = join(ctx.work, 'root');
    stageUserland(ctx.depDir('busybox'), ctx.recipesDir, root, ['/sbin/init']);
    const image = join(ctx.out, 'rootfs.ext4');
    await ctx.run('mke2fs', [
      '-q',
      '-F',
      '-t',
      'ext4',
      '-L',
      'typevisor-root',
      '-E',
      'root_owner=0:0',
      '-d',
      root,
      image,
      `${ROOTFS_SIZE_MIB}M`,
    ]);
    await ctx.run('e2fsck', ['-fn', image]);
  },
};
