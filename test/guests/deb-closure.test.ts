/**
 * The dependency closure the Debian recipe uses for its local repository's newer kernel: from an archive index
 * and a dpkg status, exactly the packages the tree lacks (alternatives, version constraints, Pre-Depends,
 * Provides), the newest version of each, and a clear error for a dependency nothing offers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closure, installedPackages, parseIndex, parseRelations } from '../../src/guests/deb-closure.js';

const INDEX = `Package: linux-image-riscv64
Version: 7.2.11-1~bpo13+1
Depends: linux-image-7.2.11 (= 7.2.11-1~bpo13+1)
Filename: pool/main/l/linux/linux-image-riscv64_7.2.11-1~bpo13+1_riscv64.deb
Size: 1660
SHA256: aa

Package: linux-image-riscv64
Version: 7.2.6-1~bpo13+1
Depends: linux-image-7.2.6
Filename: old.deb
Size: 1
SHA256: old

Package: linux-image-7.2.11
Version: 7.2.11-1~bpo13+1
Pre-Depends: linux-base (>= 4.17~)
Depends: dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool,
 linux-modules-7.2.11 (= 7.2.11-1~bpo13+1), kmod
Filename: pool/main/l/linux/linux-image-7.2.11.deb
Size: 1884
SHA256: bb

Package: linux-modules-7.2.11
Version: 7.2.11-1~bpo13+1
Depends: kmod
Filename: pool/main/l/linux/linux-modules-7.2.11.deb
Size: 115049368
SHA256: cc

Package: linux-base
Version: 4.17~bpo13+1
Depends: debconf (>= 0.5) | debconf-2.0
Filename: pool/main/l/linux-base/linux-base_4.17~bpo13+1_all.deb
Size: 26836
SHA256: dd

Package: dracut
Version: 106-1~bpo13+1
Filename: pool/main/d/dracut/dracut.deb
Size: 1
SHA256: ee
`;

const STATUS = `Package: kmod
Status: install ok installed
Version: 34.2-2

Package: initramfs-tools
Status: install ok installed
Version: 0.148.3
Provides: linux-initramfs-tool

Package: linux-base
Status: install ok installed
Version: 4.12

Package: cdebconf
Status: install ok installed
Version: 0.280
Provides: debconf-2.0

Package: removed-thing
Status: deinstall ok config-files
Version: 1
`;

test('relations: alternatives, version constraints, architecture qualifiers', () => {
  assert.deepEqual(parseRelations('a (>= 1.0) | b, c:any, d (= 2~bpo)'), [
    [{ name: 'a', op: '>=', version: '1.0' }, { name: 'b' }],
    [{ name: 'c' }],
    [{ name: 'd', op: '=', version: '2~bpo' }],
  ]);
});

test('the closure takes what the tree lacks: newest versions, a too-old installed package, not a met alternative', () => {
  const installed = installedPackages(STATUS);
  assert.ok(!installed.has('removed-thing'));
  assert.deepEqual(installed.get('debconf-2.0'), ['']);
  const picked = closure(parseIndex(INDEX), installed, 'linux-image-riscv64').map((s) => `${s.package}=${s.version}`);
  assert.deepEqual(picked.sort(), [
    'linux-base=4.17~bpo13+1', // installed 4.12 is older than the Pre-Depends asks
    'linux-image-7.2.11=7.2.11-1~bpo13+1',
    'linux-image-riscv64=7.2.11-1~bpo13+1', // not 7.2.6
    'linux-modules-7.2.11=7.2.11-1~bpo13+1',
  ]);
  // dracut stays out: initramfs-tools, an alternative in the same group, is installed.
});

test('a dependency neither installed nor in the index is a clear error', () => {
  const installed = installedPackages(STATUS.replace('Package: kmod', 'Package: not-kmod'));
  assert.throws(
    () => closure(parseIndex(INDEX), installed, 'linux-image-riscv64'),
    /linux-(image|modules)-7\.2\.11 needs kmod, which neither the image nor the index has/,
  );
  assert.throws(() => closure(parseIndex(INDEX), installed, 'nope'), /the index has no nope/);
});
