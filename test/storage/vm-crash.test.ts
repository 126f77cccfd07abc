/**
 * Crash safety end to end (issue 5): the VM's own process (`typevisor run`, root on a qcow2 overlay of the
 * base image) is SIGKILLed in the middle of heavy guest writes, again and again on the same image.
 * After every kill:
 * - `qemu-img check` finds no corruption; leaked clusters are tolerated only while the image's dirty bit is
 *   set (lazy refcounts), which is exactly what the spec's dirty-bit repair covers;
 * - every file the guest reported after its `sync` returned (a virtio-blk FLUSH) reads back intact.
 * At the end, opening the image read-write with our backend repairs it and `qemu-img check` is clean.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDisk } from '../../src/storage/index.js';
import { ConsoleProcess } from '../helpers/console.js';
import { requireGuest } from '../helpers/guest.js';
import { cliArgs } from '../helpers/paths.js';
import { mulberry32 } from '../helpers/prng.js';

const ITERATIONS = Number(process.env.TYPEVISOR_CRASH_ITERATIONS ?? 8);
const SEED = Number(process.env.TYPEVISOR_CRASH_SEED ?? Date.now() % 1_000_000);
const SYNCED = /SYNCED ([0-9a-f]{32}) {2}(\/c\d+_\d+)/g;

interface QemuCheck {
  corruptions?: number;
  leaks?: number;
  'check-errors'?: number;
}
function qemuCheck(image: string): { status: number; report: QemuCheck } {
  const r = spawnSync('qemu-img', ['check', '--output=json', image], { encoding: 'utf8' });
  return { status: r.status ?? -1, report: JSON.parse(r.stdout || '{}') as QemuCheck };
}
function dirtyFlag(image: string): boolean {
  // qemu-img reports the qcow2 dirty bit at the top level of its JSON ("dirty-flag"), not under format-specific.
  const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', image], { encoding: 'utf8' })) as {
    'dirty-flag'?: boolean;
  };
  return info['dirty-flag'] === true;
}

test(
  `SIGKILL of the VM process during guest writes (${ITERATIONS}x): qcow2 stays consistent, flushed writes survive`,
  { timeout: 900_000 },
  async (t) => {
    const g = requireGuest();
    const rand = mulberry32(SEED);
    t.diagnostic(`seed ${SEED} (TYPEVISOR_CRASH_SEED replays it)`);
    const dir = mkdtempSync(join(tmpdir(), 'tv-vmcrash-'));
    try {
      const overlay = join(dir, 'root.qcow2');
      execFileSync(
        process.execPath,
        cliArgs('disk', 'create', '-f', 'qcow2', '-b', g.rootfs, '-F', 'raw', '-o', 'lazy_refcounts=on', overlay),
      );
      const flushed = new Map<string, string>(); // guest path → md5 of its content when it was flushed

      for (let it = 1; it <= ITERATIONS; it++) {
        const vm = new ConsoleProcess(
          process.execPath,
          cliArgs(
            'run',
            '--kernel',
            g.kernel,
            '--append',
            'root=/dev/vda rw console=ttyS0',
            '--drive',
            `file=${overlay},format=qcow2`,
            '--memory',
            '128',
          ),
        );
        try {
          await vm.waitFor(g.marker, 240_000);
          // Each file is written, synced (ext4 commit + virtio-blk FLUSH), and only then reported; afterwards the
          // guest keeps rewriting an unsynced file so the kill lands in the middle of heavy writes.
          vm.send(
            `i=0; while [ $i -lt 12 ]; do i=$((i+1)); f=/c${it}_$i; dd if=/dev/urandom of=$f bs=64k count=4 2>/dev/null; sync; ` +
              `echo "SYNCED $(md5sum $f)"; done; while true; do dd if=/dev/urandom of=/noise bs=64k count=16 2>/dev/null; done`,
          );
          const reports = 1 + Math.floor(rand() * 8);
          for (let k = 0; k < reports; k++) await vm.waitFor(/SYNCED [0-9a-f]{32} {2}\/c\d+_\d+/, 120_000);
          await new Promise((r) => setTimeout(r, Math.floor(rand() * 500)));
        } finally {
          await vm.kill('SIGKILL');
        }
        // Every report printed before the kill was printed after its sync returned.
        for (const m of vm.output.matchAll(SYNCED)) flushed.set(m[2]!, m[1]!);
        assert.ok(flushed.size >= it, `iteration ${it}: the guest reported no flushed file\n${vm.tail()}`);

        const { status, report } = qemuCheck(overlay);
        assert.ok(status === 0 || status === 3, `iteration ${it}: qemu-img check exit ${status} ${JSON.stringify(report)}`);
        assert.equal(report.corruptions ?? 0, 0, `iteration ${it}: corruptions`);
        assert.equal(report['check-errors'] ?? 0, 0, `iteration ${it}: check errors`);
        if ((report.leaks ?? 0) > 0)
          assert.ok(dirtyFlag(overlay), `iteration ${it}: ${report.leaks} leaked clusters without the dirty bit`);

        // Read the flushed files back the way the next boot would: replay the ext4 journal, then read them.
        const raw = join(dir, 'check.raw');
        execFileSync('qemu-img', ['convert', '-O', 'raw', overlay, raw]);
        const fsck = spawnSync('e2fsck', ['-fy', raw], { encoding: 'utf8' });
        assert.ok(
          fsck.status !== null && (fsck.status & ~3) === 0,
          `iteration ${it}: e2fsck exit ${fsck.status}\n${fsck.stdout}`,
        );
        for (const [path, md5] of flushed) {
          const content = execFileSync('debugfs', ['-R', `cat ${path}`, raw], {
            maxBuffer: 4 << 20,
            stdio: ['ignore', 'pipe', 'ignore'],
          });
          assert.equal(createHash('md5').update(content).digest('hex'), md5, `iteration ${it}: ${path} lost flushed data`);
        }
        rmSync(raw);
        t.diagnostic(
          `iteration ${it}: ${flushed.size} flushed files intact; qemu-img check exit ${status}, leaks ${report.leaks ?? 0}`,
        );
      }

      // Our backend repairs the dirty image on a read-write open; afterwards qemu-img finds nothing at all.
      const disk = await openDisk(overlay, { format: 'qcow2' });
      await disk.close();
      const final = qemuCheck(overlay);
      assert.equal(final.status, 0, `after repair: ${JSON.stringify(final.report)}`);
      assert.equal(dirtyFlag(overlay), false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
