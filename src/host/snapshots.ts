/**
 * Files of saved VMs (`typevisor save` / `restore`): a save is a directory holding `manifest.json` (the VM's
 * configuration, with disk paths relative to the directory), `machine.tvstate` (src/machine/snapshot) and a copy
 * of every disk image. It is written under a temporary name and renamed into place once complete, so a save is
 * complete or absent.
 */
import { constants, copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, normalize } from 'node:path';
import { writeJsonAtomic, fsyncDir } from './atomic.js';
import { HostError } from './errors.js';
import type { VmConfig } from '../vm/config.js';
import { validateVmConfig } from '../vm/config.js';

export const SAVE_FORMAT = 'typevisor-save';
export const SAVE_VERSION = 1;
export const STATE_FILE = 'machine.tvstate';
export const MANIFEST_FILE = 'manifest.json';

export interface SaveManifest {
  format: typeof SAVE_FORMAT;
  version: number;
  name: string;
  savedAt: string;
  image?: string;
  bootMarker?: string;
  /** The VM's configuration; disk paths are file names inside the save directory. */
  config: VmConfig;
  state: string;
}

/** An absolute, normalised path from a request. */
export function checkAbsolutePath(what: string, p: string): void {
  if (typeof p !== 'string' || !isAbsolute(p) || normalize(p) !== p || p.split('/').includes('..'))
    throw new HostError('INVALID_PATH', `${what} must be an absolute, normalised path, got ${JSON.stringify(p)}`);
}

/** Where a save is built before it is renamed to `dir`; checks that `dir` is free and its parent exists. */
export function prepareSaveDir(dir: string): string {
  checkAbsolutePath('the save path', dir);
  if (existsSync(dir)) throw new HostError('INVALID_PATH', `${dir} already exists`);
  const parent = dirname(dir);
  if (!existsSync(parent) || !statSync(parent).isDirectory()) throw new HostError('INVALID_PATH', `${parent} is not a directory`);
  const tmp = join(parent, `.${basename(dir)}.partial-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { mode: 0o700 });
  return tmp;
}

/** Copies a disk image (a reflink where the filesystem can). */
export function copyDisk(from: string, to: string): void {
  copyFileSync(from, to, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
}

/** Copies the VM's disks into `tmp`, writes the manifest, and renames `tmp` to `dir`. */
export function completeSave(tmp: string, dir: string, manifest: Omit<SaveManifest, 'config'>, config: VmConfig): void {
  const disks = config.disks.map((d, i) => {
    const file = `disk${i}.${d.format}`;
    copyDisk(d.path, join(tmp, file));
    return { ...d, path: file };
  });
  writeJsonAtomic(join(tmp, MANIFEST_FILE), { ...manifest, config: { ...config, disks } } satisfies SaveManifest, 0o600);
  fsyncDir(tmp);
  renameSync(tmp, dir);
  fsyncDir(dirname(dir));
}

/** Reads and checks a save directory's manifest. */
export function readSaveManifest(dir: string): SaveManifest {
  checkAbsolutePath('the save path', dir);
  const path = join(dir, MANIFEST_FILE);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new HostError('BAD_STATE_FILE', `${path}: ${(err as Error).message}`);
  }
  const m = raw as Partial<SaveManifest>;
  const bad = (why: string): never => {
    throw new HostError('BAD_STATE_FILE', `${path}: ${why}`);
  };
  if (typeof m !== 'object' || m === null) bad('not an object');
  if (m.format !== SAVE_FORMAT) bad(`not a typevisor save (format ${String(m.format)})`);
  if (m.version !== SAVE_VERSION) bad(`unsupported version ${String(m.version)}`);
  if (typeof m.name !== 'string') bad('no name');
  if (typeof m.state !== 'string' || m.state.includes('/')) bad('bad state file name');
  const c = m.config;
  if (typeof c !== 'object' || c === null || !Array.isArray(c.disks)) return bad('no configuration');
  for (const d of c.disks) {
    if (
      typeof d?.path !== 'string' ||
      d.path.includes('/') ||
      d.path.startsWith('.') ||
      (d.format !== 'raw' && d.format !== 'qcow2')
    )
      bad(`bad disk entry ${JSON.stringify(d)}`);
    if (!existsSync(join(dir, d.path))) bad(`disk ${d.path} is missing`);
  }
  const problems = validateVmConfig(c);
  if (problems.length) bad(problems.join('; '));
  if (!existsSync(join(dir, m.state!))) bad(`${m.state} is missing`);
  return m as SaveManifest;
}
