import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDrive, parseMemory, parseRunArgs, UsageError } from '../../src/cli/commands/run.js';

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
  assert.throws(() => parseRunArgs(['--cpus', 'four']), /not a number/);
});
