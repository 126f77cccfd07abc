import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../src/host/atomic.js';
import { ConsoleLog } from '../../src/host/console-log.js';
import { parseRecord, RecordError, Registry, RECORD_SCHEMA, type VmRecord } from '../../src/host/registry.js';
import { defaultVmConfig } from '../../src/vm/config.js';
import { removeHome, tempHome } from './daemon-harness.js';

function record(name: string): VmRecord {
  return {
    schema: RECORD_SCHEMA,
    name,
    uuid: '00000000-0000-4000-8000-000000000000',
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    state: 'defined',
    autostart: false,
    config: defaultVmConfig({ name }),
  };
}

test('atomic writes replace the file whole, leave no temporary files, and honour the mode', () => {
  const dir = tempHome('tv-atomic-');
  try {
    const p = join(dir, 'f.json');
    writeFileAtomic(p, 'one', 0o600);
    writeFileAtomic(p, 'two two', 0o600);
    assert.equal(readFileSync(p, 'utf8'), 'two two');
    assert.equal(statSync(p).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(dir), ['f.json']);
  } finally {
    removeHome(dir);
  }
});

test('the registry saves, reloads and removes VMs; bad vm.json files are reported, not fatal', () => {
  const home = tempHome('tv-reg-');
  try {
    const reg = new Registry(join(home, 'vms'));
    reg.createDir('alpha');
    reg.save(record('alpha'));
    reg.createDir('beta');
    reg.save({ ...record('beta'), state: 'running' });
    assert.throws(() => reg.createDir('alpha'), /EEXIST/);
    // Hostile or broken folders: bad JSON, a record naming another VM, a folder name that is not a VM name.
    mkdirSync(join(home, 'vms', 'gamma'));
    writeFileSync(join(home, 'vms', 'gamma', 'vm.json'), '{not json');
    mkdirSync(join(home, 'vms', 'delta'));
    writeFileSync(join(home, 'vms', 'delta', 'vm.json'), JSON.stringify(record('alpha')));
    mkdirSync(join(home, 'vms', 'Bad..Name'));
    const bad: string[] = [];
    const all = reg.loadAll((e) => bad.push(e.message));
    assert.deepEqual(
      all.map((r) => [r.name, r.state]),
      [
        ['alpha', 'defined'],
        ['beta', 'running'],
      ],
    );
    assert.equal(bad.length, 2);
    reg.remove('alpha');
    assert.equal(existsSync(join(home, 'vms', 'alpha')), false);
    assert.throws(() => reg.vmDir('../etc'), /invalid VM name/);
    mkdirSync(join(home, 'vms', '.deleted-x-1234'));
    reg.sweep();
    assert.equal(existsSync(join(home, 'vms', '.deleted-x-1234')), false);
  } finally {
    removeHome(home);
  }
});

test('parseRecord rejects records the host could not trust', () => {
  const ok = JSON.stringify(record('ok'));
  assert.equal(parseRecord('x', ok).name, 'ok');
  for (const text of [
    '[]',
    'null',
    JSON.stringify({ ...record('ok'), schema: 2 }),
    JSON.stringify({ ...record('ok'), state: 'flying' }),
    JSON.stringify({ ...record('ok'), name: '../x' }),
  ]) {
    assert.throws(() => parseRecord('x', text), RecordError, text);
  }
});

test('the console log is bounded: it rotates to console.log.1 and read() returns both parts in order', () => {
  const dir = tempHome('tv-log-');
  try {
    const log = new ConsoleLog(join(dir, 'console.log'), 1000, 10);
    for (let i = 0; i < 30; i++) {
      log.append(Buffer.from(`line ${String(i).padStart(3, '0')} ${'x'.repeat(90)}\n`));
      log.flush();
    }
    const cur = statSync(join(dir, 'console.log')).size;
    const old = statSync(join(dir, 'console.log.1')).size;
    assert.ok(cur <= 1000 && old <= 1000, `${cur} ${old}`);
    const text = log.read().toString();
    assert.match(text, /line 029/);
    assert.doesNotMatch(text, /line 000/);
    const numbers = [...text.matchAll(/line (\d+)/g)].map((m) => Number(m[1]));
    assert.deepEqual(
      numbers,
      [...numbers].sort((a, b) => a - b),
    );
  } finally {
    removeHome(dir);
  }
});
