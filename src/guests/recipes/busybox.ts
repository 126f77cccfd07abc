// A static riscv64 busybox from Debian's busybox source package (apt-get source, Debian patches applied),
// upstream defconfig plus guests/busybox/typevisor.config.
import { copyFileSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureSourceAvailable } from '../apt.js';
import { checkStaticRiscv64Elf } from '../elfcheck.js';
import { applyFragment, parseKconfig, unmetRequirements } from '../kconfig.js';
import type { Recipe } from '../recipe.js';

const FRAGMENT = 'typevisor.config';
const CROSS = 'CROSS_COMPILE=riscv64-linux-gnu-';

export const busybox: Recipe = {
  name: 'busybox',
  revision: 1,
  deps: [],
  packages: ['dpkg-dev', 'gcc-riscv64-linux-gnu', 'libc6-dev-riscv64-cross', 'gcc', 'make', 'bzip2', 'xz-utils'],
  keyPackages: ['gcc-riscv64-linux-gnu', 'libc6-dev-riscv64-cross'],
  keySources: ['busybox'],
  inputs: ['busybox'],
  outputs: ['busybox', 'busybox.links', 'config'],
  prepare(log) {
    ensureSourceAvailable('busybox', log);
  },
  async build(ctx) {
    ctx.log('apt-get source busybox');
    await ctx.run('apt-get', ['source', '-q', 'busybox']);
    const dir = readdirSync(ctx.work).find((f) => f.startsWith('busybox-') && statSync(join(ctx.work, f)).isDirectory());
    if (!dir) throw new Error('apt-get source busybox produced no busybox-* folder');
    const src = join(ctx.work, dir);
    await ctx.run('make', [CROSS, 'defconfig'], { cwd: src });
    const fragment = parseKconfig(readFileSync(join(ctx.recipeDir, FRAGMENT), 'utf8'));
    writeFileSync(join(src, '.config'), applyFragment(readFileSync(join(src, '.config'), 'utf8'), fragment));
    // oldconfig asks about options the fragment's changes uncovered; empty answers take the defaults.
    await ctx.run('make', [CROSS, 'oldconfig'], { cwd: src, input: '\n'.repeat(500) });
    const problems = unmetRequirements(fragment, parseKconfig(readFileSync(join(src, '.config'), 'utf8')));
    if (problems.length) throw new Error(`busybox .config does not meet guests/busybox/${FRAGMENT}:\n  ${problems.join('\n  ')}`);
    await ctx.run('make', [CROSS, `-j${ctx.jobs}`, 'busybox', 'busybox.links'], { cwd: src });
    checkStaticRiscv64Elf(readFileSync(join(src, 'busybox')));
    ctx.log('busybox is a static riscv64 ELF');
    copyFileSync(join(src, 'busybox'), join(ctx.out, 'busybox'));
    copyFileSync(join(src, 'busybox.links'), join(ctx.out, 'busybox.links'));
    copyFileSync(join(src, '.config'), join(ctx.out, 'config'));
  },
};
