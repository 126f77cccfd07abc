#!/usr/bin/env node
// A fuzz campaign: `npm run fuzz -- TARGET... [--runs N] [--seconds T] [--seed S] [--qemu-check-every N]` runs the fast-check fuzz targets of the
// test suite for N cases each (fresh seeds unless --seed replays one), after a build, and prints a table of
// cases, time and result per target. `npm run fuzz -- --list` names the targets; `all` runs every one.
// docs/security.md records what each target defends and the counts and times of the last campaigns.
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const root = new URL('..', import.meta.url).pathname;

/** Target → the test file holding it and the test-name pattern selecting its properties. */
const TARGETS = {
  'virtio-rng': ['test/devices/virtio/fuzz.test.js', '^fuzz \\(rng\\)'],
  'virtio-console': ['test/devices/virtio/fuzz.test.js', '^fuzz \\(console\\)'],
  'virtio-blk': ['test/devices/virtio/fuzz.test.js', '^fuzz \\(blk\\)'],
  'virtio-balloon': ['test/devices/virtio/fuzz.test.js', '^fuzz \\(balloon\\)'],
  'virtio-net': ['test/devices/virtio/fuzz.test.js', '^fuzz \\(net (rx|tx)\\)'],
  'virtio-wellformed': ['test/devices/virtio/fuzz.test.js', '^fuzz: well-formed chains'],
  qcow2: ['test/storage/qcow2-fuzz.test.js', '^fuzz'],
  // qcow2's three properties one at a time (a campaign can give each its own runs, budget and seed):
  'qcow2-mutated': ['test/storage/qcow2-fuzz.test.js', '^fuzz: mutated headers'],
  'qcow2-compressed': ['test/storage/qcow2-fuzz.test.js', '^fuzz: mutated qemu-made compressed'],
  'qcow2-garbage': ['test/storage/qcow2-fuzz.test.js', '^fuzz: random garbage'],
  'qcow2-model': ['test/storage/qcow2-fuzz.test.js', '^model-based'],
  loaders: ['test/machine/loaders-fuzz.test.js', 'fuzz'],
  api: ['test/api/api-fuzz.test.js', 'fuzz'],
  net: ['test/net/hostile.test.js', '^hostile storm'],
  'tcp-segments': ['test/net/tcp-properties.test.js', '^hostile segments'],
  guest: ['test/machine/hostile-guest.test.js', 'hostile guest'],
};

const { values, positionals } = parseArgs({
  options: {
    runs: { type: 'string', default: '1000' },
    seed: { type: 'string' },
    seconds: { type: 'string' },
    'qemu-check-every': { type: 'string' },
    list: { type: 'boolean' },
    'no-build': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
  allowPositionals: true,
});
if (values.help || values.list || positionals.length === 0) {
  console.log(
    `usage: npm run fuzz -- TARGET... [--runs N] [--seconds T] [--seed S] [--qemu-check-every N] [--no-build]\ntargets: ${Object.keys(TARGETS).join(', ')}, all`,
  );
  process.exit(values.help || values.list ? 0 : 2);
}
const names = positionals.includes('all') ? Object.keys(TARGETS) : positionals;
const unknown = names.filter((n) => !(n in TARGETS));
if (unknown.length) {
  console.error(`unknown fuzz target(s): ${unknown.join(', ')}; targets: ${Object.keys(TARGETS).join(', ')}, all`);
  process.exit(2);
}
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs <= 0) {
  console.error(`--runs takes a positive whole number, got ${values.runs}`);
  process.exit(2);
}
if (values.seed !== undefined && !/^-?\d+$/.test(values.seed)) {
  console.error(`--seed takes an integer, got ${values.seed}`);
  process.exit(2);
}

const seconds = values.seconds === undefined ? undefined : Number(values.seconds);
if (seconds !== undefined && !(seconds > 0)) {
  console.error(`--seconds takes a positive number, got ${values.seconds}`);
  process.exit(2);
}

// qcow2-model: run `qemu-img check` after every Nth case (and the last) rather than after each one.
const qemuCheckEvery = values['qemu-check-every'];
if (qemuCheckEvery !== undefined && !/^[1-9]\d*$/.test(qemuCheckEvery)) {
  console.error(`--qemu-check-every takes a positive whole number, got ${qemuCheckEvery}`);
  process.exit(2);
}

if (!values['no-build']) {
  const b = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], {
    cwd: root,
    stdio: 'inherit',
  });
  if (b.status !== 0) process.exit(b.status || 1);
}

/** Runs one target's properties with node's test runner; resolves with its result and wall time. */
function runTarget(name) {
  const [file, pattern] = TARGETS[name];
  const env = { ...process.env, TYPEVISOR_FUZZ_RUNS: String(runs) };
  if (seconds !== undefined) env.TYPEVISOR_FUZZ_SECONDS = String(seconds);
  else delete env.TYPEVISOR_FUZZ_SECONDS;
  if (values.seed !== undefined) env.TYPEVISOR_FUZZ_SEED = values.seed;
  else delete env.TYPEVISOR_FUZZ_SEED;
  if (qemuCheckEvery !== undefined) env.TYPEVISOR_FUZZ_QEMU_CHECK_EVERY = qemuCheckEvery;
  else delete env.TYPEVISOR_FUZZ_QEMU_CHECK_EVERY;
  const t0 = process.hrtime.bigint();
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      ['--test', '--test-reporter=spec', `--test-name-pattern=${pattern}`, '--test-timeout=86400000', join(root, 'dist', file)],
      { cwd: root, env, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      process.stdout.write(d);
    });
    child.on('close', (code) => {
      const wall = Number(process.hrtime.bigint() - t0) / 1e9;
      const count = (k) => Number(new RegExp(`ℹ ${k} (\\d+)`).exec(out)?.[1] ?? 0);
      const seeds = [...out.matchAll(/fuzz seed (\d+)/g)].map((m) => m[1]);
      const cases = [...out.matchAll(/fuzz result (\d+) cases/g)].map((m) => Number(m[1]));
      resolve({
        name,
        ok: code === 0,
        properties: count('pass') + count('fail'),
        failed: count('fail'),
        seconds: wall,
        seeds,
        cases,
      });
    });
  });
}

const results = [];
for (const name of names) {
  const budget = seconds !== undefined ? `, at most ${seconds} s per property` : '';
  console.log(
    `\n== fuzz ${name}: ${runs} cases per property${budget}${values.seed !== undefined ? `, seed ${values.seed}` : ''}`,
  );
  results.push(await runTarget(name));
}
console.log(
  `\nload average ${(await import('node:os'))
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}`,
);
console.log('target              properties  cases/property  seconds  result  seeds  (cases run per property)');
for (const r of results) {
  console.log(
    `${r.name.padEnd(20)}${String(r.properties).padStart(10)}${String(runs).padStart(16)}${r.seconds.toFixed(1).padStart(9)}  ${r.ok ? 'ok' : `FAILED (${r.failed})`}  ${r.seeds.join(' ')}  (${r.cases.join(' ')})`,
  );
}
process.exit(results.every((r) => r.ok) ? 0 : 1);
