/**
 * Least privilege for VM processes (docs/security.md), as root, with two Linux guests in a real daemon (process
 * mode). Read from /proc, for each VM process:
 *  - Uid and Gid (real, effective, saved, fs) are the VM's own, recorded in its folder, different per VM and in
 *    the VM range; no supplementary groups; NoNewPrivs 1; no capabilities (CapPrm, CapEff);
 *  - its memory and pids cgroups are its own (tv-<name>-...);
 *  - its open files are in its own folder (its disk, its log, the folder itself), or the base images its disk
 *    rests on, or its boot images (kernel, initrd), read-only; besides /dev/null, pipes and event fds, every socket it holds is a unix socket (none is in
 *    /proc/net/tcp, tcp6, udp, udp6, raw or raw6);
 * and: the VM's uid cannot open the other VM's disk (EACCES) but can open its own; the guest writes its disk;
 * a live snapshot (save-state + disk switch as the VM's uid), a write, a revert, and a guest reboot all work in
 * the dropped process, with the home at 0700 (as under /root); after kill -9 of the daemon the next daemon reattaches and the process keeps its uid.
 * One of the two VMs runs in a process taken from the warm pool (started as root before the VM existed, adopted
 * later), the other in one spawned for it: every check above holds for both, and for pv1's process after the revert.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, readdirSync, readFileSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { HostInfo, VmView } from '../../src/host/actions.js';
import { backingInfo } from '../../src/host/layer-merge.js';
import { DEFAULT_VM_UID_BASE } from '../../src/host/vm-process-user.js';
import { parseProcStatusCredentials } from '../../src/vm/drop-privileges.js';
import { requireGuest } from '../helpers/guest.js';
import { VmConsole } from '../helpers/vm-console.js';
import { removeHome, startDaemonProcess, vmProcesses, waitFor, type DaemonHandle } from './daemon-harness.js';

const NAMES = ['pv1', 'pv2'];

async function booted(d: DaemonHandle, name: string, times = 1): Promise<VmConsole> {
  const marker = (await d.client.json<VmView>('GET', `/vms/${name}`)).bootMarker!;
  await waitFor(
    `${name} boot`,
    async () =>
      (await d.client.text(`/vms/${name}/console.log`)).toString('latin1').split(marker).length > times ? true : undefined,
    600_000,
    500,
  );
  const c = await VmConsole.open(d.client, name);
  await c.sh('true');
  return c;
}

/** Socket inodes listed in /proc/net/<table> (column "inode"). */
function socketInodes(table: string): Set<string> {
  let text: string;
  try {
    text = readFileSync(`/proc/net/${table}`, 'utf8');
  } catch {
    return new Set();
  }
  const [head, ...rows] = text.trim().split('\n');
  const col = head!.trim().split(/\s+/).indexOf('Inode');
  const inodes = new Set<string>();
  for (const r of rows) {
    const f = r.trim().split(/\s+/);
    // /proc/net/unix has the inode in column "Inode"; tcp/udp tables have it as column 9 (headers are not aligned).
    const v = col >= 0 ? f[col] : f[9];
    if (v) inodes.add(v);
  }
  return inodes;
}

function processUser(home: string, name: string): { uid: number; gid: number } {
  return JSON.parse(readFileSync(join(home, 'vms', name, 'vm-process-user.json'), 'utf8')) as { uid: number; gid: number };
}

function diskOf(home: string, name: string): string {
  const cfg = JSON.parse(readFileSync(join(home, 'vms', name, 'vm.json'), 'utf8')) as { config: { disks: { path: string }[] } };
  const p = cfg.config.disks[0]!.path;
  return p.startsWith('/') ? p : join(home, 'vms', name, p);
}

/** The kernel, initrd and firmware files the VM boots from (held open by its process, read-only). */
function bootImagesOf(home: string, name: string): string[] {
  const cfg = JSON.parse(readFileSync(join(home, 'vms', name, 'vm.json'), 'utf8')) as {
    config: { kernel?: string; initrd?: string; firmware: { kind: string; path?: string } };
  };
  const c = cfg.config;
  return [c.kernel, c.initrd, c.firmware.path].filter((p): p is string => !!p).map((p) => realpathSync(p));
}

function checkProcess(home: string, name: string, pid: number): void {
  const user = processUser(home, name);
  const creds = parseProcStatusCredentials(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.deepEqual(creds.uids, [user.uid, user.uid, user.uid, user.uid], `${name}: Uid`);
  assert.deepEqual(creds.gids, [user.gid, user.gid, user.gid, user.gid], `${name}: Gid`);
  assert.ok(user.uid >= DEFAULT_VM_UID_BASE, `${name}: uid ${user.uid} is in the VM range`);
  assert.deepEqual(creds.groups, [], `${name}: no supplementary groups`);
  assert.equal(creds.noNewPrivs, true, `${name}: NoNewPrivs`);
  assert.equal(creds.capEff, 0n, `${name}: CapEff`);
  assert.equal(creds.capPrm, 0n, `${name}: CapPrm`);

  const groups = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  for (const ctl of ['memory', 'pids'])
    assert.match(groups, new RegExp(`^\\d+:${ctl}:.*/tv-${name}-[0-9a-f]{8}$`, 'm'), `${name}: its own ${ctl} cgroup`);

  const vmDir = join(home, 'vms', name);
  const chain: string[] = [];
  for (let p: string | undefined = diskOf(home, name); p; p = backingInfo(p)?.path) chain.push(realpathSync(p));
  const boot = bootImagesOf(home, name);
  const unix = socketInodes('unix');
  const inet = new Set(['tcp', 'tcp6', 'udp', 'udp6', 'raw', 'raw6'].flatMap((t) => [...socketInodes(t)]));
  const files: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    const sock = /^socket:\[(\d+)\]$/.exec(target);
    if (sock) {
      assert.ok(!inet.has(sock[1]!), `${name}: fd ${fd} is a network socket (${target})`);
      assert.ok(unix.has(sock[1]!), `${name}: fd ${fd} (${target}) is a unix socket`);
      continue;
    }
    if (/^(pipe|anon_inode):/.test(target) || target === '/dev/null') continue;
    files.push(target);
    if (target === vmDir || target.startsWith(vmDir + '/')) continue;
    // Outside its folder: only the base images its disk rests on and its boot images, and only for reading.
    assert.ok(
      chain.includes(target) || boot.includes(target),
      `${name}: fd ${fd} is ${target}, neither in its folder nor in its disk's chain nor a boot image`,
    );
    const flags = Number.parseInt(/^flags:\s*(\d+)$/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))![1]!, 8);
    assert.equal(flags & 3, 0, `${name}: ${target} is open read-only`);
  }
  assert.ok(files.includes(diskOf(home, name)), `${name}: its disk is open (${files.join(', ')})`);
}

/** Runs `cat FILE` as the VM's user: its exit status and error text. */
function catAs(user: { uid: number; gid: number }, file: string): { status: number | null; stderr: string } {
  const r = spawnSync('head', ['-c', '512', file], { uid: user.uid, gid: user.gid, encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr };
}

test('process mode as root: VM processes run as their own uid with only their files open', { timeout: 1_800_000 }, async (t) => {
  requireGuest();
  if (process.getuid?.() !== 0) {
    t.skip('needs root (the privilege drop happens only under a root daemon)');
    return;
  }
  let d: DaemonHandle = await startDaemonProcess({ runtime: 'machine', vmMode: 'process' });
  const home = d.home;
  const consoles: VmConsole[] = [];
  t.after(async () => {
    consoles.forEach((c) => c.close());
    await d.stop();
    removeHome(home);
  });
  const host = await d.client.json<HostInfo>('GET', '/host');
  assert.match(host.daemon.vmProcessUser, /a uid of its own per VM, from 2000000000/);
  for (const n of NAMES) await d.client.json('POST', '/vms', { name: n, memoryMiB: 128 });
  const pool = async () => (await d.client.json<HostInfo>('GET', '/host')).daemon.warmPool!;
  await waitFor('a warm VM process', async () => ((await pool()).idle === 1 ? true : undefined), 120_000);
  await Promise.all(NAMES.map((n) => d.client.json('POST', `/vms/${n}/actions/start`, {})));
  assert.equal((await pool()).hits, 1, 'one start took the warm process');
  const adopted = NAMES.filter((n) =>
    /\(a pooled process, adopted\)/.test(readFileSync(join(home, 'vms', n, 'vm-process.log'), 'utf8')),
  );
  assert.equal(adopted.length, 1, 'one VM runs in the pooled process, the other in one spawned for it');
  const [c1, c2] = await Promise.all(NAMES.map((n) => booted(d, n)));
  consoles.push(c1!, c2!);

  const procs = vmProcesses(home);
  assert.deepEqual(
    procs.map((p) => p.name),
    NAMES,
  );
  for (const p of procs) checkProcess(home, p.name, p.pid);
  const [u1, u2] = NAMES.map((n) => processUser(home, n));
  assert.notEqual(u1!.uid, u2!.uid, 'each VM has a uid of its own');

  // Files: the VM's folder is root:<gid> 0710, its disk <uid> 0600; one VM's uid cannot read the other's disk.
  for (const [i, n] of NAMES.entries()) {
    const u = [u1!, u2!][i]!;
    const dir = statSync(join(home, 'vms', n));
    assert.equal(dir.mode & 0o777, 0o710, `${n}: folder mode`);
    assert.deepEqual([dir.uid, dir.gid], [0, u.gid], `${n}: folder owner`);
    const disk = statSync(diskOf(home, n));
    assert.equal(disk.mode & 0o777, 0o600, `${n}: disk mode`);
    assert.deepEqual([disk.uid, disk.gid], [u.uid, u.gid], `${n}: disk owner`);
  }
  // The worst case for the folders' own protection: every directory above them lets others pass (the daemon needs
  // none of that: its VM processes reach their folders through descriptors).
  chmodSync(home, 0o711);
  chmodSync(join(home, 'vms'), 0o711);
  assert.equal(catAs(u1!, diskOf(home, 'pv1')).status, 0, "pv1's uid reads its own disk");
  const denied = catAs(u1!, diskOf(home, 'pv2'));
  assert.notEqual(denied.status, 0, "pv1's uid cannot read pv2's disk");
  assert.match(denied.stderr, /Permission denied/);
  assert.match(
    catAs(u2!, join(home, 'vms', 'pv1', 'vm.json')).stderr,
    /Permission denied/,
    "pv2's uid cannot read pv1's vm.json",
  );
  // Back to a home nobody else may pass (as /root is): what follows reaches the files through descriptors only.
  chmodSync(home, 0o700);

  // The guest in the dropped process writes its disk; a live snapshot, another write, a revert, a reboot.
  await c1!.sh('echo before > /root/pd; sync');
  await d.client.json('POST', '/vms/pv1/snapshots', { name: 's1' });
  await c1!.sh('echo after > /root/pd; sync');
  assert.match(await c1!.sh('cat /root/pd'), /^after$/m);
  c1!.close();
  await d.client.json('POST', '/vms/pv1/snapshots/s1/restore', {});
  const r1 = await VmConsole.open(d.client, 'pv1');
  consoles.push(r1);
  assert.match(await r1.sh('cat /root/pd'), /^before$/m, 'the revert brought back the disk of the snapshot');
  r1.close();
  await d.client.json('POST', '/vms/pv1/actions/reboot', {});
  const r2 = await booted(d, 'pv1', 2);
  consoles.push(r2);
  assert.match(await r2.sh('cat /root/pd'), /^before$/m, 'the disk survived the reboot');
  const after = vmProcesses(home).find((p) => p.name === 'pv1')!;
  checkProcess(home, 'pv1', after.pid);

  // kill -9 of the daemon: the next one reattaches; the processes keep their users.
  await d.stop('SIGKILL');
  d = await startDaemonProcess({ home, runtime: 'machine', vmMode: 'process' });
  for (const n of NAMES) assert.equal((await d.client.json<VmView>('GET', `/vms/${n}`)).state, 'running');
  const again = vmProcesses(home);
  assert.deepEqual(
    again.map((p) => [p.name, p.pid]),
    vmProcesses(home).map((p) => [p.name, p.pid]),
  );
  for (const p of again) checkProcess(home, p.name, p.pid);
  const c = await VmConsole.open(d.client, 'pv2');
  consoles.push(c);
  assert.match(await c.sh('echo tv-$((6*7))'), /^tv-42$/m);
});
