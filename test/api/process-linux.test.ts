/**
 * Process mode with real Linux guests, through a real daemon process and its API (the evidence):
 *  - kill -9 of the daemon while 3 VMs run, then a new daemon: all 3 still run, their consoles answer typed
 *    commands, stats advance, their NICs reach the (new) network, stop works, and no guest rebooted (its
 *    /proc/uptime went on, the boot marker is in its console log once);
 *  - a VM process killed with SIGKILL marks only that VM crashed, with the reason; the others run on.
 * Needs the images `typevisor guest build` produces.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { VmView } from '../../src/host/actions.js';
import { requireGuest } from '../helpers/guest.js';
import { VmConsole } from '../helpers/vm-console.js';
import { removeHome, startDaemonProcess, vmProcesses, waitFor, type DaemonHandle } from '../host/daemon-harness.js';

const NAMES = ['pa', 'pb', 'pc'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function uptime(c: VmConsole): Promise<number> {
  const out = await c.sh('cat /proc/uptime');
  const v = Number(out.trim().split(/\s+/)[0]);
  assert.ok(Number.isFinite(v), `uptime from ${JSON.stringify(out)}`);
  return v;
}

test(
  'process mode, Linux guests: kill -9 of the daemon and reattach; SIGKILL of one VM process',
  { timeout: 1_200_000 },
  async (t) => {
    requireGuest();
    let d: DaemonHandle = await startDaemonProcess({ runtime: 'machine', vmMode: 'process' });
    const home = d.home;
    const get = (n: string) => d.client.json<VmView>('GET', `/vms/${n}?stats=true`);
    const consoleText = async (n: string) => (await d.client.text(`/vms/${n}/console.log`)).toString('latin1');
    const consoles: VmConsole[] = [];
    try {
      for (const name of NAMES) await d.client.json('POST', '/vms', { name, memoryMiB: 128 });
      const t0 = Date.now();
      await Promise.all(NAMES.map((n) => d.client.json('POST', `/vms/${n}/actions/start`, {})));
      const marker = (await get('pa')).bootMarker!;
      await Promise.all(
        NAMES.map((n) =>
          waitFor(`${n} boot`, async () => ((await consoleText(n)).includes(marker) ? true : undefined), 600_000, 500),
        ),
      );
      t.diagnostic(`3 Linux VMs (processes) booted to the marker in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      const before = new Map<string, { uptime: number; at: number }>();
      for (const n of NAMES) {
        const c = await VmConsole.open(d.client, n);
        before.set(n, { uptime: await uptime(c), at: Date.now() });
        c.close();
      }
      const procs = vmProcesses(home);
      assert.deepEqual(
        procs.map((p) => p.name),
        NAMES,
      );

      await d.stop('SIGKILL');
      await sleep(2000);
      assert.deepEqual(vmProcesses(home), procs, 'the VM processes outlived the daemon');
      d = await startDaemonProcess({ home, runtime: 'machine', vmMode: 'process' });

      for (const n of NAMES) {
        const v = await get(n);
        assert.equal(v.state, 'running', `${n}: ${v.stateReason}`);
        const c = await VmConsole.open(d.client, n);
        consoles.push(c);
        // The console answers, and the guest kept its uptime: it did not reboot.
        const up = await uptime(c);
        const b = before.get(n)!;
        const wall = (Date.now() - b.at) / 1000;
        assert.ok(up >= b.uptime + wall * 0.5, `${n}: uptime ${up} s after ${b.uptime} s and ${wall.toFixed(1)} s of wall time`);
        assert.equal((await consoleText(n)).split(marker).length, 2, `${n} printed its boot marker once`);
        assert.match(await c.sh('echo tv-$((6*7))'), /^tv-42$/m);
        // Its NIC reaches the new daemon's network worker (the gateway answers).
        assert.match(await c.sh('ping -c 1 -W 5 10.0.2.2'), /1 packets transmitted, 1 (packets )?received/);
        // Stats advance.
        const s1 = (await get(n)).stats!;
        await c.sh('i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done');
        const s2 = (await get(n)).stats!;
        assert.ok(s2.instret > s1.instret, `${n}: instructions ${s1.instret} → ${s2.instret}`);
        assert.ok(s2.uptimeSeconds >= b.uptime, `${n}: stats uptime ${s2.uptimeSeconds} s continues`);
      }
      t.diagnostic('all 3 reattached: consoles, NICs and stats answer; no guest rebooted');

      // SIGKILL of one VM process: only that VM crashes.
      const victim = vmProcesses(home).find((p) => p.name === 'pb')!;
      process.kill(victim.pid, 'SIGKILL');
      const crashed = await waitFor(
        'pb crashed',
        async () => {
          const v = await get('pb');
          return v.state === 'crashed' ? v : undefined;
        },
        30_000,
      );
      // Reattached: this daemon is not the process's parent, so it cannot learn the signal.
      assert.match(crashed.stateReason ?? '', new RegExp(`VM process \\(pid ${victim.pid}\\) ended unexpectedly`));
      for (const [i, n] of [
        [0, 'pa'],
        [2, 'pc'],
      ] as const) {
        assert.equal((await get(n)).state, 'running');
        assert.match(await consoles[i]!.sh('echo still-$((1+1))'), /^still-2$/m);
      }

      // Control: stop works on a reattached VM, and its process is gone.
      await d.client.json('POST', '/vms/pa/actions/stop', {});
      assert.equal((await get('pa')).state, 'stopped');
      assert.deepEqual(
        vmProcesses(home).map((p) => p.name),
        ['pc'],
      );
    } finally {
      for (const c of consoles) c.close();
      await d.stop();
      removeHome(home);
    }
  },
);
