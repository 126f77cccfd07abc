// Linux 6.1 from Debian's linux-source-6.1, cross-built for riscv64 as a flat `Image`.
// Configuration: allnoconfig (a small base, so it builds in minutes on 2 cores), our fragment merged on
// top with the kernel's own merge_config.sh, then olddefconfig to settle dependencies; then every `=y`
// of the fragment is checked to really be set.
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { haveCommand } from '../exec.js';
import { parseKconfig, unmetRequirements } from '../kconfig.js';
import type { Recipe } from '../recipe.js';
import { guestsCacheDir } from '../paths.js';

const SOURCE_TARBALL = '/usr/src/linux-source-6.1.tar.xz';
const FRAGMENT = 'typevisor.config';

export class KernelConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`kernel .config does not meet guests/linux/${FRAGMENT}:\n  ${problems.join('\n  ')}`);
    this.name = 'KernelConfigError';
  }
}

export const linux: Recipe = {
  name: 'linux',
  revision: 1,
  deps: [],
  packages: [
    'linux-source-6.1',
    'gcc-riscv64-linux-gnu',
    'binutils-riscv64-linux-gnu',
    'gcc',
    'libc6-dev',
    'make',
    'bc',
    'bison',
    'flex',
    'xz-utils',
    'perl',
  ],
  keyPackages: ['linux-source-6.1', 'gcc-riscv64-linux-gnu', 'binutils-riscv64-linux-gnu'],
  inputs: ['linux'],
  outputs: ['Image', 'config', 'System.map'],
  async build(ctx) {
    ctx.log(`unpack ${SOURCE_TARBALL}`);
    await ctx.run('tar', ['-xf', SOURCE_TARBALL]);
    const src = join(ctx.work, 'linux-source-6.1');
    // ccache (when installed) makes rebuilds after a small config change or a killed build fast.
    const ccache = haveCommand('ccache');
    const make = (...targets: string[]) =>
      ctx.run(
        'make',
        [
          'ARCH=riscv',
          'CROSS_COMPILE=riscv64-linux-gnu-',
          ...(ccache ? ['CC=ccache riscv64-linux-gnu-gcc'] : []),
          `-j${ctx.jobs}`,
          ...targets,
        ],
        {
          cwd: src,
          env: {
            KBUILD_BUILD_USER: 'typevisor',
            KBUILD_BUILD_HOST: 'typevisor',
            CCACHE_DIR: join(guestsCacheDir(), 'ccache'),
            CCACHE_BASEDIR: ctx.work,
          },
        },
      );
    const fragment = join(ctx.recipeDir, FRAGMENT);
    await make('allnoconfig');
    await ctx.run('scripts/kconfig/merge_config.sh', ['-m', '.config', fragment], {
      cwd: src,
      env: { ARCH: 'riscv', CROSS_COMPILE: 'riscv64-linux-gnu-' },
    });
    await make('olddefconfig');
    const problems = unmetRequirements(
      parseKconfig(readFileSync(fragment, 'utf8')),
      parseKconfig(readFileSync(join(src, '.config'), 'utf8')),
    );
    if (problems.length) throw new KernelConfigError(problems);
    ctx.log('configuration verified; compiling');
    await make('Image');
    copyFileSync(join(src, 'arch/riscv/boot/Image'), join(ctx.out, 'Image'));
    copyFileSync(join(src, '.config'), join(ctx.out, 'config'));
    copyFileSync(join(src, 'System.map'), join(ctx.out, 'System.map'));
  },
};
