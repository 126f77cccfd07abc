/**
 * Real Linux guests on a daemon running busy loops started and stopped with `typevisor exec` (the guest agent,
 * not the console: a keystroke typed before the console shell is interactive kills it, and the guest powers
 * off), and their threads' CPU measured from the host (/proc/<tid>/task/<tid>/schedstat, whichever process, the
 * daemon (thread mode) or the VM's own (process mode), the thread is in): shared by the CPU
 * share tests and bench/sched.
 */
import { readFileSync } from 'node:fs';
import type { VmView } from '../../src/host/actions.js';
import { guestArtifacts } from '../../src/guests/index.js';
import { runCli } from '../helpers/cli.js';
import { waitFor, type DaemonHandle } from './daemon-harness.js';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A guest at rest (its console shell waiting, timer ticks only) uses far less of a core than this. */
export const IDLE_GUEST_SHARE = 0.1;

interface Guest {
  name: string;
  tid: number;
  /** Guest pid of the running busy loop, if any. */
  loop: number | null;
}

/** Starts a busy loop in the background (no tty, output discarded) and prints its pid. */
const START_LOOP = 'while :; do :; done </dev/null >/dev/null 2>&1 & echo $!';

export class Rig {
  readonly guests = new Map<string, Guest>();
  constructor(readonly d: DaemonHandle) {}

  async boot(specs: { name: string; cpu: object }[]): Promise<void> {
    guestArtifacts(); // a missing guest image fails here with the reason
    for (const s of specs) await this.d.client.json('POST', '/vms', { name: s.name, memoryMiB: 96, rootDisk: false, cpu: s.cpu });
    await Promise.all(specs.map((s) => this.d.client.json('POST', `/vms/${s.name}/actions/start`, {})));
    for (const s of specs) {
      const vm = await this.d.client.json<VmView>('GET', `/vms/${s.name}`);
      await waitFor(
        `${s.name} boot`,
        async () =>
          (await this.d.client.text(`/vms/${s.name}/console.log`)).toString('latin1').includes(vm.bootMarker!) ? true : undefined,
        600_000,
        500,
      );
      this.guests.set(s.name, { name: s.name, tid: vm.cpu.threads[0]!, loop: null });
    }
    // The agent answers once it runs: every guest can take commands before a test starts.
    await Promise.all(specs.map((s) => this.exec(s.name, 'true')));
  }

  /** `typevisor exec NAME -- sh -c SCRIPT`: its stdout, or an error with the status and stderr. */
  async exec(name: string, script: string): Promise<string> {
    const r = await runCli(this.d.home, ['exec', name, '--timeout', '120', '--', 'sh', '-c', script], { timeoutMs: 180_000 });
    if (r.status !== 0) {
      const state = (await this.d.client.json<VmView>('GET', `/vms/${name}`).catch(() => null))?.state ?? 'unknown';
      throw new Error(`typevisor exec ${name} -- sh -c '${script}' exited ${r.status} (VM ${state}): ${r.stderr.trim()}`);
    }
    return r.stdout;
  }

  /** Starts a busy loop in the guest; it runs until idle(). */
  async busy(name: string): Promise<void> {
    const g = this.guests.get(name)!;
    if (g.loop !== null) return;
    const pid = Number((await this.exec(name, START_LOOP)).trim());
    if (!Number.isInteger(pid) || pid <= 1) throw new Error(`${name}: the busy loop did not report its pid`);
    g.loop = pid;
  }

  /** Stops the guest's busy loop (kill fails, and so does this, if the loop is not running). */
  async idle(name: string): Promise<void> {
    const g = this.guests.get(name)!;
    if (g.loop === null) return;
    await this.exec(name, `kill ${g.loop}`);
    g.loop = null;
  }

  /** ns on a CPU and waiting for one, per guest thread (a thread of the daemon or of the VM's process). */
  times(name: string): { cpu: number; wait: number } {
    const tid = this.guests.get(name)!.tid;
    const [cpu, wait] = readFileSync(`/proc/${tid}/task/${tid}/schedstat`, 'utf8').split(' ').map(Number);
    return { cpu: cpu!, wait: wait! };
  }

  /** Share of one core each guest used, and waited, over `ms`. */
  async measure(names: string[], ms: number): Promise<Map<string, { used: number; waited: number }>> {
    const before = new Map(names.map((n) => [n, this.times(n)]));
    const t0 = performance.now();
    await sleep(ms);
    const wall = (performance.now() - t0) * 1e6;
    return new Map(
      names.map((n) => {
        const a = before.get(n)!;
        const b = this.times(n);
        return [n, { used: (b.cpu - a.cpu) / wall, waited: (b.wait - a.wait) / wall }];
      }),
    );
  }

  set(name: string, cpu: object): Promise<VmView> {
    return this.d.client.json<VmView>('PATCH', `/vms/${name}`, { cpu });
  }
}

export function hostIdleJiffies(): { idle: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { idle: f[3]! + f[4]!, total };
}
