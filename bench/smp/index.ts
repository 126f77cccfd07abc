/**
 * Parallel vCPUs: a 4-way CPU-bound guest workload (4 sha256sum processes, each hashing the same bytes) on 1 hart
 * and on each hart count of --harts (default 4; `--harts 2,4` compares both), in typevisor (each hart on a thread of
 * its own) and in qemu-system-riscv64 (multi-threaded TCG), same kernel and initramfs, same run. Each step is timed
 * on the host from typing it to its end marker. Prints the times, each engine's speed-up from 1 hart, and the
 * typevisor/qemu ratios.
 *
 *   npx tsx bench/smp/index.ts [--mib N] [--runs N] [--harts N,M] [--skip-qemu]
 */
import { parseArgs } from 'node:util';
import { availableParallelism, loadavg } from 'node:os';
import { guestArtifacts } from '../../src/guests/index.js';
import { cliArgs } from '../../test/helpers/paths.js';
import { runSession } from '../lib/session.js';

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '3' },
    runs: { type: 'string', default: '1' },
    harts: { type: 'string', default: '4' },
    'skip-qemu': { type: 'boolean' },
  },
});
const g = guestArtifacts();
const APPEND = 'console=ttyS0';
const TIMEOUT_MS = 900_000;
const bytes = Math.round(Number(values.mib) * 2 ** 20);
if (!(bytes > 0)) throw new Error(`--mib must be a positive number, got ${values.mib}`);
const JOBS = 4;
const HARTS = values.harts.split(',').map(Number);
if (!HARTS.every((n) => Number.isInteger(n) && n >= 2 && n <= 8)) throw new Error(`--harts takes counts 2-8, got ${values.harts}`);
// One job alone (the per-hart speed), then 4 at once.
const steps = [
  `head -c ${bytes} /dev/zero | sha256sum`,
  `for i in $(seq ${JOBS}); do head -c ${bytes} /dev/zero | sha256sum & done; wait`,
];

interface Times {
  one: number;
  four: number;
}

async function typevisor(cpus: number): Promise<Times> {
  const args = cliArgs('run', '--kernel', g.kernel, '--initrd', g.initramfs, '--append', APPEND, '--cpus', String(cpus));
  const { stepMs, out } = await runSession(process.execPath, args, { ready: g.marker, steps, timeoutMs: TIMEOUT_MS });
  check(out, `typevisor --cpus ${cpus}`);
  return { one: stepMs[0]!, four: stepMs[1]! };
}

async function qemu(cpus: number): Promise<Times> {
  const qargs = ['-M', 'virt', '-m', '256', '-smp', String(cpus), '-accel', 'tcg,thread=multi', '-nographic'];
  qargs.push('-kernel', g.kernel, '-initrd', g.initramfs, '-append', APPEND);
  const { stepMs, out } = await runSession('qemu-system-riscv64', qargs, { ready: g.marker, steps, timeoutMs: TIMEOUT_MS });
  check(out, `qemu -smp ${cpus}`);
  return { one: stepMs[0]!, four: stepMs[1]! };
}

/** Every job must have printed the same digest: a wrong sum would make the timing meaningless. */
function check(out: string, who: string): void {
  const sums = [...out.matchAll(/^([0-9a-f]{64})\s+-/gm)].map((m) => m[1]);
  if (sums.length !== 1 + JOBS || new Set(sums).size !== 1)
    throw new Error(`${who}: expected ${1 + JOBS} equal digests, got ${sums.join(' ')}`);
}

const runs = Number(values.runs);
const results: Record<string, Times[]> = {};
const add = (key: string, t: Times): void => void (results[key] ??= []).push(t);
for (let i = 0; i < runs; i++) {
  add('tv1', await typevisor(1));
  for (const n of HARTS) add(`tv${n}`, await typevisor(n));
  if (!values['skip-qemu']) {
    add('q1', await qemu(1));
    for (const n of HARTS) add(`q${n}`, await qemu(n));
  }
}

const best = (xs: Times[], k: keyof Times): number => Math.min(...xs.map((x) => x[k]));
const s = (ms: number): string => `${(ms / 1000).toFixed(2)} s`.padStart(8);
console.log(
  `${JOBS} x sha256sum of ${values.mib} MiB (best of ${runs}; host has ${availableParallelism()} cores; load average ${loadavg()[0]!.toFixed(1)}):`,
);
const row = (name: string, one: Times[], n: number, par: Times[]): void => {
  const base = best(one, 'four');
  const p = best(par, 'four');
  console.log(
    `  ${name.padEnd(10)} 1 job on 1 hart ${s(best(one, 'one'))} (on ${n} harts ${s(best(par, 'one'))})   4 jobs on 1 hart ${s(base)}   4 jobs on ${n} harts ${s(p)}   speed-up ${(base / p).toFixed(2)}x`,
  );
};
const ratio = (a: number, b: number): string => `${(a / b).toFixed(1)}x`;
for (const n of HARTS) {
  row('typevisor', results.tv1!, n, results[`tv${n}`]!);
  if (results.q1) {
    row('qemu', results.q1, n, results[`q${n}`]!);
    console.log(
      `  ratio typevisor/qemu: 4 jobs on 1 hart ${ratio(best(results.tv1!, 'four'), best(results.q1, 'four'))}, 4 jobs on ${n} harts ${ratio(best(results[`tv${n}`]!, 'four'), best(results[`q${n}`]!, 'four'))}`,
    );
  }
}
