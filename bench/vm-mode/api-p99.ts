/**
 * Issue 17's API benchmark: the API's latency while 20 VMs keep the CPU busy, in process mode and in thread mode.
 * For each mode a real daemon (the built CLI, `--vm-mode process|thread`) boots N Linux VMs (default 20, 96 MiB,
 * the default busybox initramfs guest, no root disk) in batches, then
 *   1. measures host memory per booted VM at rest (RSS and PSS: thread mode, the daemon's growth; process mode,
 *      the VM processes' plus the daemon's growth),
 *   2. fires a steady open-loop stream of API requests (GET /vms, GET /vms/:name, GET /vms/:name/stats, and a
 *      PATCH /vms/:name that flips autostart) for a while with the guests at rest,
 *   3. starts a busy loop in every guest through the guest agent (POST /vms/:name/exec, what `typevisor exec`
 *      sends) and fires the same stream again,
 * and prints p50/p95/p99/max per request kind and phase, the load average, and the CPU the VMs used.
 *
 *   npx tsx bench/vm-mode/api-p99.ts [--count 20] [--memory 96] [--modes process,thread] [--seconds 60]
 *                                    [--rate 20] [--batch 5] [--rest-seconds 30]
 * Requests go over the daemon's unix socket with the CLI's client (src/cli/client.ts), as `typevisor` sends them.
 */
import { parseArgs } from 'node:util';
import type { VmView } from '../../src/host/actions.js';
import { guestArtifacts } from '../../src/guests/index.js';
import { removeHome, startDaemonProcess, vmProcesses, waitFor, type DaemonHandle } from '../../test/host/daemon-harness.js';
import { cpuSecondsOf, loadAverage, memoryOf, MiB, sumMemory, type Memory } from './proc-memory.js';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '20' },
    memory: { type: 'string', default: '96' },
    modes: { type: 'string', default: 'process,thread' },
    seconds: { type: 'string', default: '60' },
    'rest-seconds': { type: 'string', default: '30' },
    rate: { type: 'string', default: '20' },
    batch: { type: 'string', default: '5' },
  },
});
const COUNT = Number(values.count);
const MEMORY = Number(values.memory);
const BUSY_SECONDS = Number(values.seconds);
const REST_SECONDS = Number(values['rest-seconds']);
const RATE = Number(values.rate);
const BATCH = Number(values.batch);
type Mode = 'process' | 'thread';

/** Starts a busy loop in the background (no tty, output discarded) and prints its pid (as test/host/cpu-rig.ts). */
const START_LOOP = 'while :; do :; done </dev/null >/dev/null 2>&1 & echo $!';
const KINDS = ['GET /vms', 'GET /vms/:name', 'GET /vms/:name/stats', 'PATCH /vms/:name'] as const;
type Kind = (typeof KINDS)[number];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const names = Array.from({ length: COUNT }, (_, i) => `b${i}`);

interface Phase {
  phase: string;
  latencies: Map<Kind, number[]>;
  errors: number;
  loadBefore: string;
  loadAfter: string;
  /** Host CPU cores the daemon and VM processes used on average during the phase. */
  cores: number;
}

interface ModeResult {
  mode: Mode;
  bootSeconds: number;
  perVm: Memory;
  phases: Phase[];
}

/** CPU seconds of the daemon (with its worker threads) and of every VM process. */
function vmCpuSeconds(d: DaemonHandle): number {
  return cpuSecondsOf(d.proc.pid!) + vmProcesses(d.home).reduce((s, p) => s + cpuSecondsOf(p.pid), 0);
}

async function request(d: DaemonHandle, kind: Kind, i: number): Promise<void> {
  const name = names[i % COUNT]!;
  switch (kind) {
    case 'GET /vms':
      await d.client.json('GET', '/vms');
      return;
    case 'GET /vms/:name':
      await d.client.json('GET', `/vms/${name}`);
      return;
    case 'GET /vms/:name/stats':
      await d.client.json('GET', `/vms/${name}/stats?history=60`);
      return;
    case 'PATCH /vms/:name':
      await d.client.json('PATCH', `/vms/${name}`, { autostart: i % 2 === 0 });
  }
}

/**
 * Open loop: a request is sent every 1/RATE s whatever the earlier ones are doing (a slow reply does not hold
 * back the next, so a stall shows in the latencies rather than as fewer requests), kinds in turn.
 */
async function stream(d: DaemonHandle, phase: string, seconds: number): Promise<Phase> {
  const latencies = new Map<Kind, number[]>(KINDS.map((k) => [k, []]));
  let errors = 0;
  const loadBefore = loadAverage();
  const cpu0 = vmCpuSeconds(d);
  const t0 = performance.now();
  const total = Math.round(seconds * RATE);
  const inflight: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / RATE;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    const kind = KINDS[i % KINDS.length]!;
    const sent = performance.now();
    inflight.push(
      request(d, kind, Math.floor(i / KINDS.length)).then(
        () => void latencies.get(kind)!.push(performance.now() - sent),
        () => void errors++,
      ),
    );
  }
  await Promise.all(inflight);
  const wall = (performance.now() - t0) / 1000;
  return { phase, latencies, errors, loadBefore, loadAfter: loadAverage(), cores: (vmCpuSeconds(d) - cpu0) / wall };
}

async function exec(d: DaemonHandle, name: string, script: string): Promise<string> {
  const r = await d.client.json<{ exitCode: number; stdout: string; stderr: string }>(
    'POST',
    `/vms/${name}/exec`,
    { argv: ['sh', '-c', script], timeoutMs: 120_000 },
    180_000,
  );
  if (r.exitCode !== 0) throw new Error(`${name}: exec exited ${r.exitCode}: ${Buffer.from(r.stderr, 'base64').toString()}`);
  return Buffer.from(r.stdout, 'base64').toString();
}

function hostMemory(d: DaemonHandle): Memory {
  return sumMemory([memoryOf(d.proc.pid!), ...vmProcesses(d.home).map((p) => memoryOf(p.pid))]);
}

async function measure(mode: Mode): Promise<ModeResult> {
  const d = await startDaemonProcess({ runtime: 'machine', vmMode: mode, built: true, startTimeoutMs: 60_000 });
  try {
    await sleep(2000);
    const idle = memoryOf(d.proc.pid!);
    const t0 = performance.now();
    for (const name of names) await d.client.json('POST', '/vms', { name, memoryMiB: MEMORY, rootDisk: false });
    for (let b = 0; b < COUNT; b += BATCH) {
      const batch = names.slice(b, b + BATCH);
      await Promise.all(batch.map((name) => d.client.json('POST', `/vms/${name}/actions/start`, {}, 120_000)));
      await Promise.all(
        batch.map(async (name) => {
          const marker = (await d.client.json<VmView>('GET', `/vms/${name}`)).bootMarker!;
          await waitFor(
            `${name} boot`,
            async () =>
              (await d.client.text(`/vms/${name}/console.log`)).toString('latin1').includes(marker) ? true : undefined,
            900_000,
            500,
          );
        }),
      );
      console.error(`${mode}: ${b + batch.length} VMs booted, load ${loadAverage()}`);
    }
    // The agent answers once it runs: every guest takes commands before the measurement starts.
    await Promise.all(names.map((name) => exec(d, name, 'true')));
    const bootSeconds = (performance.now() - t0) / 1000;
    await sleep(5000); // the boots' garbage collected, the guests at rest
    const all = hostMemory(d);
    const perVm = { rss: (all.rss - idle.rss) / COUNT, pss: (all.pss - idle.pss) / COUNT };
    const phases: Phase[] = [];
    phases.push(await stream(d, `${COUNT} VMs at rest`, REST_SECONDS));
    for (const name of names) {
      const pid = Number((await exec(d, name, START_LOOP)).trim());
      if (!Number.isInteger(pid) || pid <= 1) throw new Error(`${name}: the busy loop did not report its pid`);
    }
    await sleep(3000);
    phases.push(await stream(d, `${COUNT} VMs busy`, BUSY_SECONDS));
    return { mode, bootSeconds, perVm, phases };
  } finally {
    await d.stop();
    removeHome(d.home);
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN;
}

guestArtifacts(); // a missing guest image fails here with the reason
const results: ModeResult[] = [];
for (const mode of values.modes.split(',') as Mode[]) {
  console.error(`${mode}: starting, load ${loadAverage()}`);
  results.push(await measure(mode));
}

console.log(`${COUNT} VMs of ${MEMORY} MiB (busybox initramfs, no root disk); ${RATE} requests/s, kinds in turn`);
console.log('| mode | booted in | host memory per VM at rest (RSS / PSS) | VMs per GiB (PSS) |');
console.log('| ---- | --------- | -------------------------------------- | ----------------- |');
for (const r of results)
  console.log(
    `| ${r.mode} | ${r.bootSeconds.toFixed(0)} s | ${(r.perVm.rss / MiB).toFixed(1)} / ${(r.perVm.pss / MiB).toFixed(1)} MiB | ${(1024 / (r.perVm.pss / MiB)).toFixed(1)} |`,
  );
console.log('');
console.log('| mode | phase (load before → after; VM CPU) | request | n | p50 | p95 | p99 | max |');
console.log('| ---- | ----------------------------------- | ------- | - | --- | --- | --- | --- |');
for (const r of results)
  for (const p of r.phases) {
    const all = [...p.latencies.values()].flat();
    for (const [kind, ms] of [...p.latencies.entries(), ['all', all] as const]) {
      const s = [...ms].sort((a, b) => a - b);
      const f = (q: number) => `${percentile(s, q).toFixed(1)} ms`;
      console.log(
        `| ${r.mode} | ${p.phase} (${p.loadBefore} → ${p.loadAfter}; ${p.cores.toFixed(2)} cores) | ${kind} | ${s.length} | ${f(0.5)} | ${f(0.95)} | ${f(0.99)} | ${s.at(-1)?.toFixed(1)} ms |`,
      );
    }
    if (p.errors) console.log(`| ${r.mode} | ${p.phase} | errors | ${p.errors} | | | | |`);
  }
