/**
 * vCPU hot-plug with a real Linux guest: `typevisor set NAME --vcpus N` on a running VM takes harts offline
 * and back online through the guest agent and SBI HSM, the guest and the host agree on the count, and more
 * vCPUs than the VM was created with is refused with nothing changed.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import type { VmView } from '../../src/host/actions.js';
import type { HostEvent } from '../../src/host/events.js';
import { guestArtifacts } from '../../src/guests/index.js';
import { hotplugCommand, hotplugProblem } from '../../src/host/cpu/hotplug.js';
import { cliArgs } from '../helpers/paths.js';
import { removeHome, startDaemonProcess, waitFor, type DaemonHandle } from './daemon-harness.js';

let d: DaemonHandle;
before(async () => {
  guestArtifacts(); // a missing guest image fails here with the reason
  d = await startDaemonProcess({ runtime: 'machine' });
});
after(async () => {
  await d.stop();
  removeHome(d.home);
});

function cli(...args: string[]) {
  return spawnSync(process.execPath, cliArgs(...args, '--home', d.home), {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, TYPEVISOR_URL: '' },
  });
}

test('the hot-plug command is valid sh and the limits are checked', () => {
  const [sh, flag, script] = hotplugCommand(2, 4);
  assert.deepEqual([sh, flag], ['sh', '-c']);
  assert.equal(spawnSync('sh', ['-n', '-c', script!]).status, 0);
  assert.equal(hotplugProblem(2, 4), null);
  assert.match(hotplugProblem(5, 4)!, /created with 4 vCPUs/);
  assert.match(hotplugProblem(0, 4)!, /from 1 to 4/);
});

test('a running 3-vCPU guest goes to 1 vCPU and back to 3', { timeout: 600_000 }, async (t) => {
  await d.client.json('POST', '/vms', { name: 'hp', vcpus: 3, memoryMiB: 128, rootDisk: false });
  await d.client.json('POST', '/vms/hp/actions/start', {});
  const vm = await d.client.json<VmView>('GET', '/vms/hp');
  await waitFor(
    'boot',
    async () => ((await d.client.text('/vms/hp/console.log')).toString('latin1').includes(vm.bootMarker!) ? true : undefined),
    600_000,
    500,
  );
  const online = async () => (await d.client.json<VmView>('GET', '/vms/hp')).stats!.vcpusOnline;
  const guestOnline = () => {
    // --home goes before '--': everything after it is the guest command.
    const r = spawnSync(
      process.execPath,
      cliArgs('exec', '--home', d.home, 'hp', '--', 'cat', '/sys/devices/system/cpu/online'),
      {
        encoding: 'utf8',
        timeout: 120_000,
      },
    );
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.trim();
  };
  await waitFor('3 harts up', async () => ((await online()) === 3 ? true : undefined), 60_000, 200);
  assert.equal(guestOnline(), '0-2');

  const t0 = performance.now();
  const down = cli('set', 'hp', '--vcpus', '1');
  assert.equal(down.status, 0, down.stderr);
  t.diagnostic(`3 -> 1 vCPUs in ${((performance.now() - t0) / 1000).toFixed(2)} s (CLI included)`);
  assert.match(down.stdout, /1\/3 vCPUs online/);
  assert.equal(await online(), 1);
  assert.equal(guestOnline(), '0');

  const refused = cli('set', 'hp', '--vcpus', '4');
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, /created with 3 vCPUs/);
  assert.equal(await online(), 1);

  const up = cli('set', 'hp', '--vcpus', '3');
  assert.equal(up.status, 0, up.stderr);
  assert.equal(await online(), 3);
  assert.equal(guestOnline(), '0-2');
  assert.equal((await d.client.json<VmView>('GET', '/vms/hp')).config.cpus, 3, 'the board size is unchanged');
  const { events } = await d.client.json<{ events: HostEvent[] }>('GET', '/events?follow=false&vm=hp');
  const reasons = events.filter((e) => e.type === 'settings').map((e) => e.reason);
  assert.ok(
    reasons.some((r) => /vCPUs online 3 -> 1 of 3/.test(r)),
    reasons.join('; '),
  );
  assert.ok(
    reasons.some((r) => /vCPUs online 1 -> 3 of 3/.test(r)),
    reasons.join('; '),
  );
  await d.client.json('DELETE', '/vms/hp?force=true');
});
