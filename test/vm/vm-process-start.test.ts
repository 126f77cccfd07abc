/**
 * What a pooled VM process (src/vm/vm-process-start.ts) accepts before it hosts a VM: its --pooled arguments, the
 * daemon's adopt line (anything else, malformed or relative, is ignored) and the init file it names.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAdoptLine, parsePooledArgs, readInitFile, VmProcessInitError } from '../../src/vm/vm-process-start.js';

test('pooled arguments need a runtime module and an integer nice', () => {
  assert.deepEqual(parsePooledArgs('{"runtimeModule":"/m.js","nice":10}'), { runtimeModule: '/m.js', nice: 10 });
  for (const bad of [
    '',
    'x',
    '[]',
    'null',
    '{"runtimeModule":"/m.js"}',
    '{"runtimeModule":1,"nice":1}',
    '{"runtimeModule":"/m","nice":1.5}',
  ])
    assert.throws(() => parsePooledArgs(bad), VmProcessInitError, bad);
});

test('only a well-formed adopt line with an absolute init file is taken', () => {
  assert.equal(parseAdoptLine('{"type":"adopt","initFile":"/h/vms/a/vm-process-init.json"}'), '/h/vms/a/vm-process-init.json');
  for (const bad of [
    '',
    'ready',
    '{',
    'null',
    '{"type":"pool-ready"}',
    '{"type":"adopt"}',
    '{"type":"adopt","initFile":7}',
    '{"type":"adopt","initFile":"rel.json"}',
  ])
    assert.equal(parseAdoptLine(bad), undefined, bad);
});

test('the init file must describe a VM process', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tv-init-'));
  try {
    const file = join(dir, 'init.json');
    writeFileSync(file, JSON.stringify({ config: { name: 'a' }, socketPath: '/s', vmDir: dir, runtimeModule: '/m.js' }));
    assert.equal(readInitFile(file).config.name, 'a');
    for (const text of ['', '{}', '[]', '{"config":{"name":"a"},"socketPath":"/s"}', 'null']) {
      writeFileSync(file, text);
      assert.throws(() => readInitFile(file), VmProcessInitError, text);
    }
    assert.throws(() => readInitFile(join(dir, 'missing.json')), VmProcessInitError);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
