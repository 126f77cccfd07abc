/**
 * Load benchmark: a real daemon creates and starts N VMs (default 20) concurrently from the default image
 * (kernel + thin qcow2 overlay of the built root filesystem), and we wait until every one has printed the
 * guest's ready marker. Reports time until all booted, host memory per VM (daemon RSS growth and guest RAM
 * actually allocated), and failures. The same N guests are then booted concurrently under
 * qemu-system-riscv64 (TCG) with their own qcow2 overlays, in the same run, for the ratio.
 *
 *   npx tsx bench/load/index.ts [--count N] [--memory MIB] [--skip-qemu] [--timeout SECONDS]
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { guestArtifacts } from '../../src/guests/index.js';
import type { HostInfo, VmView } from '../../src/host/actions.js';
import { removeHome, startDaemonProcess, tempHome } from '../../test/host/daemon-harness.js';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '20' },
    memory: { type: 'string', default: '128' },
    timeout: { type: 'string', default: '1800' },
    'skip-qemu': { type: 'boolean' },
  },
});
const COUNT = Number(values.count);
const MEMORY = Number(values.memory);
const TIMEOUT_MS = Number(values.timeout) * 1000;
const g = guestArtifacts();
const MiB = 1024 * 1024;

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

async function typevisor(): Promise<{
  allMs: number;
  perVm: number[];
  failures: string[];
  rssPerVm: number;
  residentPerVm: number;
  createMs: number;
}> {
  const d = await startDaemonProcess({ runtime: 'machine', startTimeoutMs: 60_000 });
  try {
    const idle = (await d.client.json<HostInfo>('GET', '/host')).daemon.rssBytes;
    const names = Array.from({ length: COUNT }, (_, i) => `load-${String(i + 1).padStart(2, '0')}`);
    const tc = performance.now();
    await Promise.all(names.map((name) => d.client.json('POST', '/vms', { name, memoryMiB: MEMORY })));
    const createMs = performance.now() - tc;
    const marker = (await d.client.json<VmView>('GET', `/vms/${names[0]}`)).bootMarker ?? g.marker;
    const failures: string[] = [];
    const perVm: number[] = [];
    const t0 = performance.now();
    await Promise.all(
      names.map(async (name) => {
        try {
          await d.client.json('POST', `/vms/${name}/actions/start`, {});
          for (;;) {
            const log = (await d.client.text(`/vms/${name}/console.log`)).toString('latin1');
            if (log.includes(marker)) break;
            const vm = await d.client.json<VmView>('GET', `/vms/${name}`);
            if (vm.state !== 'running') throw new Error(`${vm.state}: ${vm.stateReason ?? ''}`);
            if (performance.now() - t0 > TIMEOUT_MS) throw new Error('no marker before the timeout');
            await new Promise((r) => setTimeout(r, 1000));
          }
          perVm.push(performance.now() - t0);
        } catch (err) {
          failures.push(`${name}: ${(err as Error).message}`);
        }
      }),
    );
    const allMs = performance.now() - t0;
    const host = await d.client.json<HostInfo>('GET', '/host');
    const rssPerVm = (host.daemon.rssBytes - idle) / COUNT;
    const residentPerVm = host.usage.residentBytes / COUNT;
    await Promise.all(names.map((n) => d.client.json('DELETE', `/vms/${n}?force=true`)));
    return { allMs, perVm, failures, rssPerVm, residentPerVm, createMs };
  } finally {
    await d.stop();
    removeHome(d.home);
  }
}

async function qemu(): Promise<{ allMs: number; failures: string[]; rssPerVm: number }> {
  const dir = tempHome('tv-load-qemu-');
  const children: ChildProcess[] = [];
  try {
    const failures: string[] = [];
    const rss: number[] = [];
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: COUNT }, (_, i) => {
        const overlay = join(dir, `q${i}.qcow2`);
        execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', g.rootfs, '-F', 'raw', overlay]);
        // The guest kernel has no PCI, so the disk must be virtio-mmio (virtio-blk-device), as typevisor's is.
        const child = spawn(
          'qemu-system-riscv64',
          [
            '-M',
            'virt',
            '-m',
            String(MEMORY),
            '-nographic',
            '-kernel',
            g.kernel,
            '-append',
            'console=ttyS0 root=/dev/vda rw',
            '-drive',
            `file=${overlay},format=qcow2,if=none,id=root`,
            '-device',
            'virtio-blk-device,drive=root',
          ],
          { stdio: ['ignore', 'pipe', 'pipe'] },
        );
        children.push(child);
        return new Promise<void>((resolve) => {
          let out = '';
          const timer = setTimeout(() => {
            failures.push(`qemu ${i}: no marker before the timeout`);
            resolve();
          }, TIMEOUT_MS);
          child.stdout!.on('data', (b: Buffer) => {
            out += b.toString('latin1');
            if (out.includes(g.marker)) {
              clearTimeout(timer);
              rss.push(rssOf(child.pid!));
              resolve();
            }
          });
          child.on('exit', (code) => {
            if (!out.includes(g.marker)) {
              clearTimeout(timer);
              failures.push(`qemu ${i}: exited ${code}`);
              resolve();
            }
          });
        });
      }),
    );
    return { allMs: performance.now() - t0, failures, rssPerVm: rss.reduce((a, b) => a + b, 0) / Math.max(1, rss.length) };
  } finally {
    for (const c of children) c.kill('SIGKILL');
    removeHome(dir);
  }
}

const tv = await typevisor();
console.log(`typevisor: ${COUNT} VMs x ${MEMORY} MiB from the default image (qcow2 overlays)`);
console.log(`  create all (concurrent): ${tv.createMs.toFixed(0)} ms`);
console.log(
  `  start → all booted to "${g.marker}": ${(tv.allMs / 1000).toFixed(1)} s (first ${((Math.min(...tv.perVm) || 0) / 1000).toFixed(1)} s)`,
);
console.log(
  `  host memory per VM: daemon RSS growth ${(tv.rssPerVm / MiB).toFixed(1)} MiB, guest RAM allocated ${(tv.residentPerVm / MiB).toFixed(1)} MiB`,
);
console.log(`  failures: ${tv.failures.length}${tv.failures.length ? '\n    ' + tv.failures.join('\n    ') : ''}`);
if (!values['skip-qemu']) {
  const q = await qemu();
  console.log(`qemu-system-riscv64 (TCG): ${COUNT} VMs, same kernel, own qcow2 overlays`);
  console.log(
    `  start → all booted: ${(q.allMs / 1000).toFixed(1)} s; RSS per VM ${(q.rssPerVm / MiB).toFixed(1)} MiB; failures ${q.failures.length}`,
  );
  console.log(
    `ratio typevisor/qemu: all-booted time ${(tv.allMs / q.allMs).toFixed(1)}x, memory per VM ${(tv.rssPerVm / q.rssPerVm).toFixed(2)}x`,
  );
}
