import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDrive, parseMemory, parseRunArgs, UsageError } from '../../src/cli/commands/run.js';
import { formatMiB, inCliWords, parseSizeMiB } from '../../src/cli/units.js';

test('--memory accepts MiB and suffixed sizes', () => {
  assert.equal(parseMemory('512'), 512);
  assert.equal(parseMemory('512M'), 512);
  assert.equal(parseMemory('1G'), 1024);
  assert.equal(parseMemory('2GiB'), 2048);
  assert.throws(() => parseMemory('lots'), UsageError);
  assert.throws(() => parseMemory('1000K'), /whole number of MiB/);
});

test('--drive is parsed into VmConfig disks', () => {
  assert.deepEqual(parseDrive('file=/tmp/a.img'), { path: '/tmp/a.img', format: 'raw', readOnly: false });
  assert.deepEqual(parseDrive('file=/tmp/b.qcow2,readonly=on'), { path: '/tmp/b.qcow2', format: 'qcow2', readOnly: true });
  assert.deepEqual(parseDrive('file=x,format=raw,serial=abc'), { path: 'x', format: 'raw', readOnly: false, serial: 'abc' });
  assert.throws(() => parseDrive('format=vmdk,file=x'), /raw or qcow2/);
  assert.throws(() => parseDrive('readonly=on'), /needs file=PATH/);
});

test('run flags build a VmConfig', () => {
  const { config, useDefaultGuest } = parseRunArgs([
    '--kernel',
    'k',
    '--initrd',
    'i',
    '--append',
    'console=ttyS0',
    '--cpus',
    '4',
    '--memory',
    '1G',
    '--firmware',
    '/fw.bin',
    '--drive',
    'file=d.img',
  ]);
  assert.equal(useDefaultGuest, false);
  assert.equal(config.cpus, 4);
  assert.equal(config.memoryMiB, 1024);
  assert.deepEqual(config.firmware, { kind: 'file', path: '/fw.bin' });
  assert.equal(config.disks.length, 1);
  assert.equal(parseRunArgs([]).useDefaultGuest, true);
  assert.deepEqual(parseRunArgs(['--firmware', 'none', '--kernel', 'x']).config.firmware, { kind: 'none' });
  assert.throws(() => parseRunArgs(['--cpus', 'four']), /--cpus takes a whole number of vCPUs/);
  assert.equal(parseRunArgs(['--vcpus', '3']).config.cpus, 3, '--vcpus is an alias of --cpus');
  assert.equal(parseRunArgs(['--kernel-format', 'raw', '--kernel', 'k']).kernelFormat, 'raw');
  // --firmware FILE alone boots the default guest under it; --kernel none boots the firmware alone.
  assert.equal(parseRunArgs(['--firmware', '/fw.bin']).useDefaultGuest, true);
  const alone = parseRunArgs(['--firmware', '/fw.bin', '--kernel', 'none']);
  assert.equal(alone.useDefaultGuest, false);
  assert.equal(alone.config.kernel, undefined);
  assert.throws(() => parseRunArgs(['--kernel', 'none']), /--kernel none needs --firmware FILE/);
});

test('CLI words: API field names in daemon messages become flags and sizes', () => {
  assert.equal(inCliWords('memoryMiB: Too big: expected number to be <=16384'), '--memory must be at most 16 GiB');
  assert.equal(inCliWords('memoryMiB: Too small: expected number to be >=16'), '--memory must be at least 16 MiB');
  assert.equal(inCliWords('vcpus: Too big: expected number to be <=8'), '--vcpus must be at most 8');
  assert.equal(inCliWords('disks.1.sizeMiB: Too big'), '--disk 1: Too big');
  assert.equal(parseSizeMiB('--memory', '1048576K'), 1024);
  assert.equal(parseSizeMiB('--memory', '2T'), 2 * 1024 * 1024);
  assert.equal(formatMiB(16384), '16 GiB');
});
