#!/usr/bin/env node
// Builds the web console (src/web) into dist/web with Vite, type-checking it first with its own tsconfig (DOM
// libs, JSX). Skipped when nothing it depends on changed: the inputs' hash is kept in dist/web/.build-hash, so
// `npm run build` and scripts/test.mjs pay for the bundle only when src/web or the lockfile moved.
// Every JS/CSS asset also gets .gz and .br siblings, which the daemon serves to browsers that accept them.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';

const root = new URL('..', import.meta.url).pathname;
const webSrc = join(root, 'src/web');
const out = join(root, 'dist/web');
const hashFile = join(out, '.build-hash');
const force = process.argv.includes('--force');
// --check: exit 0 when dist/web matches the inputs, 1 when a build is due; builds nothing.
const checkOnly = process.argv.includes('--check');

function files(dir, acc = []) {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) files(p, acc);
    else acc.push(p);
  }
  return acc;
}

const hash = createHash('sha256');
for (const f of [...files(webSrc), join(root, 'package-lock.json'), new URL(import.meta.url).pathname]) {
  hash.update(f.slice(root.length) + '\0');
  hash.update(readFileSync(f));
}
const digest = hash.digest('hex');
const upToDate = existsSync(join(out, 'index.html')) && existsSync(hashFile) && readFileSync(hashFile, 'utf8') === digest;
if (checkOnly) {
  console.log(upToDate ? 'web console: up to date' : 'web console: a build is due');
  process.exit(upToDate ? 0 : 1);
}
if (!force && upToDate) {
  console.log('web console: up to date');
  process.exit(0);
}

const t0 = Date.now();
const tsc = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(webSrc, 'tsconfig.json')], {
  stdio: 'inherit',
});
if (tsc.status !== 0) {
  console.error('web console: type errors');
  process.exit(1);
}
const { build } = await import('vite');
await build({ configFile: join(webSrc, 'vite.config.ts'), logLevel: 'warn' });

let raw = 0;
let gz = 0;
for (const f of files(join(out, 'assets'))) {
  if (!/\.(js|css)$/.test(f)) continue;
  const bytes = readFileSync(f);
  const g = gzipSync(bytes, { level: 9 });
  writeFileSync(f + '.gz', g);
  writeFileSync(f + '.br', brotliCompressSync(bytes, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }));
  raw += bytes.length;
  gz += g.length;
}
writeFileSync(hashFile, digest);
console.log(
  `web console: built in ${((Date.now() - t0) / 1000).toFixed(1)} s, JS+CSS ${(raw / 1024).toFixed(0)} KiB (${(gz / 1024).toFixed(0)} KiB gzip)`,
);
