/**
 * The Debian recipe's repack of its repository's kernel modules package (deb-repack.ts), on small packages built
 * here with dpkg-deb: the repacked package has an uncompressed data.tar and the same files (listing with times and
 * owners, bytes) and control files as the xz original; a package whose files do not match its own md5sums fails.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RepackMismatchError, repackUncompressed, type RunStep } from '../../src/guests/deb-repack.js';

const run: RunStep = async (cmd, args, opts) => {
  execFileSync(cmd, args, { cwd: opts?.cwd, env: { ...process.env, ...opts?.env }, stdio: ['ignore', 'ignore', 'pipe'] });
};
const sh = (script: string) => execFileSync('sh', ['-c', script], { encoding: 'utf8' });

/** A package with a compressible file, a file of random bytes, a symlink and a maintainer script, built with xz. */
function buildDeb(dir: string, opts: { breakMd5sums?: boolean } = {}): string {
  const tree = join(dir, 'pkg');
  mkdirSync(join(tree, 'DEBIAN'), { recursive: true });
  mkdirSync(join(tree, 'usr/lib/modules/1.0'), { recursive: true });
  const text = Buffer.from('module text\n'.repeat(4000));
  const random = createHash('sha512').update('seed').digest();
  writeFileSync(join(tree, 'usr/lib/modules/1.0/a.ko'), text);
  writeFileSync(join(tree, 'usr/lib/modules/1.0/b.ko.xz'), Buffer.concat(Array.from({ length: 64 }, () => random)));
  symlinkSync('a.ko', join(tree, 'usr/lib/modules/1.0/c.ko'));
  const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');
  writeFileSync(
    join(tree, 'DEBIAN/md5sums'),
    `${opts.breakMd5sums ? md5(Buffer.from('other')) : md5(text)}  usr/lib/modules/1.0/a.ko\n`,
  );
  writeFileSync(
    join(tree, 'DEBIAN/control'),
    'Package: linux-modules-test\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: test\n',
  );
  writeFileSync(join(tree, 'DEBIAN/postinst'), '#!/bin/sh\nexit 0\n');
  chmodSync(join(tree, 'DEBIAN/postinst'), 0o755);
  const old = new Date('2026-10-18T10:48:23Z');
  for (const p of [
    'usr/lib/modules/1.0/a.ko',
    'usr/lib/modules/1.0/b.ko.xz',
    'usr/lib/modules/1.0',
    'usr/lib/modules',
    'usr/lib',
    'usr',
    '.',
  ])
    utimesSync(join(tree, p), old, old);
  const deb = join(dir, 'test.deb');
  execFileSync('dpkg-deb', ['-Zxz', '--root-owner-group', '-b', tree, deb], { stdio: 'ignore' });
  rmSync(tree, { recursive: true });
  return deb;
}

test('a repacked package has an uncompressed data.tar and the same files and control data', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tv-repack-'));
  try {
    const deb = buildDeb(dir);
    const listing = sh(`dpkg-deb --fsys-tarfile ${deb} | tar -tv --full-time --utc --numeric-owner -f -`);
    const control = sh(`dpkg-deb -I ${deb} control; dpkg-deb -I ${deb} md5sums; dpkg-deb -I ${deb} postinst`);
    const content = sh(`dpkg-deb --fsys-tarfile ${deb} | tar -xO -f - ./usr/lib/modules/1.0/b.ko.xz | md5sum`);
    assert.match(sh(`ar t ${deb}`), /data\.tar\.xz/);

    const sizes = await repackUncompressed(run, deb, join(dir, 'scratch'));
    assert.equal(sizes.after, readFileSync(deb).length);
    assert.ok(sizes.after > sizes.before, `uncompressed ${sizes.after} <= xz ${sizes.before}`);
    assert.deepEqual(sh(`ar t ${deb}`).split('\n').filter(Boolean).slice(-1), ['data.tar']);
    assert.equal(sh(`dpkg-deb --fsys-tarfile ${deb} | tar -tv --full-time --utc --numeric-owner -f -`), listing);
    assert.match(listing, /2026-10-18 10:48:23 \.\/\n/);
    assert.equal(sh(`dpkg-deb -I ${deb} control; dpkg-deb -I ${deb} md5sums; dpkg-deb -I ${deb} postinst`), control);
    assert.equal(sh(`dpkg-deb --fsys-tarfile ${deb} | tar -xO -f - ./usr/lib/modules/1.0/b.ko.xz | md5sum`), content);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a package whose files do not match its own md5sums is not repacked', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tv-repack-'));
  try {
    const deb = buildDeb(dir, { breakMd5sums: true });
    const original = readFileSync(deb);
    await assert.rejects(repackUncompressed(run, deb, join(dir, 'scratch')), /md5sum/);
    assert.ok(readFileSync(deb).equals(original), 'the original was replaced');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a package whose data archive does not start with "./" is refused with a named error', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tv-repack-'));
  try {
    const deb = buildDeb(dir);
    // The same package's members, with a data.tar whose entries are named without "./".
    sh(`cd ${dir} && ar x ${deb} && mkdir d && cd d && tar -xJf ../data.tar.xz && tar -cf ../data.tar usr`);
    const bare = join(dir, 'bare.deb');
    sh(`cd ${dir} && ar rc ${bare} debian-binary control.tar.xz data.tar`);
    await assert.rejects(
      repackUncompressed(run, bare, join(dir, 'scratch')),
      (e) => e instanceof RepackMismatchError && /does not start with/.test(e.message),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
