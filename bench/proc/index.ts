/**
 * Process benchmark: shell workloads that CI jobs and sandboxes are made of (fork+exec, pipes, the shell
 * itself), typed at the console of the same kernel + busybox initramfs in typevisor and in
 * qemu-system-riscv64 -M virt, in the same run. Each step is timed on the host, from typing the command to its
 * end marker. Prints both times and their ratio.
 *
 *   npx tsx bench/proc/index.ts [--cpus N] [--runs N] [--skip-qemu]
 */
import { parseArgs } from 'node:util';
import { loadavg } from 'node:os';
import { guestArtifacts } from '../../src/guests/index.js';
import { cliArgs } from '../../test/helpers/paths.js';
import { runSession } from '../lib/session.js';
import { WORKLOADS } from './workloads.js';

const { values } = parseArgs({
  options: {
    cpus: { type: 'string', default: '1' },
    runs: { type: 'string', default: '1' },
    'skip-qemu': { type: 'boolean' },
  },
});
const g = guestArtifacts();
const APPEND = 'console=ttyS0';
const TIMEOUT_MS = 900_000;

const steps = WORKLOADS.map((w) => w.command);

const runs = Number(values.runs);
const cpus = values.cpus!;
const tv: number[][] = [];
const qemu: number[][] = [];
for (let i = 0; i < runs; i++) {
  const opts = { ready: g.marker, steps, timeoutMs: TIMEOUT_MS };
  const args = cliArgs('run', '--kernel', g.kernel, '--initrd', g.initramfs, '--append', APPEND, '--cpus', cpus);
  tv.push((await runSession(process.execPath, args, opts)).stepMs);
  if (!values['skip-qemu']) {
    const qargs = ['-M', 'virt', '-m', '256', '-smp', cpus, '-nographic'];
    qargs.push('-kernel', g.kernel, '-initrd', g.initramfs, '-append', APPEND);
    qemu.push((await runSession('qemu-system-riscv64', qargs, opts)).stepMs);
  }
}

const best = (xs: number[][], step: number): number => Math.min(...xs.map((x) => x[step]!));
const fmt = (ms: number): string => `${(ms / 1000).toFixed(2)} s`.padStart(8);
console.log(`shell workloads (${cpus} cpu, best of ${runs}, host time per step; load average ${loadavg()[0]!.toFixed(1)}):`);
WORKLOADS.forEach((w, i) => {
  const t = best(tv, i);
  const line = `  ${w.name.padEnd(16)} typevisor ${fmt(t)}`;
  if (!qemu.length) return console.log(line);
  const q = best(qemu, i);
  console.log(`${line}   qemu ${fmt(q)}   ratio typevisor/qemu ${(t / q).toFixed(1)}x`);
});
