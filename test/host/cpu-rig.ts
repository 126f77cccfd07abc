/**
 * Real Linux guests on a daemon, driven through their consoles (busy loops on demand), and their threads' CPU
 * measured from the host (/proc/<pid>/task/<tid>/schedstat): shared by the CPU share tests and bench/sched.
 */
import { readFileSync } from 'node:fs';
import type WebSocket from 'ws';
import type { VmView } from '../../src/host/actions.js';
import { guestArtifacts } from '../../src/guests/index.js';
import { waitFor, type DaemonHandle } from './daemon-harness.js';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Guest {
  name: string;
  tid: number;
  ws: WebSocket;
}

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
      const ws = this.d.client.websocket(`/vms/${s.name}/console`);
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      });
      this.guests.set(s.name, { name: s.name, tid: vm.cpu.threads[0]!, ws });
    }
  }

  busy(name: string): void {
    this.guests.get(name)!.ws.send('while :; do :; done\n');
  }
  idle(name: string): void {
    this.guests.get(name)!.ws.send('\x03');
  }

  /** ns on a CPU and waiting for one, per guest thread. */
  times(name: string): { cpu: number; wait: number } {
    const [cpu, wait] = readFileSync(`/proc/${this.d.proc.pid}/task/${this.guests.get(name)!.tid}/schedstat`, 'utf8')
      .split(' ')
      .map(Number);
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

  close(): void {
    for (const g of this.guests.values()) g.ws.close();
  }
}

export function hostIdleJiffies(): { idle: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { idle: f[3]! + f[4]!, total };
}
