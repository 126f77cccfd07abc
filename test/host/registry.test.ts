import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic, writeFileAtomicAsync } from '../../src/host/atomic.js';
import { ConsoleLog } from '../../src/host/console-log.js';
import { parseRecord, RecordError, Registry, RECORD_SCHEMA, type VmRecord } from '../../src/host/registry.js';
import { defaultVmConfig } from '../../src/vm/config.js';
import { LatestValueWriter } from '../../src/host/write-queue.js';
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

test('the registry saves, reloads and removes VMs; bad vm.json files are reported, not fatal', async () => {
  const home = tempHome('tv-reg-');
  try {
    const reg = new Registry(join(home, 'vms'));
    reg.createDir('alpha');
    await reg.save(record('alpha'));
    reg.createDir('beta');
    await reg.save({ ...record('beta'), state: 'running' });
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
    await reg.remove('alpha');
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

test('the console log is bounded: it rotates to console.log.1 and read() returns both parts in order', async () => {
  const dir = tempHome('tv-log-');
  try {
    const log = new ConsoleLog(join(dir, 'console.log'), 1000, 10);
    for (let i = 0; i < 30; i++) {
      log.append(Buffer.from(`line ${String(i).padStart(3, '0')} ${'x'.repeat(90)}\n`));
      void log.flush();
    }
    await log.flush();
    const cur = statSync(join(dir, 'console.log')).size;
    const old = statSync(join(dir, 'console.log.1')).size;
    assert.ok(cur <= 1000 && old <= 1000, `${cur} ${old}`);
    const text = (await log.read()).toString();
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

test('async atomic writes replace the file whole and leave no temporary files', async () => {
  const dir = tempHome('tv-atomic-async-');
  try {
    const p = join(dir, 'f.json');
    await Promise.all([writeFileAtomicAsync(p, 'one', 0o600), writeFileAtomicAsync(p, 'two', 0o600)]);
    assert.match(readFileSync(p, 'utf8'), /^(one|two)$/);
    assert.equal(statSync(p).mode & 0o777, 0o600);
    await assert.rejects(writeFileAtomicAsync(join(dir, 'missing', 'f'), 'x'), /ENOENT/);
    assert.deepEqual(readdirSync(dir), ['f.json']);
  } finally {
    removeHome(dir);
  }
});

test('rapid state changes: vm.json writes land in order, never half, and end with the newest record', async () => {
  const home = tempHome('tv-order-');
  try {
    const reg = new Registry(join(home, 'vms'));
    reg.createDir('fast');
    const path = join(home, 'vms', 'fast', 'vm.json');
    await reg.save(record('fast'));
    const states = ['running', 'paused', 'running', 'rebooting', 'running', 'stopped'] as const;
    const seen: number[] = [];
    let reading = true;
    // A reader polling the file while the writes go on: every version it sees is whole and no older than the last.
    const reader = (async () => {
      while (reading) {
        const rec = parseRecord(path, readFileSync(path, 'utf8'));
        seen.push(Number(rec.stateReason ?? -1));
        await new Promise((r) => setImmediate(r));
      }
    })();
    const writes: Promise<void>[] = [];
    for (let i = 0; i < 300; i++) {
      writes.push(reg.save({ ...record('fast'), state: states[i % states.length]!, stateReason: String(i) }));
    }
    await Promise.all(writes);
    reading = false;
    await reader;
    const final = parseRecord(path, readFileSync(path, 'utf8'));
    assert.equal(final.stateReason, '299', 'the newest record is the one on disk');
    assert.equal(final.state, states[299 % states.length]);
    assert.ok(seen.length > 0);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i]! >= seen[i - 1]!, `went back from ${seen[i - 1]} to ${seen[i]}`);
    assert.deepEqual(readdirSync(join(home, 'vms', 'fast')).sort(), ['snapshots', 'vm.json'], 'no temporary files left');
    await reg.remove('fast');
    assert.equal(existsSync(join(home, 'vms', 'fast')), false);
  } finally {
    removeHome(home);
  }
});

test('LatestValueWriter: one write at a time, in order, coalescing what waits; errors reach their callers', async () => {
  const landed: number[] = [];
  let active = 0;
  const w = new LatestValueWriter<number>(async (v) => {
    active++;
    assert.equal(active, 1, 'never two writes at once');
    await new Promise((r) => setTimeout(r, 2));
    if (v < 0) {
      active--;
      throw new Error(`cannot write ${v}`);
    }
    landed.push(v);
    active--;
  });
  const order: number[] = [];
  const all = [1, 2, 3, 4, 5].map((v) => w.write(v).then(() => order.push(v)));
  await Promise.all(all);
  assert.deepEqual(landed, [1, 5], 'the first write runs, 2..4 are replaced by 5 while it is in flight');
  assert.deepEqual(order, [1, 2, 3, 4, 5]);
  await assert.rejects(w.write(-1), /cannot write -1/);
  await w.write(6);
  await w.idle();
  assert.deepEqual(landed, [1, 5, 6]);
});

test('console log: appends from a chatty guest land in order without a flush between them', async () => {
  const dir = tempHome('tv-log-order-');
  try {
    const log = new ConsoleLog(join(dir, 'console.log'), 1 << 20, 1);
    let expected = '';
    for (let i = 0; i < 2000; i++) {
      const line = `${i}\n`;
      expected += line;
      log.append(Buffer.from(line));
      if (i % 97 === 0) void log.flush();
      if (i % 500 === 0) await new Promise((r) => setTimeout(r, 2));
    }
    assert.equal((await log.read()).toString(), expected);
  } finally {
    removeHome(dir);
  }
});
