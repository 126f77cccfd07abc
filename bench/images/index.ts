/**
 * Image benchmark: the debian-riscv64 image booted to its login prompt (OpenSBI → U-Boot → the disk's
 * extlinux.conf → Debian's kernel, initramfs and systemd) in typevisor and in qemu-system-riscv64 -M virt (TCG),
 * in the same run, each on a fresh thin overlay; and the time `typevisor guest build debian` takes from the
 * cache, and with --cold, rebuilt from scratch (--force; the .deb downloads stay cached in
 * ~/.cache/typevisor/debian-debs unless --cold-downloads clears them first).
 *
 *   npx tsx bench/images/index.ts [--skip-qemu] [--skip-typevisor] [--skip-build] [--cold] [--cold-downloads]
 *                                 [--jit] [--memory MIB]
 *
 * Figures are wall time and CPU time (user + system of the emulator process, all threads): on a loaded
 * machine compare CPU times.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { debianArtifacts } from '../../src/guests/index.js';
import { createDisk } from '../../src/storage/index.js';
import { cliArgs, repoRoot } from '../../test/helpers/paths.js';

const { values } = parseArgs({
  options: {
    'skip-qemu': { type: 'boolean' },
    'skip-typevisor': { type: 'boolean' },
    'skip-build': { type: 'boolean' },
    cold: { type: 'boolean' },
    'cold-downloads': { type: 'boolean' },
    jit: { type: 'boolean' },
    memory: { type: 'string', default: '1024' },
  },
});
const MARKER = 'login:';
const TIMEOUT_MS = 4 * 3600_000;

interface Timing {
  wall: number;
  cpu: number;
}

function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * 1000) / 100; // own + children, USER_HZ ticks
}

/** Runs to exit (a build) or to `marker` on stdout (a boot, then killed); wall and CPU time. */
function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv, marker?: string): Promise<Timing> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { cwd: repoRoot, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let cpu = 0;
    // /proc is gone once the process is reaped: sample the CPU time while it runs.
    const sampler = setInterval(() => {
      try {
        cpu = cpuMs(child.pid!);
      } catch {
        /* exited */
      }
    }, 1000);
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd}: not done after ${TIMEOUT_MS} ms\n${out.slice(-2000)}`));
    }, TIMEOUT_MS);
    const done = (t: Timing) => {
      clearInterval(sampler);
      clearTimeout(timer);
      resolve(t);
    };
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      if (out.length > 1 << 20) out = out.slice(-(1 << 19));
      if (marker && out.includes(marker)) {
        const t = { wall: performance.now() - t0, cpu: cpuMs(child.pid!) };
        child.kill('SIGKILL');
        done(t);
      }
    });
    child.stderr.on('data', (d: Buffer) => (out += d.toString('latin1')));
    child.on('exit', (code) => {
      if (marker) {
        if (!out.includes(marker)) reject(new Error(`${cmd} exited (${code}) before the marker\n${out.slice(-2000)}`));
        return;
      }
      if (code !== 0) reject(new Error(`${cmd} failed (${code})\n${out.slice(-2000)}`));
      else done({ wall: performance.now() - t0, cpu });
    });
  });
}

const fmt = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const line = (name: string, t: Timing) => `  ${name.padEnd(34)} wall ${fmt(t.wall).padStart(9)}  cpu ${fmt(t.cpu).padStart(9)}`;
const load = () =>
  loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');

console.log(`debian-riscv64 image benchmark (load average ${load()} at start)`);
if (!values['skip-build']) {
  if (values.cold) {
    if (values['cold-downloads'])
      rmSync(join(process.env.HOME ?? '/root', '.cache/typevisor/debian-debs'), { recursive: true, force: true });
    const cold = await timed(process.execPath, cliArgs('guest', 'build', '--force', 'debian'), process.env);
    console.log(line(`build, cold${values['cold-downloads'] ? ' (downloads too)' : ' (.debs cached)'}`, cold));
  }
  const cached = await timed(process.execPath, cliArgs('guest', 'build', 'debian'), process.env);
  console.log(line('build, from cache', cached));
}
const a = debianArtifacts();
const work = mkdtempSync(join(tmpdir(), 'tv-bench-images-'));
try {
  const overlay = async (name: string) => {
    const path = join(work, `${name}.qcow2`);
    await createDisk(path, { format: 'qcow2', backingFile: a.disk, backingFormat: 'qcow2' });
    return path;
  };
  if (!values['skip-typevisor']) {
    const env = { ...process.env, TYPEVISOR_JIT: values.jit ? '1' : '0' };
    const disk = await overlay('typevisor');
    const t = await timed(
      process.execPath,
      cliArgs(
        'run',
        '--firmware',
        a.fwJump,
        '--kernel',
        a.uboot,
        '--kernel-format',
        'raw',
        '--memory',
        values.memory!,
        '--drive',
        `file=${disk},format=qcow2`,
      ),
      env,
      MARKER,
    );
    console.log(line(`boot to login, typevisor${values.jit ? ' (JIT)' : ''}`, t) + `  (load ${load()})`);
  }
  if (!values['skip-qemu']) {
    const disk = await overlay('qemu');
    const t = await timed(
      'qemu-system-riscv64',
      [
        '-M',
        'virt',
        '-m',
        values.memory!,
        '-nographic',
        '-bios',
        a.fwJump,
        '-kernel',
        a.uboot,
        '-drive',
        `file=${disk},format=qcow2,if=none,id=d0`,
        '-device',
        'virtio-blk-device,drive=d0',
        '-nic',
        'none',
      ],
      process.env,
      MARKER,
    );
    console.log(line('boot to login, qemu-system-riscv64 (TCG)', t) + `  (load ${load()})`);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
