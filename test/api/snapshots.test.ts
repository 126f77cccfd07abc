/**
 * Snapshots and linked clones of a real Linux guest through the daemon and the CLI (the evidence):
 * - a chain of three live snapshots (a file on the disk, a file in tmpfs, a counter process); restore the first:
 *   both files are as they were, the counter continues, uptime is continuous, the console answers;
 * - delete the middle snapshot: its disk layer is merged into the next one's and its file goes, the others restore
 *   with the right data, and `qemu-img check` is clean on every layer and disk (`qemu-img info --backing-chain`
 *   walks them);
 * - fan-out: the same running VM cloned several times, all running at once, each with its own hostname,
 *   machine id, MAC and DHCP address (set through the agent), reaching the gateway, and its own disk changes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import type { SnapshotView, VmView } from '../../src/host/actions.js';
import { guestArtifacts, guestsBuilt } from '../../src/guests/index.js';
import { buildGuests } from '../../src/guests/build.js';
import { cliArgs } from '../helpers/paths.js';
import { VmConsole } from '../helpers/vm-console.js';
import { removeHome, startDaemonProcess, waitFor, type DaemonHandle } from '../host/daemon-harness.js';

const run = promisify(execFile);
const CLONES = ['c1', 'c2', 'c3', 'c4', 'c5'];

async function cli(home: string, ...args: string[]): Promise<string> {
  const r = await run(process.execPath, cliArgs(...args, '--home', home), { timeout: 300_000 });
  return r.stdout;
}

async function booted(d: DaemonHandle, name: string): Promise<VmConsole> {
  const marker = (await d.client.json<VmView>('GET', `/vms/${name}`)).bootMarker!;
  await waitFor(
    `${name} boot`,
    async () => ((await d.client.text(`/vms/${name}/console.log`)).toString('latin1').includes(marker) ? true : undefined),
    600_000,
    500,
  );
  const c = await VmConsole.open(d.client, name);
  await c.sh('true');
  return c;
}

const numbers = (text: string): number[] => text.trim().split('\n').map(Number);

test(
  'snapshot chain, restore the first, delete the middle, qemu-img check; 5 running clones',
  { timeout: 1_800_000 },
  async (t) => {
    assert.ok(guestsBuilt(), 'guest images not built: run `typevisor guest build`');
    const d = await startDaemonProcess({ runtime: 'machine' });
    const consoles: VmConsole[] = [];
    t.after(async () => {
      consoles.forEach((c) => c.close());
      await d.stop();
      removeHome(d.home);
    });
    // The root filesystem of this checkout's guests/userland (its agent answers `identity`): the shared guest
    // cache's "current" entry may be another checkout's build.
    const rootfs = (await buildGuests(['rootfs'])).find((r) => r.name === 'rootfs');
    const imageDir = join(d.home, 'images', 'here');
    mkdirSync(imageDir, { recursive: true });
    const marker = guestArtifacts().marker;
    writeFileSync(
      join(imageDir, 'image.json'),
      JSON.stringify({ kernel: guestArtifacts().kernel, rootfs: join(rootfs!.dir, 'rootfs.ext4'), marker }),
    );
    await d.client.json('POST', '/vms', { name: 'vm', memoryMiB: 256, image: 'here' });
    await d.client.json('POST', '/vms/vm/actions/start', {});
    let vm = await booted(d, 'vm');
    consoles.push(vm);
    // Kernel messages stay off the console the commands' output is read from: on a loaded host the kernel warns
    // of slow timer interrupts ("hrtimer: interrupt took ..."), and such a line once landed in a compared output.
    // Snapshots, restores and clones keep the level.
    await vm.sh('dmesg -n 1');
    await vm.sh('{ (i=0; while :; do echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; i=$((i+1)); sleep 0.1; done) >/dev/null 2>&1 & }');

    const at: Record<string, { uptime: number; count: number }> = {};
    for (const [i, snap] of ['s1', 's2', 's3'].entries()) {
      await vm.sh(`echo disk-${snap} > /root/f; echo tmp-${snap} > /tmp/t; sync`);
      const [uptime, count] = numbers(await vm.sh('cut -d" " -f1 /proc/uptime; cat /tmp/count'));
      at[snap] = { uptime: uptime!, count: count! };
      const out = await cli(d.home, 'snapshot', 'create', 'vm', snap, ...(i === 0 ? ['--live'] : []), '--json');
      const created = JSON.parse(out) as { snapshot: SnapshotView; workerMs: number };
      assert.equal(created.snapshot.hasState, true);
      t.diagnostic(
        `snapshot ${snap}: memory ${(created.snapshot.stateBytes / 2 ** 20).toFixed(1)} MiB, guest paused ${created.workerMs.toFixed(0)} ms`,
      );
    }
    await vm.sh('echo disk-after > /root/f; echo tmp-after > /tmp/t; sync');
    const list = JSON.parse(await cli(d.home, 'snapshot', 'ls', 'vm', '--json')) as SnapshotView[];
    assert.deepEqual(
      list.map((s) => `${s.name}<${s.parent ?? ''}${s.current ? '*' : ''}`),
      ['s1<', 's2<s1', 's3<s2*'],
    );

    // Restore the first: disk and tmpfs as at s1, the counter continues from there, uptime continuous.
    const restored = JSON.parse(await cli(d.home, 'snapshot', 'restore', 'vm', 's1', '--json')) as {
      vm: VmView;
      workerMs: number;
      totalMs: number;
    };
    t.diagnostic(`restore s1: worker ${restored.workerMs.toFixed(0)} ms, total ${restored.totalMs.toFixed(0)} ms`);
    assert.equal(restored.vm.state, 'running');
    vm.close();
    vm = await VmConsole.open(d.client, 'vm');
    consoles.push(vm);
    const [f, tmp, uptime, count] = (await vm.sh('cat /root/f; cat /tmp/t; cut -d" " -f1 /proc/uptime; cat /tmp/count'))
      .trim()
      .split('\n');
    assert.equal(f, 'disk-s1');
    assert.equal(tmp, 'tmp-s1');
    assert.ok(Number(uptime) >= at.s1!.uptime && Number(uptime) < at.s1!.uptime + 60, `uptime ${at.s1!.uptime} -> ${uptime}`);
    assert.ok(Number(count) >= at.s1!.count && Number(count) < at.s3!.count + 100, `counter ${at.s1!.count} -> ${count}`);

    // Delete the middle one: its layer is merged into s3's, which then rests on s1's, and its file goes; the
    // others keep their data.
    const vmDir = join(d.home, 'vms', 'vm');
    const layerOf = (snap: string): string =>
      join(
        vmDir,
        (JSON.parse(readFileSync(join(vmDir, 'snapshots', snap, 'snapshot.json'), 'utf8')) as { layers: string[] }).layers[0]!,
      );
    const [l1, l2, l3] = ['s1', 's2', 's3'].map(layerOf);
    const qcow2Layers = (): string[] => readdirSync(join(vmDir, 'snapshots', 'layers')).filter((f) => f.endsWith('.qcow2'));
    assert.equal(qcow2Layers().length, 3);
    await cli(d.home, 'snapshot', 'rm', 'vm', 's2');
    const after = JSON.parse(await cli(d.home, 'snapshot', 'ls', 'vm', '--json')) as SnapshotView[];
    assert.deepEqual(
      after.map((s) => `${s.name}<${s.parent ?? ''}${s.current ? '*' : ''}`),
      ['s1<*', 's3<s1'],
    );
    assert.ok(!existsSync(l2!), `s2's layer ${l2} is reclaimed`);
    assert.deepEqual(qcow2Layers().sort(), [basename(l1!), basename(l3!)].sort());
    const s3Info = JSON.parse((await run('qemu-img', ['info', '-U', '--output', 'json', l3!])).stdout) as {
      'full-backing-filename'?: string;
      'backing-filename'?: string;
    };
    assert.equal(s3Info['full-backing-filename'] ?? s3Info['backing-filename'], l1);
    for (const snap of ['s3', 's1']) {
      await cli(d.home, 'snapshot', 'restore', 'vm', snap);
      vm.close();
      vm = await VmConsole.open(d.client, 'vm');
      consoles.push(vm);
      assert.equal((await vm.sh('cat /root/f; cat /tmp/t')).trim(), `disk-${snap}\ntmp-${snap}`);
    }

    // qemu-img: every layer and the active disk are clean, and the chain resolves.
    const layers = readdirSync(join(vmDir, 'snapshots', 'layers')).map((l) => join(vmDir, 'snapshots', 'layers', l));
    assert.ok(layers.length >= 2, `layers: ${layers.join(', ')}`);
    for (const img of layers) {
      const r = await run('qemu-img', ['check', '-U', img]);
      assert.match(r.stdout, /No errors were found/, img);
    }
    await d.client.json('POST', '/vms/vm/actions/pause', {});
    const info = await run('qemu-img', ['info', '-U', '--backing-chain', join(vmDir, 'root.qcow2')]);
    assert.match(info.stdout, /snapshots\/layers\//);
    await d.client.json('POST', '/vms/vm/actions/resume', {});

    // Fan-out: five running clones at once, each its own machine.
    await vm.sh('echo source > /root/who; sync');
    for (const c of CLONES) {
      const out = JSON.parse(await cli(d.home, 'clone', 'vm', c, '--running', '--json')) as { vm: VmView; totalMs: number };
      assert.equal(out.vm.state, 'running');
      t.diagnostic(`clone ${c}: ${out.totalMs.toFixed(0)} ms`);
    }
    const ids = new Set<string>();
    const sourceIp = /inet (\d+\.\d+\.\d+\.\d+)/.exec(await vm.sh('ip -4 -o addr show dev eth0'))?.[1];
    assert.ok(sourceIp, 'the source has a DHCP address');
    const addrs = new Set<string>([sourceIp]);
    for (const c of CLONES) {
      const con = await VmConsole.open(d.client, c);
      consoles.push(con);
      assert.equal((await con.sh(`cat /root/who; echo ${c} > /root/who; sync`)).trim(), 'source');
      // The agent applies the new identity asynchronously, right after the clone resumes: hostname, machine id,
      // the clone's MAC, and a new DHCP lease for it.
      const mac = (await d.client.json<VmView>('GET', `/vms/${c}`)).addresses[0]!.mac;
      const id = await waitFor(
        `${c} identity`,
        async () => {
          const probe = 'hostname; cat /etc/machine-id /sys/class/net/eth0/address; ip -4 -o addr show dev eth0';
          const [host, machineId, guestMac, addr] = (await con.sh(probe)).trim().split('\n');
          const ip = /inet (\d+\.\d+\.\d+\.\d+)/.exec(addr ?? '')?.[1];
          return host === c && guestMac === mac && ip !== undefined ? { machineId: machineId!, ip } : undefined;
        },
        120_000,
        1000,
      );
      ids.add(id.machineId);
      addrs.add(id.ip);
      // Its frames pass the switch (its own MAC and lease): the gateway answers.
      assert.match(await con.sh('ping -c 1 -W 5 10.0.2.2 >/dev/null && echo reachable'), /reachable/, `${c} reaches the gateway`);
    }
    assert.equal(ids.size, CLONES.length, 'every clone has its own machine id');
    assert.equal(addrs.size, CLONES.length + 1, `every clone has its own address: ${[...addrs].join(' ')}`);
    for (const [i, c] of CLONES.entries())
      assert.equal((await consoles[consoles.length - CLONES.length + i]!.sh('cat /root/who')).trim(), c);
    assert.equal((await vm.sh('cat /root/who')).trim(), 'source');
    const all = (await d.client.json<{ vms: VmView[] }>('GET', '/vms')).vms;
    assert.deepEqual(all.map((v) => `${v.name}:${v.state}`).sort(), ['vm:running', ...CLONES.map((c) => `${c}:running`)].sort());
    // The source holds its clones' layers: it cannot be deleted before them.
    await assert.rejects(d.client.json('DELETE', '/vms/vm?force=true'), /linked clones/);
  },
);
