// The initramfs: the shared userland as a gzip-compressed newc cpio, with /init running typevisor-init.
// /dev/console is in the archive because the kernel opens it for PID 1 before anything mounts devtmpfs.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { entriesFromDir, S_IFCHR, writeNewc } from '../cpio.js';
import type { Recipe } from '../recipe.js';
import { stageUserland } from './userland.js';

export const initramfs: Recipe = {
  name: 'initramfs',
  revision: 1,
  deps: ['busybox'],
  packages: [],
  keyPackages: [],
  inputs: ['userland'],
  outputs: ['initramfs.cpio.gz'],
  async build(ctx) {
    const root = join(ctx.work, 'root');
    stageUserland(ctx.depDir('busybox'), ctx.recipesDir, root, ['/init']);
    const entries = entriesFromDir(root);
    entries.push({ path: 'dev/console', mode: S_IFCHR | 0o600, rdev: { major: 5, minor: 1 } });
    const cpio = writeNewc(entries);
    ctx.log(`cpio: ${entries.length} entries, ${cpio.length} bytes`);
    writeFileSync(join(ctx.out, 'initramfs.cpio.gz'), gzipSync(cpio, { level: 9 }));
  },
};
