// Repacking a .deb with an uncompressed data archive, for a guest that pays for every byte it decompresses.
// Debian's kernel modules package is 115 MB of xz around ~3,100 modules that are each xz-compressed already
// (CONFIG_MODULE_COMPRESS_XZ): the outer xz saves almost nothing, yet dpkg inside an emulated guest spends
// ~15 minutes of a loaded host decoding it. The repacked package holds the same files (names, modes, owners,
// times, bytes) and the same control data (control, md5sums, maintainer scripts); only the data.tar member
// loses its compression. Each repack is checked against the original, and any difference fails the build.
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import type { StepOptions } from './recipe.js';

export type RunStep = (cmd: string, args: readonly string[], opts?: StepOptions) => Promise<void>;

/** The repacked package differs from the original in more than the data archive's compression. */
export class RepackMismatchError extends Error {
  constructor(
    readonly deb: string,
    readonly what: string,
  ) {
    super(`${deb}: the repacked package differs from the original: ${what}`);
    this.name = 'RepackMismatchError';
  }
}

/** A tar listing of the package's files with full times and numeric owners (`tar -tv` of the data archive). */
async function fileListing(run: RunStep, deb: string, into: string): Promise<string[]> {
  await run('bash', [
    '-o',
    'pipefail',
    '-c',
    'dpkg-deb --fsys-tarfile "$1" | tar -tv --full-time --utc --numeric-owner -f - > "$2"',
    'bash',
    deb,
    into,
  ]);
  return readFileSync(into, 'utf8').split('\n').filter(Boolean);
}

/** The ar members of a .deb (debian-binary, control.tar*, data.tar*). */
async function members(run: RunStep, deb: string, into: string): Promise<string[]> {
  await run('sh', ['-c', 'ar t "$1" > "$2"', 'sh', deb, into]);
  return readFileSync(into, 'utf8').split('\n').filter(Boolean);
}

function sameControl(deb: string, a: string, b: string): void {
  const names = readdirSync(a).sort();
  const other = readdirSync(b).sort();
  if (names.join(' ') !== other.join(' '))
    throw new RepackMismatchError(deb, `control members ${names.join(' ')} became ${other.join(' ')}`);
  for (const n of names)
    if (!readFileSync(join(a, n)).equals(readFileSync(join(b, n)))) throw new RepackMismatchError(deb, `control file ${n}`);
}

/**
 * Rewrites `deb` in place with `dpkg-deb -Znone` (data.tar uncompressed), using `scratch` (emptied) for the
 * unpacked tree. Verified before the original is replaced: the same file listing (`tar -tv` of the data archive:
 * modes, owners, sizes, times to the second, link targets), byte-identical control files (control, md5sums,
 * conffiles, maintainer scripts), every file of the repacked package matching the package's own md5sums, and an
 * uncompressed data.tar member. Returns the sizes before and after.
 */
export async function repackUncompressed(run: RunStep, deb: string, scratch: string): Promise<{ before: number; after: number }> {
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch, { recursive: true });
  const tree = join(scratch, 'tree');
  const repacked = join(scratch, 'repacked.deb');
  const original = await fileListing(run, deb, join(scratch, 'original.list'));
  await run('dpkg-deb', ['-R', deb, tree]);
  // dpkg-deb -R makes the tree's top directory (and DEBIAN/ in it) now: the package's "./" entry gets its time back.
  const top = /^\S+\s+\S+\s+\d+\s+(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d) \.\/$/.exec(original[0] ?? '');
  if (!top) throw new RepackMismatchError(deb, `its data archive does not start with "./": ${original[0] ?? '(empty)'}`);
  const time = new Date(`${top[1]}T${top[2]}Z`);
  utimesSync(tree, time, time);
  await run('dpkg-deb', ['-Znone', '-b', tree, repacked]);

  const after = await fileListing(run, repacked, join(scratch, 'repacked.list'));
  if (after.length !== original.length) throw new RepackMismatchError(deb, `${original.length} entries became ${after.length}`);
  const sorted = (l: string[]) => [...l].sort();
  const [a, b] = [sorted(original), sorted(after)];
  const differs = a.findIndex((line, i) => line !== b[i]);
  if (differs >= 0) throw new RepackMismatchError(deb, `entry "${a[differs]}" became "${b[differs]}"`);

  await run('dpkg-deb', ['-e', deb, join(scratch, 'control.original')]);
  await run('dpkg-deb', ['-e', repacked, join(scratch, 'control.repacked')]);
  sameControl(deb, join(scratch, 'control.original'), join(scratch, 'control.repacked'));

  const files = join(scratch, 'files');
  await run('dpkg-deb', ['-x', repacked, files]);
  const md5sums = join(scratch, 'control.repacked', 'md5sums');
  if (readdirSync(join(scratch, 'control.repacked')).includes('md5sums'))
    await run('md5sum', ['--check', '--quiet', '--strict', md5sums], { cwd: files });

  const parts = await members(run, repacked, join(scratch, 'members'));
  if (!parts.includes('data.tar')) throw new RepackMismatchError(deb, `no uncompressed data.tar member: ${parts.join(' ')}`);
  const before = statSync(deb).size;
  const size = statSync(repacked).size;
  renameSync(repacked, deb);
  rmSync(scratch, { recursive: true, force: true });
  return { before, after: size };
}
