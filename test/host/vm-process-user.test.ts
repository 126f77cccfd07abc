/**
 * The per-VM users of process mode (src/host/vm-process-user.ts), without guests: allocation (lowest free uid,
 * reused from the record, a copied folder gets its own), what prepare and grant do to modes and owners, and the
 * named error for a file outside the folder its uid cannot reach. Ownership changes need root: those parts skip otherwise.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VmProcessUserError, VmProcessUsers } from '../../src/host/vm-process-user.js';
import { parseProcStatusCredentials } from '../../src/vm/drop-privileges.js';
import type { VmConfig } from '../../src/vm/config.js';

const isRoot = process.getuid?.() === 0;

function home(): { home: string; vms: string } {
  const h = mkdtempSync(join(tmpdir(), 'tv-users-'));
  const vms = join(h, 'vms');
  mkdirSync(vms);
  return { home: h, vms };
}

function vmDir(vms: string, name: string): string {
  const dir = join(vms, name);
  mkdirSync(join(dir, 'snapshots'), { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, 'disk.raw'), Buffer.alloc(4096));
  writeFileSync(join(dir, 'vm.json'), '{}', { mode: 0o600 });
  return dir;
}

const config = (dir: string): VmConfig => ({ disks: [{ path: join(dir, 'disk.raw'), format: 'raw' }] }) as unknown as VmConfig;

test('parseProcStatusCredentials reads Uid, Gid, empty Groups, NoNewPrivs and capabilities', () => {
  const c = parseProcStatusCredentials(
    'Name:\tnode\nUid:\t5\t5\t5\t5\nGid:\t6\t6\t6\t6\nGroups:\t\nNoNewPrivs:\t1\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000400\n',
  );
  assert.deepEqual(c.uids, [5, 5, 5, 5]);
  assert.deepEqual(c.gids, [6, 6, 6, 6]);
  assert.deepEqual(c.groups, []);
  assert.equal(c.noNewPrivs, true);
  assert.equal(c.capPrm, 0n);
  assert.equal(c.capEff, 0x400n);
});

test('VM users: lowest free uid, reused from the record, a copied folder gets its own', () => {
  const { home: h, vms } = home();
  try {
    const users = new VmProcessUsers(3_000_000_000, 3);
    const a = vmDir(vms, 'a');
    const b = vmDir(vms, 'b');
    assert.deepEqual(users.userFor(a), { uid: 3_000_000_000, gid: 3_000_000_000 });
    assert.deepEqual(users.userFor(b), { uid: 3_000_000_001, gid: 3_000_000_001 });
    assert.deepEqual(users.userFor(a), { uid: 3_000_000_000, gid: 3_000_000_000 }, 'reused');
    // A clone made by copying the folder carries a's record; it names a's folder, so the copy gets a new uid.
    const c = join(vms, 'c');
    cpSync(a, c, { recursive: true });
    assert.deepEqual(users.userFor(c), { uid: 3_000_000_002, gid: 3_000_000_002 });
    const d = vmDir(vms, 'd');
    assert.throws(
      () => users.userFor(d),
      (e: unknown) => e instanceof VmProcessUserError && e.code === 'VM_UIDS_EXHAUSTED',
    );
    assert.throws(() => new VmProcessUsers(10, 5), RangeError);
  } finally {
    rmSync(h, { recursive: true, force: true });
  }
});

test('VM users: prepare and grant set owners and modes; an unreachable outside file is a named error', (t) => {
  if (!isRoot) {
    t.skip('changing owners needs root');
    return;
  }
  const { home: h, vms } = home();
  try {
    chmodSync(h, 0o700);
    const users = new VmProcessUsers(3_000_000_000, 10);
    const a = vmDir(vms, 'a');
    const prepared = users.prepare(a, config(a));
    assert.equal(statSync(h).mode & 0o777, 0o700, 'nothing above the folder changes');
    const dir = statSync(a);
    assert.deepEqual([dir.uid, dir.gid, dir.mode & 0o777], [0, prepared.gid, 0o710]);
    const disk = statSync(join(a, 'disk.raw'));
    assert.deepEqual([disk.uid, disk.gid, disk.mode & 0o777], [prepared.uid, prepared.gid, 0o600]);
    const vmJson = statSync(join(a, 'vm.json'));
    assert.deepEqual([vmJson.uid, vmJson.mode & 0o777], [0, 0o600], 'vm.json stays the daemon’s');
    const exit = statSync(join(a, 'vm-process-exit.json'));
    assert.deepEqual([exit.uid, exit.size], [prepared.uid, 0]);

    // A state file the VM will read, a directory it will write into.
    const tmp = join(a, 'snapshots', '.tmp-s1');
    mkdirSync(tmp, { mode: 0o700 });
    writeFileSync(join(a, 'snapshots', 'state'), 'x', { mode: 0o600 });
    users.grant(a, prepared, [join(a, 'snapshots', 'state')], [tmp]);
    const snaps = statSync(join(a, 'snapshots'));
    assert.deepEqual([snaps.uid, snaps.gid, snaps.mode & 0o777], [0, prepared.gid, 0o710]);
    assert.equal(statSync(join(a, 'snapshots', 'state')).uid, prepared.uid);
    const t2 = statSync(tmp);
    assert.deepEqual([t2.uid, t2.mode & 0o777], [prepared.uid, 0o700]);
    assert.equal(JSON.parse(readFileSync(join(a, 'vm-process-user.json'), 'utf8')).uid, prepared.uid);

    // A file outside the folder is reached by path: under a directory others may not pass, a named error.
    const locked = mkdtempSync(join(tmpdir(), 'tv-locked-'));
    chmodSync(locked, 0o700);
    writeFileSync(join(locked, 'state'), 'x');
    mkdirSync(join(locked, 'save'));
    assert.throws(
      () => users.grant(a, prepared, [join(locked, 'state')]),
      (e: unknown) => e instanceof VmProcessUserError && e.code === 'VM_FILES_UNREACHABLE',
    );
    assert.throws(
      () => users.grant(a, prepared, [], [join(locked, 'save')]),
      (e: unknown) => e instanceof VmProcessUserError && e.code === 'VM_FILES_UNREACHABLE',
    );
    rmSync(locked, { recursive: true, force: true });
  } finally {
    rmSync(h, { recursive: true, force: true });
  }
});
