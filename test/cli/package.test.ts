/**
 * The npm package: `npm pack` gives a tarball that `npm i -g` installs and that runs from its built files
 * (dist/), with no TypeScript loader installed. And the repository explains itself: no file points at paths
 * outside it or on a build machine.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { requireGuest } from '../helpers/guest.js';
import { repoRoot } from '../helpers/paths.js';

test('npm pack → npm i -g → typevisor runs from dist/ with no TypeScript loader', { timeout: 600_000 }, () => {
  const guest = requireGuest();
  const tmp = mkdtempSync(join(tmpdir(), 'tv-pack-'));
  try {
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as {
      version: string;
      scripts: Record<string, string>;
    };
    assert.match(pkg.scripts.prepack ?? '', /tsc/, 'npm pack builds first (prepack)');
    // The suite has just built dist/; --ignore-scripts keeps this test from rebuilding it under the other tests.
    execFileSync('npm', ['pack', repoRoot, '--pack-destination', tmp, '--ignore-scripts', '--silent'], { encoding: 'utf8' });
    const tarball = readdirSync(tmp).find((f) => f.endsWith('.tgz'));
    assert.ok(tarball, 'npm pack wrote a tarball');
    const listing = execFileSync('tar', ['-tzf', join(tmp, tarball)], { encoding: 'utf8' }).split('\n');
    assert.ok(listing.includes('package/dist/src/cli/main.js'));
    assert.ok(listing.includes('package/guests/linux/typevisor.config'), 'guest recipe inputs ship');
    assert.ok(!listing.some((f) => f.startsWith('package/src/') || f.startsWith('package/test/')), 'no sources or tests');

    const prefix = join(tmp, 'prefix');
    const install = spawnSync(
      'npm',
      ['i', '-g', '--prefix', prefix, join(tmp, tarball), '--prefer-offline', '--no-audit', '--no-fund'],
      { encoding: 'utf8', timeout: 300_000 },
    );
    assert.equal(install.status, 0, install.stderr);
    const installed = join(prefix, 'lib/node_modules/typevisor');
    assert.equal(existsSync(join(installed, 'node_modules/tsx')), false, 'no TypeScript loader is installed');
    assert.equal(existsSync(join(installed, 'node_modules/typescript')), false);

    const bin = join(prefix, 'bin/typevisor');
    const env = { ...process.env, TYPEVISOR_FROM_SOURCE: '' };
    const version = spawnSync(bin, ['--version'], { encoding: 'utf8', env, timeout: 60_000 });
    assert.equal(version.status, 0, version.stderr);
    assert.equal(version.stdout.trim(), `typevisor ${pkg.version}`);
    const paths = spawnSync(bin, ['guest', 'path', '--json'], { encoding: 'utf8', env, timeout: 60_000 });
    assert.equal(paths.status, 0, paths.stderr);
    assert.equal((JSON.parse(paths.stdout) as { kernel: string }).kernel, guest.kernel);
    const help = spawnSync(bin, ['--help'], { encoding: 'utf8', env, timeout: 60_000 });
    assert.match(help.stdout, /^\s+daemon\s/m);
    assert.match(help.stdout, /^\s+run\s/m);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('the repository explains itself: no file points at paths outside it or on a build machine', () => {
  // Assembled from parts, so this file does not match its own pattern.
  const outside = [
    ['shared', 'design\\.md'],
    ['', 'work', ''],
    ['', 'root', '\\.'],
    ['', 'home', '[a-z]+', ''],
  ];
  const pattern = outside.map((parts) => parts.join('/')).join('|');
  const r = spawnSync('git', ['grep', '-n', '-I', '-E', pattern], {
    cwd: repoRoot,
    encoding: 'utf8',
  });
  assert.equal(r.error, undefined, 'git is required: apt-get install git');
  assert.equal(r.stdout, '', `files pointing outside the repository:\n${r.stdout}`);
});
