#!/usr/bin/env node
// The whole suite: type-check and build, make sure the guest images exist (cached), then run every test
// file under dist/test with node's test runner. `--unit` skips the guest build for a quick local loop.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const unitOnly = process.argv.includes('--unit');
const filters = process.argv.slice(2).filter((a) => !a.startsWith('--'));

function step(title, cmd, args) {
  console.log(`\n== ${title}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`== ${title} failed (exit ${r.status ?? r.signal})`);
    process.exit(r.status || 1);
  }
}

step('type-check and build', process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json']);
if (!unitOnly && existsSync(join(root, 'dist/src/cli/commands/guest.js'))) {
  step('guest images (cached by input hash)', process.execPath, [join(root, 'bin/typevisor.js'), 'guest', 'build']);
}

function collect(dir, out) {
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) collect(p, out);
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}
let files = collect(join(root, 'dist/test'), []);
if (filters.length) files = files.filter((f) => filters.some((x) => f.includes(x)));
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
console.log(`\n== ${files.length} test files`);
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=2', '--test-reporter=spec', ...files], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, TYPEVISOR_TEST: '1' },
});
process.exit(r.status ?? 1);
