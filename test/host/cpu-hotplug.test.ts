/**
 * vCPU hot-plug with a real Linux guest: `typevisor set NAME --vcpus N` on a running VM takes harts offline
 * and back online through the guest agent and SBI HSM, the guest and the host agree on the count, and more
 * vCPUs than the VM was created with is refused with nothing changed.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
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

/** `typevisor exec NAME -- ARGV...` (--home before '--': everything after it is the guest command). */
function execIn(name: string, ...argv: string[]) {
  return spawnSync(process.execPath, cliArgs('exec', '--home', d.home, name, '--', ...argv), {
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
  // Each hart runs on a thread of its own (src/machine/parallel), reported beside the VM's thread, so CPU placement
  // and accounting see every vCPU: 4 distinct live threads, the harts' in the same process as the VM's.
  const threads = (await d.client.json<VmView>('GET', '/vms/hp')).cpu.threads;
  assert.equal(new Set(threads).size, 4, `threads ${threads.join(',')}`);
  const vmPid = readFileSync(`/proc/${threads[0]}/status`, 'utf8').match(/^Tgid:\s+(\d+)/m)![1];
  for (const tid of threads)
    assert.ok(existsSync(`/proc/${vmPid}/task/${tid}`), `thread ${tid} belongs to the VM's process ${vmPid}`);

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

test('the online count survives a guest reboot and a host reboot; a full count is not kept', { timeout: 900_000 }, async (t) => {
  await d.client.json('POST', '/vms', { name: 'hpr', vcpus: 3, memoryMiB: 128, rootDisk: false });
  await d.client.json('POST', '/vms/hpr/actions/start', {});
  const marker = (await d.client.json<VmView>('GET', '/vms/hpr')).bootMarker!;
  const boots = async () => (await d.client.text('/vms/hpr/console.log')).toString('latin1').split(marker).length - 1;
  const booted = (n: number) => waitFor(`boot ${n}`, async () => ((await boots()) >= n ? true : undefined), 600_000, 500);
  const online = async () => (await d.client.json<VmView>('GET', '/vms/hpr')).stats!.vcpusOnline;
  const guestOnline = () => {
    const r = execIn('hpr', 'cat', '/sys/devices/system/cpu/online');
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.trim();
  };
  const kept = async () => (await d.client.json<VmView>('GET', '/vms/hpr')).config.vcpusOnline;
  await booted(1);
  await waitFor('3 harts up', async () => ((await online()) === 3 ? true : undefined), 60_000, 200);

  const down = cli('set', 'hpr', '--vcpus', '2');
  assert.equal(down.status, 0, down.stderr);
  assert.equal(await kept(), 2, 'the count is kept in the record');

  // The guest reboots itself: busybox reboot signals init, which syncs and resets the machine.
  const t0 = performance.now();
  const r = execIn('hpr', 'reboot');
  assert.ok(r.status === 0 || r.status === 204, `reboot in the guest: ${r.status} ${r.stderr}`);
  await booted(2);
  t.diagnostic(`guest reboot to the boot marker: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  await waitFor('2 harts after the guest reboot', async () => ((await online()) === 2 ? true : undefined), 60_000, 200);
  assert.equal(guestOnline(), '0-1');
  assert.match(
    (await d.client.text('/vms/hpr/console.log')).toString('latin1'),
    /Kernel command line:.* maxcpus=2/,
    'the second boot brought up 2 harts',
  );

  // The host reboots it: the same count.
  const down1 = cli('set', 'hpr', '--vcpus', '1');
  assert.equal(down1.status, 0, down1.stderr);
  const reboot = cli('reboot', 'hpr');
  assert.equal(reboot.status, 0, reboot.stderr);
  await booted(3);
  await waitFor('1 hart after the host reboot', async () => ((await online()) === 1 ? true : undefined), 60_000, 200);
  assert.equal(guestOnline(), '0');

  // Offline harts of a reboot come back online by hot-plug, and a full count is no longer kept.
  const up = cli('set', 'hpr', '--vcpus', '3');
  assert.equal(up.status, 0, up.stderr);
  assert.equal(await online(), 3);
  assert.equal(guestOnline(), '0-2');
  assert.equal(await kept(), undefined);
  await d.client.json('DELETE', '/vms/hpr?force=true');
});
