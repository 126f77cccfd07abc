/**
 * What a VM process (process mode) costs at rest under different Node/V8 flags and allocator settings: for each
 * variant a real daemon (built CLI, --vm-mode process) boots N Linux VMs (default 3, 96 MiB, busybox initramfs,
 * no root disk) with TYPEVISOR_VM_PROCESS_FLAGS / the environment set, waits for every guest agent, lets them
 * rest, and reads each VM process's /proc/PID/smaps_rollup: RSS, PSS (shared pages split among the processes
 * mapping them) and USS (private pages: what one more VM adds). It also times start → ready marker, and a
 * shell loop in the guest (exec's own duration) as a check that the variant does not slow the emulator.
 *
 *   npx tsx bench/vm-mode/process-memory.ts [--count 3] [--memory 96] [--variants base,arena2,...] [--rest 10]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { VmView } from '../../src/host/actions.js';
import { guestArtifacts } from '../../src/guests/index.js';
import { VM_PROCESS_FLAGS_ENV } from '../../src/vm/vm-process-flags.js';
import { removeHome, startDaemonProcess, vmProcesses, waitFor, type DaemonHandle } from '../../test/host/daemon-harness.js';
import { loadAverage, MiB } from './proc-memory.js';

interface Variant {
  flags: string;
  env?: Record<string, string>;
}

/** Before this benchmark: the only tuned flag was the young generation's size. */
const BASE = '--max-semi-space-size=1';
const VARIANTS: Record<string, Variant> = {
  none: { flags: '' },
  base: { flags: BASE },
  arena2: { flags: BASE, env: { MALLOC_ARENA_MAX: '2' } },
  arena1: { flags: BASE, env: { MALLOC_ARENA_MAX: '1' } },
  pool1: { flags: `${BASE} --v8-pool-size=1` },
  sgc: { flags: `${BASE} --single-threaded-gc` },
  nowasm: { flags: `${BASE} --no-expose-wasm` },
  all: { flags: `${BASE} --v8-pool-size=1 --single-threaded-gc`, env: { MALLOC_ARENA_MAX: '2' } },
};

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '3' },
    memory: { type: 'string', default: '96' },
    variants: { type: 'string', default: 'base,arena2,pool1,sgc,all' },
    rest: { type: 'string', default: '10' },
  },
});
const COUNT = Number(values.count);
const MEMORY = Number(values.memory);
const REST_MS = Number(values.rest) * 1000;
const names = Array.from({ length: COUNT }, (_, i) => `p${i}`);
/** A shell loop the guest's CPU runs through in about a second on an idle host. */
const LOOP = 'i=0; while [ $i -lt 5000 ]; do i=$((i+1)); done';

interface Smaps {
  rss: number;
  pss: number;
  uss: number;
}

function smapsOf(pid: number): Smaps {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
  return { rss: field('Rss'), pss: field('Pss'), uss: field('Private_Clean') + field('Private_Dirty') };
}

interface Result {
  variant: string;
  perVm: Smaps;
  threads: number;
  markerMs: number[];
  loopMs: number[];
  load: string;
}

async function exec(d: DaemonHandle, name: string, script: string): Promise<number> {
  const r = await d.client.json<{ exitCode: number; durationMs: number }>(
    'POST',
    `/vms/${name}/exec`,
    { argv: ['sh', '-c', script], timeoutMs: 300_000 },
    360_000,
  );
  if (r.exitCode !== 0) throw new Error(`${name}: exec exited ${r.exitCode}`);
  return r.durationMs;
}

async function measure(variant: string): Promise<Result> {
  const v = VARIANTS[variant];
  if (!v) throw new Error(`unknown variant ${variant}: ${Object.keys(VARIANTS).join(', ')}`);
  const d = await startDaemonProcess({
    runtime: 'machine',
    vmMode: 'process',
    built: true,
    startTimeoutMs: 60_000,
    env: { [VM_PROCESS_FLAGS_ENV]: v.flags, ...v.env },
  });
  try {
    for (const name of names) await d.client.json('POST', '/vms', { name, memoryMiB: MEMORY, rootDisk: false });
    const markerMs = await Promise.all(
      names.map(async (name) => {
        const marker = (await d.client.json<VmView>('GET', `/vms/${name}`)).bootMarker!;
        const t0 = performance.now();
        await d.client.json('POST', `/vms/${name}/actions/start`, {}, 120_000);
        await waitFor(
          `${name} boot`,
          async () => ((await d.client.text(`/vms/${name}/console.log`)).toString('latin1').includes(marker) ? true : undefined),
          900_000,
          200,
        );
        return performance.now() - t0;
      }),
    );
    await Promise.all(names.map((name) => exec(d, name, 'true')));
    const loopMs: number[] = [];
    for (const name of names) loopMs.push(await exec(d, name, LOOP));
    await new Promise((r) => setTimeout(r, REST_MS));
    const procs = vmProcesses(d.home);
    if (procs.length !== COUNT) throw new Error(`${procs.length} VM processes, expected ${COUNT}`);
    const all = procs.map((p) => smapsOf(p.pid));
    const threads = Number(/^Threads:\s+(\d+)/m.exec(readFileSync(`/proc/${procs[0]!.pid}/status`, 'utf8'))?.[1]);
    const mean = (k: keyof Smaps) => all.reduce((s, m) => s + m[k], 0) / all.length;
    return {
      variant,
      perVm: { rss: mean('rss'), pss: mean('pss'), uss: mean('uss') },
      threads,
      markerMs,
      loopMs,
      load: loadAverage(),
    };
  } finally {
    await d.stop();
    removeHome(d.home);
  }
}

guestArtifacts();
const results: Result[] = [];
for (const variant of values.variants.split(',')) {
  console.error(`${variant}: starting, load ${loadAverage()}`);
  const r = await measure(variant);
  results.push(r);
  console.error(
    `${variant}: RSS ${(r.perVm.rss / MiB).toFixed(1)} PSS ${(r.perVm.pss / MiB).toFixed(1)} USS ${(r.perVm.uss / MiB).toFixed(1)} MiB`,
  );
}
const s = (ms: number[]) => ms.map((m) => (m / 1000).toFixed(1)).join(' / ');
console.log(`${COUNT} VM processes of ${MEMORY} MiB at rest, mean per process; ${Number(values.rest)} s after the last exec`);
console.log('| variant | flags / env | RSS | PSS | USS | threads | start → marker (s) | guest shell loop (s) | load after |');
console.log('| ------- | ----------- | --- | --- | --- | ------- | ------------------ | -------------------- | ---------- |');
for (const r of results) {
  const v = VARIANTS[r.variant]!;
  const env = Object.entries(v.env ?? {}).map(([k, x]) => `${k}=${x}`);
  console.log(
    `| ${r.variant} | ${[v.flags, ...env].join(' ') || '(none)'} | ${(r.perVm.rss / MiB).toFixed(1)} | ${(r.perVm.pss / MiB).toFixed(1)} | ${(r.perVm.uss / MiB).toFixed(1)} | ${r.threads} | ${s(r.markerMs)} | ${s(r.loopMs)} | ${r.load} |`,
  );
}
