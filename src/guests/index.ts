// The guest images other parts of typevisor boot: where they are (without building anything), and the
// console line the guest's init prints when it is ready. Build them with `typevisor guest build`.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { GuestCache } from './cache.js';
import { guestsCacheDir } from './paths.js';
import type { GuestName } from './recipe.js';
import { DEBIAN_IMAGE_FILE, DEBIAN_LOGIN_MARKER, DEBIAN_REPO_DIR } from './recipes/debian.js';

export { buildGuests, buildOrder, GuestBuildError, type BuildOptions, type BuildResult } from './build.js';
export { DEFAULT_GUESTS, GUEST_NAMES, isGuestName, type GuestName } from './recipe.js';
export { cacheRoot, guestsCacheDir } from './paths.js';

/** The one line the guests' init prints on the console once the system is up (before the shell prompt). */
export const GUEST_READY_MARKER = 'typevisor-guest: ready';

/** Kernel command line for the ext4 root image on the first virtio-blk disk. */
export const ROOTFS_CMDLINE = 'root=/dev/vda rw';

export interface GuestArtifacts {
  /** riscv64 Linux 6.1 flat `Image` (load at RAM base + 2 MiB; see Documentation/riscv/boot-image-header.rst). */
  kernel: string;
  /** The kernel's final .config. */
  kernelConfig: string;
  /** gzip'd newc cpio: busybox userland with /init. */
  initramfs: string;
  /** 64 MiB raw ext4 image with the same userland; boot with ROOTFS_CMDLINE. Copy it before writing to it. */
  rootfs: string;
  /** Debian OpenSBI, generic platform: fw_jump.bin / fw_dynamic.bin, plus their ELF versions. */
  fwJump: string;
  fwJumpElf: string;
  fwDynamic: string;
  fwDynamicElf: string;
  /** Debian U-Boot for qemu riscv64 in S-mode (u-boot.bin), plus its ELF. */
  ubootSmode: string;
  ubootSmodeElf: string;
  /** = GUEST_READY_MARKER. */
  marker: string;
}

export class GuestsNotBuiltError extends Error {
  constructor(readonly missing: readonly GuestName[]) {
    super(`guest images not built (${missing.join(', ')}): run \`typevisor guest build\``);
    this.name = 'GuestsNotBuiltError';
  }
}

const FILES = {
  kernel: ['linux', 'Image'],
  kernelConfig: ['linux', 'config'],
  initramfs: ['initramfs', 'initramfs.cpio.gz'],
  rootfs: ['rootfs', 'rootfs.ext4'],
  fwJump: ['firmware', 'fw_jump.bin'],
  fwJumpElf: ['firmware', 'fw_jump.elf'],
  fwDynamic: ['firmware', 'fw_dynamic.bin'],
  fwDynamicElf: ['firmware', 'fw_dynamic.elf'],
  ubootSmode: ['firmware', 'u-boot.bin'],
  ubootSmodeElf: ['firmware', 'u-boot.elf'],
} as const satisfies Record<Exclude<keyof GuestArtifacts, 'marker'>, readonly [GuestName, string]>;

/**
 * Absolute paths of the built guest artifacts (the entries the last `typevisor guest build` produced or
 * found). Builds nothing; throws GuestsNotBuiltError, which says to run `typevisor guest build`, when one
 * is missing. The cache location follows $TYPEVISOR_CACHE / $XDG_CACHE_HOME.
 */
export function guestArtifacts(env: NodeJS.ProcessEnv = process.env): GuestArtifacts {
  const cache = new GuestCache(guestsCacheDir(env));
  const dirs = new Map<GuestName, string>();
  const missing = new Set<GuestName>();
  const out: Record<string, string> = { marker: GUEST_READY_MARKER };
  for (const [field, [name, file]] of Object.entries(FILES)) {
    if (!dirs.has(name)) {
      const cur = cache.current(name);
      dirs.set(name, cur ? cache.entryDir(name, cur.hash) : '');
    }
    const path = dirs.get(name) ? join(dirs.get(name)!, file) : '';
    if (!path || !existsSync(path)) missing.add(name);
    out[field] = path;
  }
  if (missing.size) throw new GuestsNotBuiltError([...missing]);
  return out as unknown as GuestArtifacts;
}

export interface DebianArtifacts {
  /** The qcow2 disk: one ext4 partition with Debian, its kernel and /boot/extlinux/extlinux.conf. */
  disk: string;
  /** What boots it: OpenSBI (fw_jump) and U-Boot (S-mode) from the firmware guest. */
  fwJump: string;
  uboot: string;
  /** e.g. 'Debian GNU/Linux trixie, kernel 6.12.57+deb13-riscv64'. */
  os: string;
  /** Console text once the system is up (the login prompt on ttyS0). */
  marker: string;
  /** The build's folder (release.json). */
  dir: string;
  /** A flat apt repository (Packages and .debs) for tests: a small package and a newer kernel. */
  repo: string;
}

/** The Debian image (`typevisor guest build debian`); throws GuestsNotBuiltError when it is not built. */
export function debianArtifacts(env: NodeJS.ProcessEnv = process.env): DebianArtifacts {
  const cache = new GuestCache(guestsCacheDir(env));
  const entry = (name: GuestName) => {
    const cur = cache.current(name);
    return cur ? cache.entryDir(name, cur.hash) : undefined;
  };
  const deb = entry('debian');
  const fw = entry('firmware');
  const missing: GuestName[] = [];
  if (!deb || !existsSync(join(deb, DEBIAN_IMAGE_FILE))) missing.push('debian');
  if (!fw || !existsSync(join(fw, 'u-boot.bin'))) missing.push('firmware');
  if (missing.length) throw new GuestsNotBuiltError(missing);
  const release = JSON.parse(readFileSync(join(deb!, 'release.json'), 'utf8')) as { release?: string; kernel?: string };
  return {
    disk: join(deb!, DEBIAN_IMAGE_FILE),
    fwJump: join(fw!, 'fw_jump.bin'),
    uboot: join(fw!, 'u-boot.bin'),
    os: `Debian GNU/Linux ${release.release ?? '?'}, kernel ${release.kernel ?? '?'}`,
    marker: DEBIAN_LOGIN_MARKER,
    dir: deb!,
    repo: join(deb!, DEBIAN_REPO_DIR),
  };
}

/** True when guestArtifacts() would succeed. */
export function guestsBuilt(env: NodeJS.ProcessEnv = process.env): boolean {
  try {
    guestArtifacts(env);
    return true;
  } catch (err) {
    if (err instanceof GuestsNotBuiltError) return false;
    throw err;
  }
}
