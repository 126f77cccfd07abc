/**
 * Crash safety of snapshots: the daemon is killed with SIGKILL at several moments of a live `snapshot create`.
 * After a restart every snapshot is complete or absent, the older snapshot still restores with its data, the
 * VM boots from its disk with the data written before the crash, and `qemu-img check` is clean on the disk and
 * every layer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { SnapshotView, VmView } from '../../src/host/actions.js';
import { guestsBuilt } from '../../src/guests/index.js';
import { VmConsole } from '../helpers/vm-console.js';
import { removeHome, startDaemonProcess, tempHome, waitFor, type DaemonHandle } from '../host/daemon-harness.js';

const run = promisify(execFile);

async function bootedConsole(d: DaemonHandle, name: string, since: number): Promise<VmConsole> {
  const marker = (await d.client.json<VmView>('GET', `/vms/${name}`)).bootMarker!;
  await waitFor(
    `${name} boot`,
    async () => {
      const log = (await d.client.text(`/vms/${name}/console.log`)).toString('latin1');
      return log.indexOf(marker, since) >= 0 ? true : undefined;
    },
    600_000,
    300,
  );
  const c = await VmConsole.open(d.client, name);
  await c.sh('true');
  return c;
}

async function qemuImgClean(path: string): Promise<void> {
  const r = await run('qemu-img', ['check', '-U', path]).catch((e: { stdout?: string; code?: number }) => e);
  assert.match(String(r.stdout), /No errors were found/, `${path}: ${String(r.stdout)}`);
}

test(
  'kill -9 of the daemon during a live snapshot leaves disks and older snapshots intact',
  { timeout: 1_800_000 },
  async (t) => {
    assert.ok(guestsBuilt(), 'guest images not built: run `typevisor guest build`');
    const home = tempHome();
    let d = await startDaemonProcess({ runtime: 'machine', home });
    t.after(async () => {
      await d.stop();
      removeHome(home);
    });
    await d.client.json('POST', '/vms', { name: 'vm', memoryMiB: 256 });
    await d.client.json('POST', '/vms/vm/actions/start', {});
    let con = await bootedConsole(d, 'vm', 0);
    await con.sh('echo base > /root/f; sync');
    await d.client.json('POST', '/vms/vm/snapshots', { name: 'base' });
    const vmDir = join(home, 'vms', 'vm');

    for (const [i, delayMs] of [5, 150, 300, 600].entries()) {
      await con.sh(`echo round${i} > /root/f; sync`);
      const snap = `s${i}`;
      const pending = d.client.json('POST', '/vms/vm/snapshots', { name: snap }).catch(() => undefined);
      await new Promise((r) => setTimeout(r, delayMs));
      con.close();
      await d.stop('SIGKILL');
      await pending;

      d = await startDaemonProcess({ runtime: 'machine', home });
      const snaps = (await d.client.json<{ snapshots: SnapshotView[] }>('GET', '/vms/vm/snapshots')).snapshots.map((s) => s.name);
      assert.ok(snaps.includes('base'), `round ${i}: ${snaps.join(',')}`);
      // Complete or absent: a listed snapshot has its description, its state file and its layers.
      for (const s of snaps) {
        assert.ok(existsSync(join(vmDir, 'snapshots', s, 'machine.tvstate')), `${s} has no state`);
      }
      assert.deepEqual(
        readdirSync(join(vmDir, 'snapshots')).filter((e) => e.startsWith('.')),
        [],
        'the sweep removed partial folders',
      );
      assert.equal(existsSync(join(vmDir, 'root.qcow2.next')), false);
      t.diagnostic(`round ${i} (kill after ${delayMs} ms): snapshot ${snap} ${snaps.includes(snap) ? 'complete' : 'absent'}`);
      for (const l of readdirSync(join(vmDir, 'snapshots', 'layers'))) await qemuImgClean(join(vmDir, 'snapshots', 'layers', l));

      // The VM boots again from its disk with the data synced before the crash.
      const log = (await d.client.text('/vms/vm/console.log')).length;
      await d.client.json('POST', '/vms/vm/actions/start', {});
      con = await bootedConsole(d, 'vm', log);
      assert.equal((await con.sh('cat /root/f')).trim(), `round${i}`);
    }

    // The oldest snapshot still restores with its data; the disk is clean once the VM is stopped.
    await d.client.json('POST', '/vms/vm/snapshots/base/restore', {});
    con.close();
    con = await VmConsole.open(d.client, 'vm');
    assert.equal((await con.sh('cat /root/f')).trim(), 'base');
    con.close();
    await d.client.json('POST', '/vms/vm/actions/stop', {});
    await qemuImgClean(join(vmDir, 'root.qcow2'));
    await d.stop();
  },
);
