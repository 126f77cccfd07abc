/**
 * `typevisor image import` with bad input gets one clear error and adds nothing (no image, no leftover folder):
 * a corrupt or empty disk, a firmware-booted disk without a partition table, a kernel for another architecture or an unknown declared architecture, a missing kernel, a
 * file outside the directories the daemon may read. A good import is listed, backs a VM, and cannot be removed
 * while that VM exists.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ImageView } from '../../src/host/image-store.js';
import { ClientError } from '../../src/cli/client.js';
import { createDisk } from '../../src/storage/index.js';
import { runCli } from '../helpers/cli.js';
import { removeHome, startDaemonProcess, tempHome, toyKernel, type DaemonHandle } from '../host/daemon-harness.js';

let d: DaemonHandle;
const cli = (...args: string[]) => runCli(d.home, args);
let outside: string;

before(async () => {
  d = await startDaemonProcess({ runtime: 'toy' });
  outside = tempHome('tv-outside-');
  const k = d.kernels;
  writeFileSync(join(k, 'Image'), toyKernel());
  await createDisk(join(k, 'good.qcow2'), { format: 'qcow2', size: 64 * 1024 * 1024 });
  // A qcow2 header (magic, version 3) followed by nonsense: the cluster size and table offsets are garbage.
  const corrupt = Buffer.alloc(4096, 0xa5);
  corrupt.write('QFI\xfb', 0, 'latin1');
  corrupt.writeUInt32BE(3, 4);
  writeFileSync(join(k, 'corrupt.qcow2'), corrupt);
  writeFileSync(join(k, 'empty.qcow2'), Buffer.alloc(0));
  // An x86-64 ELF (this machine's own /bin/true).
  copyFileSync('/bin/true', join(k, 'x86-kernel'));
  writeFileSync(join(outside, 'disk.raw'), Buffer.alloc(1024 * 1024));
});
after(async () => {
  await d.stop();
  removeHome(d.home);
  removeHome(outside);
});

async function imageNames(): Promise<string[]> {
  return (await d.client.json<{ images: ImageView[] }>('GET', '/images')).images.map((i) => i.name);
}

/** Nothing under <home>/images besides what was imported successfully. */
function storeEntries(): string[] {
  const dir = join(d.home, 'images');
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

test('bad imports fail with a clear error and add nothing', async () => {
  const k = (f: string) => join(d.kernels, f);
  const cases: { args: string[]; error: RegExp }[] = [
    { args: ['--disk', k('corrupt.qcow2'), '--kernel', k('Image')], error: /disk .*corrupt\.qcow2: .*(qcow2|cluster|header)/i },
    { args: ['--disk', k('empty.qcow2'), '--boot', 'firmware'], error: /disk .*empty\.qcow2/ },
    { args: ['--disk', k('good.qcow2'), '--boot', 'firmware'], error: /no partition table/ },
    { args: ['--disk', k('good.qcow2'), '--kernel', k('x86-kernel')], error: /ELF for another architecture.*riscv64/ },
    { args: ['--disk', k('good.qcow2'), '--kernel', k('Image'), '--arch', 'x86_64'], error: /unknown architecture 'x86_64'/ },
    { args: ['--disk', k('good.qcow2'), '--kernel', k('no-such-Image')], error: /kernel .*no-such-Image does not exist/ },
    { args: ['--disk', k('good.qcow2')], error: /give --kernel FILE, or --boot firmware/ },
    { args: ['--disk', join(outside, 'disk.raw'), '--boot', 'firmware'], error: /outside the directories this daemon may read/ },
  ];
  for (const c of cases) {
    const r = await cli('image', 'import', 'bad', ...c.args);
    assert.notEqual(r.status, 0, `import ${c.args.join(' ')} succeeded`);
    assert.match(r.stderr, c.error, `import ${c.args.join(' ')}`);
    assert.ok(!(await imageNames()).includes('bad'), `a failed import (${c.args.join(' ')}) added an image`);
    assert.deepEqual(storeEntries(), [], `a failed import (${c.args.join(' ')}) left files`);
  }
  // Through the API as well: a kernel-booted image without a kernel.
  await assert.rejects(
    d.client.json('POST', '/images', { name: 'bad', disk: k('good.qcow2'), boot: 'kernel' }),
    (e: unknown) => e instanceof ClientError && /needs a kernel/.test(e.message),
  );
  assert.deepEqual(storeEntries(), []);
});

test('a good import is listed, backs a VM, and is not removed while the VM uses it', async () => {
  const k = (f: string) => join(d.kernels, f);
  const r = await cli('image', 'import', 'mini', '--disk', k('good.qcow2'), '--kernel', k('Image'), '--os', 'test image');
  assert.equal(r.status, 0, r.stderr);
  const info = await d.client.json<ImageView>('GET', '/images/mini');
  assert.equal(info.arch, 'riscv64');
  assert.equal(info.boot, 'kernel');
  assert.equal(info.os, 'test image');
  assert.equal(info.disk?.format, 'qcow2');
  assert.equal(info.disk?.virtualBytes, 64 * 1024 * 1024);
  assert.ok(info.disk?.path.startsWith(join(d.home, 'images', 'mini')));
  assert.equal((await cli('create', 'user', '--image', 'mini')).status, 0);
  const rm = await cli('image', 'rm', 'mini');
  assert.notEqual(rm.status, 0);
  assert.match(rm.stderr, /backs the disks of user/);
  assert.equal((await cli('delete', 'user')).status, 0);
  assert.equal((await cli('image', 'rm', 'mini')).status, 0);
  assert.ok(!(await imageNames()).includes('mini'));
  assert.deepEqual(storeEntries(), []);
});
