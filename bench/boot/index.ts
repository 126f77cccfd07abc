/**
 * Boot benchmark: the same kernel + initramfs booted to the guest's ready marker in typevisor and in
 * qemu-system-riscv64 -M virt, in the same run. Prints both times and their ratio.
 *
 *   npx tsx bench/boot/index.ts [--cpus N] [--runs N] [--cpu-prof DIR]
 */
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { guestArtifacts } from '../../src/guests/index.js';
import { cliArgs, repoRoot } from '../../test/helpers/paths.js';

const { values } = parseArgs({
  options: { cpus: { type: 'string', default: '1' }, runs: { type: 'string', default: '1' }, 'cpu-prof': { type: 'string' }, 'skip-qemu': { type: 'boolean' } },
});
const g = guestArtifacts();
const APPEND = 'console=ttyS0';
const TIMEOUT_MS = 600_000;

/** Spawns `cmd` and resolves with the milliseconds until `marker` appears on its stdout; then kills it. */
function timeToMarker(cmd: string, args: string[], marker: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { cwd: repoRoot, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd}: no marker after ${TIMEOUT_MS} ms\n${out.slice(-2000)}\n${err}`));
    }, TIMEOUT_MS);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      if (out.includes(marker)) {
        const ms = performance.now() - t0;
        clearTimeout(timer);
        // Power off cleanly (lets --cpu-prof write its profile), then make sure it is gone.
        child.stdin.write('\npoweroff -f\n');
        const kill = setTimeout(() => child.kill('SIGKILL'), 15_000);
        child.on('exit', () => {
          clearTimeout(kill);
          resolve(ms);
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
const tv: number[] = [];
const qemu: number[] = [];
for (let i = 0; i < runs; i++) {
  const prof = values['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', values['cpu-prof']] : [];
  tv.push(await timeToMarker(process.execPath, [...prof, ...cliArgs('run', '--kernel', g.kernel, '--initrd', g.initramfs, '--append', APPEND, '--cpus', cpus)], g.marker));
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
const best = (xs: number[]): number => Math.min(...xs);
const fmt = (ms: number): string => (ms / 1000).toFixed(2) + ' s';
console.log(`boot to "${g.marker}" (${cpus} cpu, ${runs} run${runs > 1 ? 's' : ''}, best of):`);
console.log(`  typevisor            ${fmt(best(tv))}   [${tv.map(fmt).join(', ')}]`);
if (qemu.length) {
  console.log(`  qemu-system-riscv64  ${fmt(best(qemu))}   [${qemu.map(fmt).join(', ')}]`);
  console.log(`  ratio typevisor/qemu ${(best(tv) / best(qemu)).toFixed(1)}x`);
}
