/**
 * Named guest images a VM can be created from. `default` is the project's built guest (src/guests); other
 * images are folders $HOME/images/<name>/ holding image.json with paths relative to that folder.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { HostError } from './errors.js';
import { isValidVmName } from './home.js';

export interface GuestImage {
  name: string;
  kernel: string;
  initrd?: string;
  /** Root filesystem disk image: VMs get a thin qcow2 overlay over it. */
  rootfs?: string;
  rootfsFormat: 'raw' | 'qcow2';
  /** Command line when booting with the initrd. */
  cmdline?: string;
  /** Command line when the root filesystem is the VM's first disk (overlay of `rootfs`). */
  rootCmdline?: string;
  /** Console text meaning "booted". */
  bootMarker?: string;
  /**
   * M-mode firmware (OpenSBI) for images that boot like a real machine: `kernel` is then the firmware's payload
   * (U-Boot), which finds the OS kernel on the disk itself. Absent: the kernel boots directly.
   */
  firmware?: string;
  /** What the image holds, for people: e.g. 'Debian GNU/Linux 13 (trixie)'. */
  os?: string;
}

/** The Debian image built by `typevisor guest build debian`. */
export const DEBIAN_IMAGE = 'debian-riscv64';

/** The guests' console is the UART (as `typevisor run` boots them). */
const DEFAULT_CMDLINE = 'console=ttyS0';

type ArtifactsModule = { guestArtifacts?: () => unknown; ROOTFS_CMDLINE?: string };

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

function fileOrUndefined(p: string | undefined): string | undefined {
  return p && existsSync(p) && statSync(p).isFile() ? p : undefined;
}

/** Adapts whatever src/guests returns (paths of kernel, initramfs, rootfs, marker) to a GuestImage. */
export function imageFromArtifacts(name: string, raw: unknown): GuestImage {
  if (typeof raw !== 'object' || raw === null) throw new HostError('IMAGE_NOT_FOUND', `image '${name}': no artifacts`);
  const a = raw as Record<string, unknown>;
  const kernel = fileOrUndefined(str(a.kernel) ?? str(a.kernelPath) ?? str(a.image));
  if (!kernel) throw new HostError('IMAGE_NOT_FOUND', `image '${name}' has no kernel built (run 'typevisor guest build')`);
  const rootfs = fileOrUndefined(str(a.rootfs) ?? str(a.rootfsPath) ?? str(a.disk));
  const rootfsFormat = str(a.rootfsFormat) === 'qcow2' ? 'qcow2' : 'raw';
  const marker = str(a.marker) ?? str(a.consoleMarker) ?? str(a.bootMarker);
  return {
    name,
    kernel,
    initrd: fileOrUndefined(str(a.initramfs) ?? str(a.initrd)),
    rootfs,
    rootfsFormat,
    cmdline: str(a.cmdline) ?? str(a.append) ?? DEFAULT_CMDLINE,
    rootCmdline: str(a.rootCmdline) ?? `${DEFAULT_CMDLINE} root=/dev/vda rw`,
    bootMarker: marker,
  };
}

/** The built OpenSBI (fw_jump) and U-Boot that boot an image from its own disk. */
async function debianBootChain(): Promise<{ fwJump: string; uboot: string }> {
  const mod = (await import(new URL('../guests/index.js', import.meta.url).href)) as {
    guestArtifacts: () => { fwJump: string; ubootSmode: string };
  };
  const a = mod.guestArtifacts();
  return { fwJump: a.fwJump, uboot: a.ubootSmode };
}

/** The built Debian image: OpenSBI and U-Boot from the firmware guest, the disk from the debian guest. */
async function debianImage(): Promise<GuestImage> {
  type DebianModule = { debianArtifacts?: () => { disk: string; fwJump: string; uboot: string; os: string; marker: string } };
  let artifacts;
  try {
    const mod = (await import(new URL('../guests/index.js', import.meta.url).href)) as DebianModule;
    artifacts = mod.debianArtifacts!();
  } catch (err) {
    throw new HostError('IMAGE_NOT_FOUND', `the ${DEBIAN_IMAGE} image is not built: ${(err as Error).message}`);
  }
  return {
    name: DEBIAN_IMAGE,
    kernel: artifacts.uboot,
    firmware: artifacts.fwJump,
    rootfs: artifacts.disk,
    rootfsFormat: 'qcow2',
    // U-Boot reads the kernel command line from the disk's extlinux.conf.
    cmdline: '',
    rootCmdline: '',
    bootMarker: artifacts.marker,
    os: artifacts.os,
  };
}

export async function resolveImage(name: string, imagesDir: string): Promise<GuestImage> {
  if (name === DEBIAN_IMAGE) return debianImage();
  if (name === 'default') {
    let mod: ArtifactsModule;
    try {
      mod = (await import(new URL('../guests/index.js', import.meta.url).href)) as ArtifactsModule;
    } catch {
      throw new HostError('IMAGE_NOT_FOUND', 'the default image is not available in this build (src/guests missing)');
    }
    if (typeof mod.guestArtifacts !== 'function')
      throw new HostError('IMAGE_NOT_FOUND', 'src/guests exports no guestArtifacts()');
    let raw: unknown;
    try {
      raw = await mod.guestArtifacts();
    } catch (err) {
      throw new HostError('IMAGE_NOT_FOUND', `the default image is not built: ${(err as Error).message}`);
    }
    const image = imageFromArtifacts('default', raw);
    const rootCmdline = (raw as { rootCmdline?: unknown }).rootCmdline;
    const rootfsCmdline = (mod as { ROOTFS_CMDLINE?: unknown }).ROOTFS_CMDLINE;
    if (typeof rootCmdline !== 'string' && typeof rootfsCmdline === 'string')
      image.rootCmdline = `${DEFAULT_CMDLINE} ${rootfsCmdline}`;
    return image;
  }
  if (!isValidVmName(name)) throw new HostError('INVALID_NAME', `image name ${JSON.stringify(name)} is not [a-z0-9-]`);
  const dir = join(imagesDir, name);
  const file = join(dir, 'image.json');
  if (!existsSync(file)) throw new HostError('IMAGE_NOT_FOUND', `no image named '${name}'`);
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new HostError('IMAGE_NOT_FOUND', `image '${name}': bad image.json (${(err as Error).message})`);
  }
  const inDir = (p: unknown): string | undefined => {
    const s = str(p);
    if (!s) return undefined;
    const full = resolve(dir, s);
    // image.json may only point inside its own folder (or to absolute paths its owner wrote on purpose).
    if (!isAbsolute(s) && !full.startsWith(dir + '/')) return undefined;
    return full;
  };
  if (parsed.boot === 'firmware') {
    // The disk boots itself (U-Boot reads its boot config); firmware and U-Boot default to the built ones.
    const built = await debianBootChain().catch(() => undefined);
    const kernel = inDir(parsed.kernel) ?? built?.uboot;
    const firmware = inDir(parsed.firmware) ?? built?.fwJump;
    if (!kernel || !firmware)
      throw new HostError(
        'IMAGE_NOT_FOUND',
        `image '${name}' boots through firmware, which is not built (run 'typevisor guest build firmware')`,
      );
    return {
      ...imageFromArtifacts(name, { ...parsed, kernel, rootfs: inDir(parsed.rootfs) }),
      firmware,
      cmdline: '',
      rootCmdline: '',
      os: str(parsed.os),
    };
  }
  return {
    ...imageFromArtifacts(name, {
      ...parsed,
      kernel: inDir(parsed.kernel),
      initrd: inDir(parsed.initrd ?? parsed.initramfs),
      rootfs: inDir(parsed.rootfs),
    }),
    os: str(parsed.os),
  };
}
