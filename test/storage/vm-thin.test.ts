/**
 * Thin provisioning as a user sees it (issue 5): a new 10 GiB qcow2 disk takes less than 1 MiB on the host;
 * after the guest itself writes 100 MiB to it through virtio-blk, it takes about 100 MiB, and the data is the
 * data the guest wrote (`qemu-img compare` against the source).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConsoleProcess } from '../helpers/console.js';
import { requireGuest } from '../helpers/guest.js';
import { cliArgs } from '../helpers/paths.js';

const MiB = 1 << 20;
const hostBytes = (path: string): number => statSync(path).blocks * 512;

test(
  'a 10 GiB qcow2 disk is < 1 MiB on the host and ~100 MiB after the guest writes 100 MiB',
  { timeout: 600_000 },
  async (t) => {
    const g = requireGuest();
    const dir = mkdtempSync(join(tmpdir(), 'tv-thin-'));
    try {
      const thin = join(dir, 'thin.qcow2');
      execFileSync(process.execPath, cliArgs('disk', 'create', '-f', 'qcow2', thin, '10G'));
      const empty = hostBytes(thin);
      assert.ok(empty < MiB, `new 10 GiB image takes ${empty} bytes`);

      // The guest copies 100 MiB of random data from a second (raw, read-only) disk onto the thin disk.
      const source = join(dir, 'source.raw');
      const data = Buffer.alloc(100 * MiB);
      for (let off = 0; off < data.length; off += 65536) randomFillSync(data, off, 65536);
      writeFileSync(source, data);

      const vm = new ConsoleProcess(
        process.execPath,
        cliArgs(
          'run',
          '--kernel',
          g.kernel,
          '--initrd',
          g.initramfs,
          '--append',
          'console=ttyS0',
          '--memory',
          '128',
          '--drive',
          `file=${thin},format=qcow2`,
          '--drive',
          `file=${source},format=raw,readonly=on`,
        ),
      );
      try {
        await vm.waitFor(g.marker, 240_000);
        vm.send('dd if=/dev/vdb of=/dev/vda bs=1M count=100 && sync && echo "COPY-$((40+2))-DONE"');
        await vm.waitFor('COPY-42-DONE', 300_000);
        vm.send('poweroff -f');
        const status = await vm.waitExit(60_000);
        assert.equal(status.code, 0, vm.tail());
      } finally {
        await vm.kill();
      }

      const used = hostBytes(thin);
      t.diagnostic(
        `10 GiB qcow2 on the host: ${(empty / 1024).toFixed(0)} KiB new, ${(used / MiB).toFixed(1)} MiB after 100 MiB of guest writes`,
      );
      assert.ok(
        used >= 100 * MiB && used < 110 * MiB,
        `after 100 MiB of guest writes the image takes ${(used / MiB).toFixed(1)} MiB`,
      );
      const check = spawnSync('qemu-img', ['check', thin], { encoding: 'utf8' });
      assert.equal(check.status, 0, check.stdout + check.stderr);
      // The first 100 MiB of the thin disk are what the guest copied (compare the source against that prefix).
      const prefix = join(dir, 'prefix.raw');
      execFileSync('qemu-img', ['dd', '-f', 'qcow2', '-O', 'raw', `if=${thin}`, `of=${prefix}`, 'bs=1M', 'count=100']);
      const cmp = spawnSync('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', source, prefix], { encoding: 'utf8' });
      assert.equal(cmp.status, 0, cmp.stdout + cmp.stderr);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
