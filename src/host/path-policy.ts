/**
 * Which host files an API client may name as a VM's kernel, initrd or firmware. Anyone holding the token could
 * otherwise make the daemon read any file it can read (/etc/shadow as a "kernel", then read back through the
 * guest). Files must lie in the daemon's image store (`<home>/images`), the built guest cache (the `default`
 * image), or a directory the daemon's owner allowed (`typevisor daemon --allow-path DIR`).
 *
 * A path is judged twice: as written (absolute, no `..` segment, under an allowed root, so a refused path is
 * never even resolved), then after realpath (so a symlink inside an allowed root that leads out is refused).
 * Nothing is opened before both checks pass.
 */
import { realpathSync, statSync } from 'node:fs';
import { isAbsolute, normalize, resolve, sep } from 'node:path';
import { HostError } from './errors.js';

export class PathPolicy {
  /** Allowed roots as configured (normalised); resolved through symlinks at each check (they may appear later). */
  private readonly roots: readonly string[];

  constructor(roots: readonly string[]) {
    this.roots = [...new Set(roots.map((r) => stripSep(resolve(r))))];
  }

  /** The allowed directories, for messages and `typevisor host`. */
  get allowed(): readonly string[] {
    return this.roots;
  }

  /**
   * Checks a file named in a request and returns its real path (what the VM config records, so a symlink swapped
   * later cannot redirect it). Throws HostError PATH_NOT_ALLOWED (403) for a path outside the allowed roots,
   * with `..`, or a symlink leading out; INVALID_PATH (400) for a relative path or something not a regular file.
   */
  check(what: string, p: string): string {
    if (!isAbsolute(p)) throw new HostError('INVALID_PATH', `${what} path must be absolute, got ${JSON.stringify(p)}`);
    if (p.split('/').includes('..')) {
      throw new HostError('PATH_NOT_ALLOWED', `${what} path ${JSON.stringify(p)} contains '..': name the file directly`);
    }
    const lexical = normalize(p);
    if (!within(lexical, this.roots)) throw this.outside(what, p);
    let real: string;
    try {
      real = realpathSync(lexical);
    } catch {
      throw new HostError('INVALID_PATH', `${what} ${p} does not exist`);
    }
    if (!within(real, this.roots.map(realOrSelf))) {
      throw new HostError('PATH_NOT_ALLOWED', `${what} ${p} resolves to ${real}, outside the allowed directories`);
    }
    if (!statSync(real).isFile()) throw new HostError('INVALID_PATH', `${what} ${p} is not a file`);
    return real;
  }

  private outside(what: string, p: string): HostError {
    return new HostError(
      'PATH_NOT_ALLOWED',
      `${what} ${p} is outside the directories this daemon may read images from (${this.roots.join(', ')}); ` +
        `its owner can add one with 'typevisor daemon --allow-path DIR'`,
    );
  }
}

function stripSep(p: string): string {
  return p.length > 1 && p.endsWith(sep) ? p.slice(0, -1) : p;
}

function realOrSelf(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p; // not created yet (e.g. <home>/images): nothing can resolve into it before it exists
  }
}

function within(p: string, roots: readonly string[]): boolean {
  return roots.some((r) => p === r || p.startsWith(r === '/' ? '/' : r + '/'));
}

/** The daemon's policy: its image store, the built guest cache (the `default` image) and `--allow-path` dirs. */
export function daemonPathPolicy(imagesDir: string, guestsCacheDir: string, allowPaths: readonly string[] = []): PathPolicy {
  return new PathPolicy([imagesDir, guestsCacheDir, ...allowPaths]);
}

/** The kernel, initrd and firmware files a create request names, checked, as real paths. */
export function checkRequestedFiles(
  policy: PathPolicy,
  spec: { kernel?: string; initrd?: string; firmware: string },
): { kernel?: string; initrd?: string; firmware: string } {
  return {
    kernel: spec.kernel === undefined ? undefined : policy.check('kernel', spec.kernel),
    initrd: spec.initrd === undefined ? undefined : policy.check('initrd', spec.initrd),
    firmware: spec.firmware === 'builtin' || spec.firmware === 'none' ? spec.firmware : policy.check('firmware', spec.firmware),
  };
}

/**
 * Checks a stored VM config again before it starts: a file inside an allowed directory may have been replaced by a
 * symlink leading out since the VM was created, or the daemon restarted with fewer --allow-path directories.
 */
export function checkConfigFiles(
  policy: PathPolicy,
  config: { kernel?: string; initrd?: string; firmware: { kind: string; path?: string } },
): void {
  if (config.kernel !== undefined) policy.check('kernel', config.kernel);
  if (config.initrd !== undefined) policy.check('initrd', config.initrd);
  if (config.firmware.kind === 'file' && config.firmware.path !== undefined) policy.check('firmware', config.firmware.path);
}
