// Firmware straight from Debian: OpenSBI (fw_jump/fw_dynamic for QEMU-virt-like "generic" platforms)
// and U-Boot built for S-mode on qemu riscv64 (runs after OpenSBI, loads a kernel like a real board).
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Recipe } from '../recipe.js';

const OPENSBI_DIR = '/usr/lib/riscv64-linux-gnu/opensbi/generic';
const UBOOT_DIR = '/usr/lib/u-boot/qemu-riscv64_smode';

/** Output name → file shipped by the Debian packages. */
const FILES: Record<string, string> = {
  'fw_jump.bin': join(OPENSBI_DIR, 'fw_jump.bin'),
  'fw_jump.elf': join(OPENSBI_DIR, 'fw_jump.elf'),
  'fw_dynamic.bin': join(OPENSBI_DIR, 'fw_dynamic.bin'),
  'fw_dynamic.elf': join(OPENSBI_DIR, 'fw_dynamic.elf'),
  'u-boot.bin': join(UBOOT_DIR, 'u-boot.bin'),
  'u-boot.elf': join(UBOOT_DIR, 'uboot.elf'),
};

export const firmware: Recipe = {
  name: 'firmware',
  revision: 1,
  deps: [],
  packages: ['opensbi', 'u-boot-qemu'],
  keyPackages: ['opensbi', 'u-boot-qemu'],
  inputs: [],
  outputs: Object.keys(FILES),
  async build(ctx) {
    for (const [name, from] of Object.entries(FILES)) {
      ctx.log(`copy ${from}`);
      copyFileSync(from, join(ctx.out, name));
    }
  },
};
