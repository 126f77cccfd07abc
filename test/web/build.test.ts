/**
 * The web console's build output (dist/web, made by `npm run build` and scripts/test.mjs through
 * scripts/build-web.mjs): up to date with src/web, every asset the page names exists with its precompressed
 * siblings, nothing is loaded from another origin, and the page carries the nonce placeholder the daemon fills.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { repoRoot } from '../helpers/paths.js';

const WEB = join(repoRoot, 'dist/web');

test('dist/web matches src/web (the build is cached by the hash of its inputs)', () => {
  const r = spawnSync(process.execPath, [join(repoRoot, 'scripts/build-web.mjs'), '--check'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /up to date/);
});

test('the page names only same-origin hashed assets, each with .gz and .br siblings', () => {
  const html = readFileSync(join(WEB, 'index.html'), 'utf8');
  assert.match(html, /content="__CSP_NONCE__"/);
  assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//, 'no asset from another origin');
  assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script');
  assert.doesNotMatch(html, /<style/, 'no inline style');
  const assets = [...html.matchAll(/(?:src|href)="\/ui\/assets\/([^"]+)"/g)].map((m) => m[1]!);
  assert.ok(assets.some((a) => a.endsWith('.js')) && assets.some((a) => a.endsWith('.css')), assets.join(' '));
  for (const a of assets) {
    const file = join(WEB, 'assets', a);
    assert.match(a, /-[A-Za-z0-9_-]{8}\.(js|css)$/, 'content-hashed name (served immutable)');
    assert.ok(existsSync(file + '.br'), `${a}.br`);
    assert.deepEqual(gunzipSync(readFileSync(file + '.gz')), readFileSync(file), `${a}.gz holds the same bytes`);
    assert.ok(statSync(file).size > 0);
  }
});
