/**
 * cgroup v2 groups for VM processes, on a fake hierarchy in a temporary folder (this CI host's memory and pids
 * controllers are bound to cgroup v1, so no real v2 group can hold them here; test/host/process-privilege.test.ts
 * checks the v1 groups of real VM processes from /proc). The fake has no kernel behind it: it shows which files
 * the daemon writes and in what order of folders, and that it refuses where the kernel would.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VM_PROCESS_OVERHEAD_MIB, VM_PROCESS_PIDS_MAX, VmProcessCgroups } from '../../src/host/vm-process-cgroup.js';
import { daemonBaseGroup } from '../../src/host/cpu/cgroupfs.js';

const DAEMON = 4242;

function fakeV2(t: { after(fn: () => void): void }, group: { controllers: string; procs: number[]; subtree?: string }) {
  const root = mkdtempSync(join(tmpdir(), 'tv-cgv2-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const base = join(root, 'system.slice', 'typevisor.service');
  mkdirSync(base, { recursive: true });
  writeFileSync(join(base, 'cgroup.controllers'), `${group.controllers}\n`);
  writeFileSync(join(base, 'cgroup.subtree_control'), group.subtree ?? '');
  writeFileSync(join(base, 'cgroup.procs'), group.procs.map((p) => `${p}\n`).join(''));
  return {
    root,
    base,
    input: {
      // Only cgroup2 is mounted: a pure v2 host such as Debian 12.
      mountinfo: `30 23 0:26 / ${root} rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n`,
      procCgroup: '0::/system.slice/typevisor.service\n',
      pid: DAEMON,
    },
  };
}

test('cgroup v2: the daemon moves into its leaf, hands memory and pids down, and each VM process gets its limits', (t) => {
  const fake = fakeV2(t, { controllers: 'cpuset cpu io memory pids', procs: [DAEMON] });
  const cg = VmProcessCgroups.probe(fake.input);
  assert.ok(typeof cg !== 'string', String(cg));
  assert.equal(cg.version, 2);
  assert.equal(readFileSync(join(fake.base, `typevisor-${DAEMON}`, 'cgroup.procs'), 'utf8'), String(DAEMON));
  assert.equal(readFileSync(join(fake.base, 'cgroup.subtree_control'), 'utf8'), '+memory +pids');

  const vmDir = '/var/lib/typevisor/vms/web';
  const g = cg.place('web', vmDir, 777, 256);
  assert.equal(g.memory, g.pids, 'one group holds both controllers in v2');
  assert.match(g.memory, new RegExp(`^${fake.base}/tv-web-[0-9a-f]{8}$`));
  const read = (f: string) => readFileSync(join(g.memory, f), 'utf8');
  assert.equal(read('memory.max'), String((256 + VM_PROCESS_OVERHEAD_MIB) * 2 ** 20));
  assert.equal(read('memory.oom.group'), '1');
  assert.equal(read('pids.max'), String(VM_PROCESS_PIDS_MAX));
  assert.equal(read('cgroup.procs'), '777');
  assert.ok(!existsSync(join(g.memory, 'memory.limit_in_bytes')), 'no v1 file is written');
  // Two homes' VMs of one name get two groups.
  assert.notEqual(cg.groups('web', '/srv/other-typevisor/vms/web').memory, g.memory);

  // A daemon restarted in the same service group (its leaf left behind by the CPU enforcer or by this code) finds
  // the same base group.
  assert.equal(daemonBaseGroup(join(fake.base, `typevisor-${DAEMON}`), DAEMON), fake.base);
  const again = VmProcessCgroups.probe({ ...fake.input, procCgroup: `0::/system.slice/typevisor.service/typevisor-${DAEMON}\n` });
  assert.ok(typeof again !== 'string', String(again));
  assert.equal(again.groups('web', vmDir).memory, g.memory);
});

test('cgroup v2: a group shared with other processes, or without memory and pids, is refused with what to do', (t) => {
  const shared = fakeV2(t, { controllers: 'memory pids', procs: [1234, DAEMON] });
  const why = VmProcessCgroups.probe(shared.input);
  assert.equal(typeof why, 'string');
  assert.match(why as string, /holds other processes than the daemon \(1234\).*Delegate=yes/);
  assert.ok(!existsSync(join(shared.base, `typevisor-${DAEMON}`)), 'nothing was moved');
  assert.equal(readFileSync(join(shared.base, 'cgroup.subtree_control'), 'utf8'), '');

  const bare = fakeV2(t, { controllers: 'cpu io', procs: [DAEMON] });
  assert.match(String(VmProcessCgroups.probe(bare.input)), /offers no memory or pids controller \(delegate it/);

  // Already handed down (the daemon moved out earlier): nothing to move, the group is used as it is.
  const ready = fakeV2(t, { controllers: 'memory pids', procs: [], subtree: 'memory pids' });
  const cg = VmProcessCgroups.probe(ready.input);
  assert.ok(typeof cg !== 'string', String(cg));
  assert.ok(!existsSync(join(ready.base, `typevisor-${DAEMON}`)));
});

test('cgroup v1 hierarchies are preferred where memory and pids are mounted there', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'tv-cgv1-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  for (const c of ['memory', 'pids']) mkdirSync(join(root, c, 'daemon'), { recursive: true });
  const cg = VmProcessCgroups.probe({
    mountinfo: [
      `32 31 0:29 / ${root}/memory rw,relatime - cgroup cgroup rw,memory`,
      `33 31 0:30 / ${root}/pids rw,relatime - cgroup cgroup rw,pids`,
      `41 31 0:38 / ${root}/unified rw,relatime - cgroup2 cgroup2 rw`,
    ].join('\n'),
    procCgroup: '4:memory:/daemon\n8:pids:/daemon\n0::/\n',
    pid: DAEMON,
  });
  assert.ok(typeof cg !== 'string', String(cg));
  assert.equal(cg.version, 1);
  const g = cg.groups('web', '/v/web');
  assert.match(g.memory, new RegExp(`^${root}/memory/daemon/tv-web-`));
  assert.match(g.pids, new RegExp(`^${root}/pids/daemon/tv-web-`));
});
