/**
 * scripts/install.sh on a machine missing an apt package: apt-get is called with a dpkg lock timeout (so a
 * fresh machine's unattended-upgrades does not fail the install). Fake dpkg-query/apt-get/sudo on PATH record
 * the calls; the fake apt-get fails, so the script stops before npm and the guest build.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from '../helpers/paths.js';

test('install.sh waits for the dpkg lock and says what the first build costs', { timeout: 60_000 }, () => {
  const bin = mkdtempSync(join(tmpdir(), 'tv-install-'));
  try {
    const log = join(bin, 'calls.log');
    const fake = (name: string, body: string): void => {
      writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`);
      chmodSync(join(bin, name), 0o755);
    };
    fake('dpkg-query', 'exit 1'); // every package "missing"
    fake('apt-get', `echo "apt-get $*" >> ${log}; exit 1`);
    fake('sudo', 'shift; exec "$@"'); // sudo -n CMD...
    const r = spawnSync('bash', [join(repoRoot, 'scripts/install.sh')], {
      encoding: 'utf8',
      env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
      timeout: 50_000,
    });
    assert.notEqual(r.status, 0, 'the fake apt-get fails the install');
    const calls = readFileSync(log, 'utf8').trim().split('\n');
    assert.ok(calls.length >= 2, calls.join('\n'));
    for (const c of calls) assert.match(c, /^apt-get -o DPkg::Lock::Timeout=600 (install|update) /);
    assert.match(calls.join('\n'), /install -y -q --no-install-recommends .*gcc-riscv64-linux-gnu/);
    const script = readFileSync(join(repoRoot, 'scripts/install.sh'), 'utf8');
    assert.match(script, /about 15 minutes on 2 cores/);
    assert.match(script, /deb-src/);
  } finally {
    rmSync(bin, { recursive: true, force: true });
  }
});
