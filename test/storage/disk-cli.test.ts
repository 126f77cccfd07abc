/**
 * `typevisor disk` through the real CLI: exit codes and output, cross-checked with qemu-img.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cliArgs, repoRoot } from '../helpers/paths.js';
import { fillRandom, qemu, rng, tempDir } from './helpers.js';

const { dir, cleanup } = tempDir('disk-cli');
after(cleanup);

/** Runs `typevisor disk ...` from the repository root; `@name` arguments become paths in the test directory. */
function disk(...args: string[]): { status: number; out: string; err: string } {
  const argv = args.map((a) => (a.startsWith('@') ? join(dir, a.slice(1)) : a));
  const r = spawnSync(process.execPath, cliArgs('disk', ...argv), { cwd: repoRoot, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status ?? -1, out: r.stdout, err: r.stderr };
}

/** Offset of refcount block 0 (these images use 16-bit refcounts). */
function refblock0(path: string): number {
  const img = readFileSync(path);
  const rt = Number(img.readBigUInt64BE(48));
  return Number(img.readBigUInt64BE(rt) & 0x00fffffffffffe00n);
}

function setRefcount(path: string, cluster: number, value: number): void {
  const img = readFileSync(path);
  img.writeUInt16BE(value, refblock0(path) + cluster * 2);
  writeFileSync(path, img);
}

test('disk create / info / check on a fresh qcow2 and an overlay', { timeout: 120_000 }, () => {
  let r = disk('create', '-f', 'qcow2', '@base.qcow2', '10G');
  assert.equal(r.status, 0, r.err);
  assert.match(r.out, /Formatting '.*base.qcow2', fmt=qcow2 size=10737418240/);
  assert.ok(statSync(join(dir, 'base.qcow2')).blocks * 512 < 2 ** 20);
  const qi = qemu('qemu-img', 'info', '--output=json', join(dir, 'base.qcow2'));
  assert.equal((JSON.parse(qi.out) as { 'virtual-size': number })['virtual-size'], 10 * 2 ** 30);

  r = disk('create', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', '@overlay.qcow2');
  assert.equal(r.status, 0, r.err);
  r = disk('info', '--json', '@overlay.qcow2');
  assert.equal(r.status, 0, r.err);
  // The same keys and values as `qemu-img info --output=json` on the same image.
  const info = JSON.parse(r.out) as Record<string, unknown>;
  const theirs = JSON.parse(qemu('qemu-img', 'info', '--output=json', join(dir, 'overlay.qcow2')).out) as Record<string, unknown>;
  assert.deepEqual(Object.keys(info).sort(), Object.keys(theirs).sort());
  for (const key of ['virtual-size', 'format', 'cluster-size', 'backing-filename', 'backing-filename-format', 'dirty-flag'])
    assert.deepEqual(info[key], theirs[key], key);
  assert.equal(info['full-backing-filename'], join(dir, 'base.qcow2'));
  assert.equal(typeof info['actual-size'], 'number');
  assert.deepEqual(
    (info['format-specific'] as { data: Record<string, unknown> }).data,
    (theirs['format-specific'] as { data: Record<string, unknown> }).data,
  );
  r = disk('info', '@overlay.qcow2');
  assert.match(r.out, /virtual size: 10 GiB \(10737418240 bytes\)/);
  assert.match(r.out, /backing file: base.qcow2/);

  r = disk('check', '@overlay.qcow2');
  assert.equal(r.status, 0, r.out + r.err);
  assert.match(r.out, /No errors were found on the image/);
  assert.equal(qemu('qemu-img', 'check', join(dir, 'overlay.qcow2')).status, 0);

  r = disk('check', '--json', '@overlay.qcow2');
  const check = JSON.parse(r.out) as Record<string, unknown>;
  const theirCheck = JSON.parse(qemu('qemu-img', 'check', '--output=json', join(dir, 'overlay.qcow2')).out) as Record<
    string,
    unknown
  >;
  assert.deepEqual(Object.keys(check).sort(), Object.keys(theirCheck).sort());
  assert.equal(check['total-clusters'], theirCheck['total-clusters']);

  r = disk('create', '-f', 'raw', '@disk.raw', '512M');
  assert.equal(r.status, 0, r.err);
  assert.equal(statSync(join(dir, 'disk.raw')).size, 512 * 2 ** 20);
  const rawInfo = JSON.parse(disk('info', '--json', '@disk.raw').out) as Record<string, unknown>;
  const theirRaw = JSON.parse(qemu('qemu-img', 'info', '--output=json', join(dir, 'disk.raw')).out) as Record<string, unknown>;
  assert.deepEqual(Object.keys(rawInfo).sort(), Object.keys(theirRaw).sort());
  for (const key of ['virtual-size', 'format', 'actual-size', 'dirty-flag']) assert.deepEqual(rawInfo[key], theirRaw[key], key);
  assert.equal(disk('check', '@disk.raw').status, 63);
});

test('disk check finds leaks (exit 3) and corruptions (exit 2) like qemu-img, and -r repairs them', { timeout: 120_000 }, () => {
  const p = join(dir, 'bad.qcow2');
  assert.equal(qemu('qemu-img', 'create', '-f', 'qcow2', p, '64M').status, 0);
  assert.equal(qemu('qemu-io', '-c', 'write -P 0x11 0 256k', p).status, 0);
  // A leak: the header cluster counted twice.
  setRefcount(p, 0, 2);
  assert.equal(qemu('qemu-img', 'check', p).status, 3);
  let r = disk('check', '@bad.qcow2');
  assert.equal(r.status, 3, r.out);
  assert.match(r.out, /1 leaked clusters were found/);
  r = disk('check', '-r', 'leaks', '@bad.qcow2');
  assert.equal(r.status, 0, r.out + r.err);
  assert.equal(qemu('qemu-img', 'check', p).status, 0);

  // A corruption: a data cluster in use whose refcount says free.
  const img = readFileSync(p);
  const l1 = Number(img.readBigUInt64BE(40));
  const l2 = Number(img.readBigUInt64BE(l1) & 0x00fffffffffffe00n);
  const data0 = Number(img.readBigUInt64BE(l2) & 0x00fffffffffffe00n);
  setRefcount(p, data0 / 65536, 0);
  assert.equal(qemu('qemu-img', 'check', p).status, 2);
  r = disk('check', '@bad.qcow2');
  assert.equal(r.status, 2, r.out);
  assert.match(r.out, /ERROR cluster \d+ refcount=0 reference=1/);
  r = disk('check', '-r', 'all', '@bad.qcow2');
  assert.equal(r.status, 0, r.out + r.err);
  const qc = qemu('qemu-img', 'check', p);
  assert.equal(qc.status, 0, qc.out);
  const data = qemu('qemu-io', '-c', 'read -P 0x11 0 256k', p);
  assert.equal(data.status, 0);
  assert.doesNotMatch(data.out, /Pattern verification failed/);
});

test('disk convert: qcow2 -> raw -> qcow2 with progress, sparse output, same data as qemu-img', { timeout: 120_000 }, () => {
  const src = join(dir, 'src.raw');
  const bytes = new Uint8Array(32 * 2 ** 20);
  fillRandom(bytes.subarray(3 * 2 ** 20, 5 * 2 ** 20), rng(9));
  writeFileSync(src, bytes);
  let r = disk('convert', '-f', 'raw', '-O', 'qcow2', '-p', '@src.raw', '@conv.qcow2');
  assert.equal(r.status, 0, r.err);
  assert.match(r.out, /\(0\.00\/100%\)/);
  assert.match(r.out, /\(50\.00\/100%\)/);
  assert.match(r.out, /\(100\.00\/100%\)/);
  assert.ok(statSync(join(dir, 'conv.qcow2')).blocks * 512 < 3 * 2 ** 20, 'zero regions were skipped');
  assert.equal(qemu('qemu-img', 'check', join(dir, 'conv.qcow2')).status, 0);
  assert.equal(qemu('qemu-img', 'compare', src, join(dir, 'conv.qcow2')).status, 0);

  r = disk('convert', '-O', 'raw', '@conv.qcow2', '@back.raw');
  assert.equal(r.status, 0, r.err);
  assert.ok(readFileSync(join(dir, 'back.raw')).equals(bytes));
  assert.ok(statSync(join(dir, 'back.raw')).blocks * 512 < 3 * 2 ** 20, 'raw output is sparse');
});

test('a failed disk convert removes its partial output and keeps an existing file', { timeout: 60_000 }, () => {
  // A qcow2 whose L1 table points past the end of the file: the copy fails part way.
  const bad = join(dir, 'broken.qcow2');
  assert.equal(qemu('qemu-img', 'create', '-f', 'qcow2', bad, '64M').status, 0);
  assert.equal(qemu('qemu-io', '-c', 'write -P 0x22 0 64k', bad).status, 0);
  const img = readFileSync(bad);
  const l1 = Number(img.readBigUInt64BE(40));
  img.writeBigUInt64BE(0x8000_0000_0000_0000n | 0x7000_0000n, l1); // L2 table far beyond the end
  writeFileSync(bad, img);
  let r = disk('convert', '-O', 'qcow2', '@broken.qcow2', '@partial.qcow2');
  assert.notEqual(r.status, 0, r.out);
  assert.equal(existsSync(join(dir, 'partial.qcow2')), false, 'no partial output left');
  writeFileSync(join(dir, 'keep.raw'), 'precious');
  r = disk('convert', '-O', 'raw', '@broken.qcow2', '@keep.raw');
  assert.notEqual(r.status, 0);
  assert.equal(readFileSync(join(dir, 'keep.raw'), 'utf8'), 'precious', 'an existing destination is not touched');
});

test('disk: usage errors exit 2, missing files exit 1 with a message', { timeout: 60_000 }, () => {
  assert.equal(disk('frobnicate').status, 2);
  assert.equal(disk('create', '-f', 'vmdk', 'x', '1G').status, 2);
  assert.equal(disk('create', '-f', 'qcow2', '@x.qcow2', 'ten').status, 1);
  const r = disk('info', '@does-not-exist.qcow2');
  assert.equal(r.status, 1);
  assert.match(r.err, /no such file/);
});
