// The userland shared by the initramfs and the ext4 root: busybox with its applet links, plus the files
// under guests/userland (init, guest agent, /etc). Staged into a folder, then packed by each recipe.
import { chmodSync, copyFileSync, cpSync, lstatSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** The init program's path inside the images (also linked as /init and /sbin/init). */
export const INIT_PATH = '/sbin/typevisor-init';

const DIRS: Record<string, number> = {
  bin: 0o755,
  sbin: 0o755,
  usr: 0o755,
  'usr/bin': 0o755,
  'usr/sbin': 0o755,
  'usr/share': 0o755,
  etc: 0o755,
  proc: 0o555,
  sys: 0o555,
  dev: 0o755,
  tmp: 0o1777,
  run: 0o755,
  root: 0o700,
  mnt: 0o755,
  var: 0o755,
  'var/log': 0o755,
};

/** Fills `dest` with the guest userland; `initLinks` are extra paths that point at the init program. */
export function stageUserland(busyboxDir: string, recipesDir: string, dest: string, initLinks: readonly string[]): void {
  for (const [d, mode] of Object.entries(DIRS)) {
    mkdirSync(join(dest, d), { recursive: true });
    chmodSync(join(dest, d), mode);
  }
  cpSync(join(recipesDir, 'userland'), dest, { recursive: true });
  copyFileSync(join(busyboxDir, 'busybox'), join(dest, 'bin/busybox'));
  chmodSync(join(dest, 'bin/busybox'), 0o755);
  for (const link of initLinks) symlinkSync(INIT_PATH, join(dest, link.replace(/^\//, '')));
  // Applet links; a file we ship (e.g. /sbin/init) takes precedence over busybox's applet of that name.
  for (const raw of readFileSync(join(busyboxDir, 'busybox.links'), 'utf8').split('\n')) {
    const path = raw.trim().replace(/^\/+/, '');
    if (!path || path === 'bin/busybox') continue;
    const target = join(dest, path);
    if (present(target)) continue;
    mkdirSync(dirname(target), { recursive: true });
    symlinkSync('/bin/busybox', target);
  }
}

/** Whether anything (including a symlink whose absolute target only resolves inside the guest) is at path. */
function present(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}
