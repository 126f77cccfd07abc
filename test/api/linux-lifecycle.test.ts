/**
 * The lifecycle evidence with real Linux guests: three VMs from the default image (kernel + a qcow2
 * overlay of the built root filesystem) through the daemon API: console commands over the WebSocket, pause
 * (instructions stop, CPU drops), resume, graceful shutdown through the guest agent, delete, and consistent
 * state files across a daemon restart. Needs the images `typevisor guest build` produces.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ActionOutcome, VmView } from '../../src/host/actions.js';
import { requireGuest } from '../helpers/guest.js';
import { removeHome, startDaemonProcess, waitFor, type DaemonHandle } from '../host/daemon-harness.js';

const NAMES = ['lin1', 'lin2', 'lin3'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('three Linux VMs: console, pause/resume, graceful shutdown, delete, restart', { timeout: 900_000 }, async (t) => {
  requireGuest();
  let d: DaemonHandle = await startDaemonProcess({ runtime: 'machine' });
  const home = d.home;
  const get = (n: string) => d.client.json<VmView>('GET', `/vms/${n}`);
  const act = (n: string, a: string, body: unknown = {}) => d.client.json<ActionOutcome>('POST', `/vms/${n}/actions/${a}`, body);
  const fileState = (n: string) => (JSON.parse(readFileSync(join(home, 'vms', n, 'vm.json'), 'utf8')) as { state: string }).state;
  const consoleText = async (n: string) => (await d.client.text(`/vms/${n}/console.log`)).toString('latin1');
  try {
    for (const name of NAMES) {
      const vm = await d.client.json<VmView>('POST', '/vms', { name, memoryMiB: 128 });
      assert.equal(vm.image, 'default');
      assert.equal(vm.config.disks[0]!.format, 'qcow2');
    }
    const t0 = Date.now();
    await Promise.all(NAMES.map((n) => act(n, 'start')));
    for (const n of NAMES) assert.equal(fileState(n), 'running');
    const marker = (await get('lin1')).bootMarker!;
    await Promise.all(
      NAMES.map((n) =>
        waitFor(`${n} boot`, async () => ((await consoleText(n)).includes(marker) ? true : undefined), 600_000, 500),
      ),
    );
    t.diagnostic(`3 Linux VMs booted to the marker in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    // A command in each console, over the WebSocket.
    for (const n of NAMES) {
      const ws = d.client.websocket(`/vms/${n}/console`);
      const got: Buffer[] = [];
      ws.on('message', (b: Buffer) => got.push(b));
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      });
      ws.send(`echo tv-$((6*7))-$(hostname)-${n}\n`);
      // The shell's output (not the echoed command line, which still says $((6*7))).
      const answer = new RegExp(`tv-42-\\S*-${n}\\r?\\n`);
      await waitFor(`${n} command`, () => (answer.test(Buffer.concat(got).toString('latin1')) ? true : undefined), 120_000, 200);
      ws.close();
    }

    // Pause lin2: its instructions stop and its worker's CPU drops.
    await act('lin2', 'pause');
    assert.equal(fileState('lin2'), 'paused');
    await get('lin2');
    await sleep(500);
    const a = (await get('lin2')).stats!;
    await sleep(1000);
    const b = (await get('lin2')).stats!;
    assert.equal(b.instret, a.instret);
    assert.ok(b.cpuPercent < 10, `paused CPU ${b.cpuPercent} %`);
    await act('lin2', 'resume');
    await sleep(1000);
    assert.ok((await get('lin2')).stats!.instret > b.instret);

    // Graceful shutdown through the guest agent on virtio-console.
    const down = await act('lin3', 'shutdown', { timeoutSeconds: 120 });
    assert.equal(down.vm.state, 'stopped');
    assert.equal(down.forced, false, 'the guest agent powered the guest off');
    assert.equal(fileState('lin3'), 'stopped');
    await d.client.json('DELETE', '/vms/lin3');

    // Restart the daemon: the remaining VMs are recorded stopped, consistently in the API and on disk.
    assert.equal(await d.stop(), 0);
    d = await startDaemonProcess({ home, runtime: 'machine' });
    const { vms } = await d.client.json<{ vms: VmView[] }>('GET', '/vms');
    assert.deepEqual(
      vms.map((v) => [v.name, v.state, fileState(v.name)]),
      [
        ['lin1', 'stopped', 'stopped'],
        ['lin2', 'stopped', 'stopped'],
      ],
    );
    // And a stopped VM boots again from its (now written-to) overlay.
    await act('lin1', 'start');
    await waitFor(
      'lin1 second boot',
      async () => ((await consoleText('lin1')).split(marker).length > 2 ? true : undefined),
      600_000,
      500,
    );
    for (const n of ['lin1', 'lin2']) await d.client.json('DELETE', `/vms/${n}?force=true`);
  } finally {
    await d.stop();
    removeHome(home);
  }
});
