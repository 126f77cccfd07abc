/**
 * Boot benchmark: the same kernel + initramfs booted to the guest's ready marker in typevisor and in
 * qemu-system-riscv64 -M virt, in the same run. Prints both times and their ratio.
 *
 *   npx tsx bench/boot/index.ts [--cpus N] [--runs N] [--cpu-prof DIR]
 */
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { guestArtifacts } from '../../src/guests/index.js';
import { cliArgs, repoRoot } from '../../test/helpers/paths.js';

const { values } = parseArgs({
  options: {
    cpus: { type: 'string', default: '1' },
    runs: { type: 'string', default: '1' },
    'cpu-prof': { type: 'string' },
    'skip-qemu': { type: 'boolean' },
  },
});
const g = guestArtifacts();
const APPEND = 'console=ttyS0';
const TIMEOUT_MS = 600_000;

interface Timing {
  /** Wall-clock ms from spawn to the marker. */
  wall: number;
  /** CPU ms (user + system, all threads) the process had used by then: fairer on a loaded host. */
  cpu: number;
}

function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime + stime in USER_HZ ticks
}

/** Spawns `cmd` and resolves with the time until `marker` appears on its stdout; then powers it off. */
function timeToMarker(cmd: string, args: string[], marker: string): Promise<Timing> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { cwd: repoRoot, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let seen = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd}: no marker after ${TIMEOUT_MS} ms\n${out.slice(-2000)}\n${err}`));
    }, TIMEOUT_MS);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      if (!seen && out.includes(marker)) {
        seen = true;
        const timing = { wall: performance.now() - t0, cpu: cpuMs(child.pid!) };
        clearTimeout(timer);
        // Power off cleanly (lets --cpu-prof write its profile), then make sure it is gone.
        child.stdin.write('\npoweroff -f\n');
        const kill = setTimeout(() => child.kill('SIGKILL'), 15_000);
        child.on('exit', () => {
          clearTimeout(kill);
          resolve(timing);
        });
      }
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => {
      if (!out.includes(marker)) {
        clearTimeout(timer);
        reject(new Error(`${cmd} exited (${code}) before the marker\n${out.slice(-2000)}\n${err}`));
      }
    });
  });
}

const runs = Number(values.runs);
const cpus = values.cpus!;
const tv: Timing[] = [];
const qemu: Timing[] = [];
for (let i = 0; i < runs; i++) {
  const prof = values['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', values['cpu-prof']] : [];
  tv.push(
    await timeToMarker(
      process.execPath,
      [...prof, ...cliArgs('run', '--kernel', g.kernel, '--initrd', g.initramfs, '--append', APPEND, '--cpus', cpus)],
      g.marker,
    ),
  );
  if (!values['skip-qemu']) {
    qemu.push(
      await timeToMarker(
        'qemu-system-riscv64',
        ['-M', 'virt', '-m', '256', '-smp', cpus, '-nographic', '-kernel', g.kernel, '-initrd', g.initramfs, '-append', APPEND],
        g.marker,
      ),
    );
  }
}
const best = (xs: Timing[], k: keyof Timing): number => Math.min(...xs.map((x) => x[k]));
const fmt = (ms: number): string => (ms / 1000).toFixed(2) + ' s';
const row = (name: string, xs: Timing[]): string =>
  `  ${name.padEnd(20)} wall ${fmt(best(xs, 'wall'))}  cpu ${fmt(best(xs, 'cpu'))}   [${xs.map((x) => `${fmt(x.wall)}/${fmt(x.cpu)}`).join(', ')}]`;
console.log(
  `boot to "${g.marker}" (${cpus} cpu, ${runs} run${runs > 1 ? 's' : ''}, best of; load average ${loadavg()[0]!.toFixed(1)}):`,
);
console.log(row('typevisor', tv));
if (qemu.length) {
  console.log(row('qemu-system-riscv64', qemu));
  console.log(
    `  ratio typevisor/qemu wall ${(best(tv, 'wall') / best(qemu, 'wall')).toFixed(1)}x  cpu ${(best(tv, 'cpu') / best(qemu, 'cpu')).toFixed(1)}x`,
  );
}
