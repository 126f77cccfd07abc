/**
 * A Linux guest saved while running and loaded into a fresh Machine keeps running: a counter process continues
 * from where it was, guest uptime is continuous, the serial console answers and the root disk (virtio-blk)
 * still works. RAM is loaded lazily (chunks read on first touch).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bufferSource, encodeStateBytes, StateFile } from '../../src/machine/snapshot/format.js';
import { captureMachineState, restoreMachineState } from '../../src/machine/snapshot/machine-state.js';
import { MiB, Vm, bootToShell, diskConfig } from '../devices/linux-vm.js';
import { requireGuest } from '../helpers/guest.js';

test('Linux saved mid-run continues in a fresh machine: counter, uptime, console, disk', { timeout: 900_000 }, async (t) => {
  const guest = requireGuest();
  const dir = mkdtempSync(join(tmpdir(), 'tv-snap-linux-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const disk = join(dir, 'root.raw');
  copyFileSync(guest.rootfs, disk);
  const config = diskConfig(disk, 'raw');

  const a = await bootToShell(config);
  await a.sh('{ (i=0; while :; do echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; i=$((i+1)); sleep 0.1; done) >/dev/null 2>&1 & }');
  await a.sh('echo before > /root/mark; sync');
  await new Promise((r) => setTimeout(r, 1500));
  const [uptimeA, countA] = (await a.sh('cut -d" " -f1 /proc/uptime; cat /tmp/count')).trim().split('\n').map(Number);
  assert.ok(countA! > 3, `counter at ${countA}`);
  a.machine.pause();
  const bytes = encodeStateBytes(captureMachineState(a.machine));
  a.machine.stop();
  await a.virtio.close();

  // No boot image: a board built for a restore gets everything the kernel and initrd were from the state's RAM.
  const b = await Vm.build(config, {}, true);
  const machine = b.machine;
  const t0 = performance.now();
  const report = restoreMachineState(machine, new StateFile(bufferSource(bytes)), { lazyRam: true });
  machine.start();
  t.diagnostic(
    `state ${(bytes.length / MiB).toFixed(1)} MiB, ${report.ramChunks} RAM chunks, loaded in ${(performance.now() - t0).toFixed(1)} ms`,
  );

  const [uptimeB, countB] = (await b.sh('cut -d" " -f1 /proc/uptime; cat /tmp/count')).trim().split('\n').map(Number);
  assert.ok(countB! >= countA!, `counter went back: ${countA} -> ${countB}`);
  assert.ok(countB! < countA! + 100, `counter jumped: ${countA} -> ${countB}`);
  assert.ok(uptimeB! >= uptimeA! && uptimeB! < uptimeA! + 60, `uptime ${uptimeA} -> ${uptimeB}`);
  await new Promise((r) => setTimeout(r, 1500));
  const countLater = Number((await b.sh('cat /tmp/count')).trim());
  assert.ok(countLater > countB!, `the counter stopped at ${countB}`);
  assert.equal((await b.sh('cat /root/mark; echo after > /root/mark2; sync; cat /root/mark2')).trim(), 'before\nafter');
  await b.shutdown();
});
