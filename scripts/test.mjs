#!/usr/bin/env node
// The whole suite: type-check and build, make sure the guest images exist (cached), then run every test
// file under dist/test with node's test runner. Every skipped test is listed with its reason before the last
// line. `--unit` skips the guest build for a quick local loop; other arguments filter test files by substring.
// `--jit=0|1|eager|wasm-eager...` sets TYPEVISOR_JIT for the tests (src/riscv/jit: the interpreter alone, JS
// blocks, every block translated on first entry...), e.g. `node scripts/test.mjs --jit=eager riscv machine`.
// Without it the tests run on the default engine (WebAssembly blocks), and a whole-suite run then runs the
// CPU-heavy directories (test/riscv, test/machine, test/devices) a second time on the interpreter alone
// (TYPEVISOR_JIT=0), the reference both JITs are tested against.
//
// Files whose source carries an `// @exclusive` line measure something about the host (API latency under a
// spinning guest, idle CPU use): they run one at a time after the parallel batch, so two test files never
// compete for the 2 cores while such a measurement is taken.
//
// Files with a `// @debian` line boot the Debian image (tens of minutes per boot on the interpreter, more than
// the whole suite's budget on 2 cores): they run only with `--debian` (`npm run test:debian`), which also builds
// the debian image (cached), and then alone after the rest.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const unitOnly = process.argv.includes('--unit');
const filters = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const jitArg = process.argv.find((a) => a.startsWith('--jit='));
const jitEnv = jitArg ? { TYPEVISOR_JIT: jitArg.slice('--jit='.length) } : {};
const debian = process.argv.includes('--debian');

function step(title, cmd, args) {
  console.log(`\n== ${title}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`== ${title} failed (exit ${r.status ?? r.signal})`);
    process.exit(r.status || 1);
  }
}

step('type-check and build', process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json']);
step('web console (cached by input hash)', process.execPath, [join(root, 'scripts/build-web.mjs')]);
if (!unitOnly && existsSync(join(root, 'dist/src/cli/commands/guest.js'))) {
  step('guest images (cached by input hash)', process.execPath, [join(root, 'bin/typevisor.js'), 'guest', 'build']);
  if (debian)
    step('debian image (cached by input hash)', process.execPath, [join(root, 'bin/typevisor.js'), 'guest', 'build', 'debian']);
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
const isDebian = (f) => /^\/\/ @debian\b/m.test(readFileSync(f, 'utf8'));
files = files.filter((f) => isDebian(f) === debian);
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
const isExclusive = (f) => isDebian(f) || /^\/\/ @exclusive\b/m.test(readFileSync(f, 'utf8'));
const parallel = files.filter((f) => !isExclusive(f));
const exclusive = files.filter(isExclusive);

const skipDir = mkdtempSync(join(tmpdir(), 'typevisor-skips-'));
let runs = 0;

/** The skips one run recorded through scripts/skip-reporter.mjs: {file, name, reason}. */
function readSkips(file) {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line));
}

/** Runs node's test runner, streaming its output, and returns its exit status, summary counts and skips. */
function runTests(list, concurrency, env = jitEnv) {
  const skipFile = join(skipDir, `run-${runs++}.jsonl`);
  const reporters = [
    '--test-reporter=spec',
    '--test-reporter-destination=stdout',
    `--test-reporter=${join(root, 'scripts/skip-reporter.mjs')}`,
    `--test-reporter-destination=${skipFile}`,
  ];
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--test', `--test-concurrency=${concurrency}`, ...reporters, ...list], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, TYPEVISOR_TEST: '1', ...env },
    });
    let tail = '';
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk);
      // Long enough to hold the summary even when the runner lists every failure after it.
      tail = (tail + chunk.toString()).slice(-1_048_576);
    });
    child.on('close', (code, signal) => {
      const count = (name) => Number([...tail.matchAll(new RegExp(`ℹ ${name} (\\d+)`, 'g'))].at(-1)?.[1] ?? 0);
      resolve({
        ok: code === 0,
        code: code ?? signal,
        passed: count('pass'),
        failed: count('fail'),
        skipped: count('skipped'),
        skips: readSkips(skipFile),
      });
    });
  });
}

const results = [];
if (parallel.length) {
  console.log(`\n== ${parallel.length} test files, two at a time`);
  results.push(await runTests(parallel, 2));
}
if (exclusive.length) {
  console.log(
    `\n== ${exclusive.length} exclusive test files, one at a time: ${exclusive.map((f) => f.slice(root.length)).join(', ')}`,
  );
  results.push(await runTests(exclusive, 1));
}
if (!jitArg && filters.length === 0 && !debian) {
  const engineSuites = ['riscv', 'machine', 'devices'].map((d) => join(root, 'dist/test', d) + '/');
  const again = files.filter((f) => engineSuites.some((d) => f.startsWith(d)));
  const interpreter = { TYPEVISOR_JIT: '0' };
  console.log(`\n== ${again.length} test files of test/riscv, test/machine and test/devices again, on the interpreter alone`);
  results.push(await runTests(again.filter((f) => !isExclusive(f)), 2, interpreter));
  const alone = again.filter(isExclusive);
  if (alone.length) results.push(await runTests(alone, 1, interpreter));
}
const total = results.reduce(
  (a, r) => ({ passed: a.passed + r.passed, failed: a.failed + r.failed, skipped: a.skipped + r.skipped }),
  {
    passed: 0,
    failed: 0,
    skipped: 0,
  },
);
rmSync(skipDir, { recursive: true, force: true });
// A test may skip only for what CI cannot fix (e.g. too few cores); every skip is listed with its reason.
const skips = results.flatMap((r) => r.skips);
if (skips.length) {
  console.log(`\n== ${skips.length} skipped:`);
  for (const s of skips) console.log(`  ${s.file ? s.file.slice(root.length) + ': ' : ''}${s.name}: ${s.reason}`);
}
const ok = results.every((r) => r.ok);
// A run that failed without a counted failure (a crash, a file that did not load) still fails.
const failed = ok ? total.failed : Math.max(total.failed, 1);
console.log(`\ntests: ${total.passed} passed, ${failed} failed, ${total.skipped} skipped`);
process.exit(ok ? 0 : 1);
