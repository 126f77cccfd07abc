/**
 * Disk benchmark: sequential 1 MiB and random 4 KiB reads/writes measured inside the guest (bench/disk/
 * diskbench.c, O_DIRECT on the virtio disk), on a raw and on a qcow2 image, in typevisor and in
 * qemu-system-riscv64 -M virt with the same kernel, initramfs and freshly created images, in the same run.
 * Prints both figures and the ratio.
 *
 *   npx tsx bench/disk/index.ts [--span-mib 128] [--seq-mib 32] [--ops 1000] [--skip-qemu]
 *
 * Needs the guest images (`typevisor guest build`) and riscv64-linux-gnu-gcc (to build diskbench).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { guestArtifacts } from '../../src/guests/index.js';
import { createDisk } from '../../src/storage/index.js';
import { cliArgs, repoRoot } from '../../test/helpers/paths.js';
import { runSession } from '../lib/session.js';

const { values } = parseArgs({
  options: {
    'span-mib': { type: 'string', default: '128' },
    'seq-mib': { type: 'string', default: '32' },
    ops: { type: 'string', default: '1000' },
    'skip-qemu': { type: 'boolean' },
  },
});
const g = guestArtifacts();
const TIMEOUT_MS = 900_000;
const DISK_SIZE = 256 * 2 ** 20;
const work = mkdtempSync(join(tmpdir(), 'typevisor-bench-disk-'));

// The benchmark program travels to the guest on a small raw disk of its own.
const bin = join(work, 'diskbench');
const cc = spawnSync('riscv64-linux-gnu-gcc', ['-O2', '-static', '-o', bin, join(repoRoot, 'bench/disk/diskbench.c')], {
  encoding: 'utf8',
});
if (cc.status !== 0) throw new Error(`building diskbench failed:\n${cc.stderr}`);
const binBytes = readFileSync(bin);
const binDisk = join(work, 'bin.raw');
writeFileSync(binDisk, Buffer.concat([binBytes, Buffer.alloc(2 ** 20 - (binBytes.length % 2 ** 20))]));

interface Result {
  name: string;
  bytes: number;
  ops: number;
  seconds: number;
}

/** The guest finds the test disk (the big one) and the program disk by size, whatever their names. */
const steps = [
  'for d in vda vdb; do s=$(cat /sys/block/$d/size); if [ "$s" -gt 204800 ]; then T=/dev/$d; else B=/dev/$d; fi; done',
  `head -c ${binBytes.length} $B > /tmp/db && chmod +x /tmp/db`,
  `/tmp/db $T ${values['span-mib']} ${values['seq-mib']} ${values.ops}`,
];

async function runGuest(cmd: string, args: string[]): Promise<Result[]> {
  const { out } = await runSession(cmd, args, { ready: g.marker, steps, timeoutMs: TIMEOUT_MS });
  const results = [...out.matchAll(/RESULT (\S+) (\d+) (\d+) ([\d.]+)/g)].map((m) => ({
    name: m[1]!,
    bytes: Number(m[2]),
    ops: Number(m[3]),
    seconds: Number(m[4]),
  }));
  if (results.length !== 4) throw new Error(`${cmd}: benchmark output incomplete\n${out.slice(-3000)}`);
  return results;
}

async function freshImage(format: 'raw' | 'qcow2', tag: string): Promise<string> {
  const p = join(work, `${tag}.${format}`);
  rmSync(p, { force: true });
  await createDisk(p, { format, size: DISK_SIZE });
  return p;
}

const APPEND = 'console=ttyS0';
const figure = (r: Result): number => (r.name.startsWith('seq') ? r.bytes / 2 ** 20 / r.seconds : r.ops / r.seconds);
const unit = (r: Result): string => (r.name.startsWith('seq') ? 'MiB/s' : 'IOPS');

try {
  for (const format of ['raw', 'qcow2'] as const) {
    const tvImage = await freshImage(format, 'typevisor');
    const tv = await runGuest(process.execPath, [
      ...cliArgs('run', '--kernel', g.kernel, '--initrd', g.initramfs, '--append', APPEND),
      '--drive',
      `file=${tvImage},format=${format}`,
      '--drive',
      `file=${binDisk},format=raw,readonly=on`,
    ]);
    // The image the guest just wrote through typevisor must be consistent for the reference implementation.
    const check = format === 'qcow2' ? spawnSync('qemu-img', ['check', tvImage], { encoding: 'utf8' }) : null;
    let qemu: Result[] | null = null;
    if (!values['skip-qemu']) {
      const qImage = await freshImage(format, 'qemu');
      qemu = await runGuest('qemu-system-riscv64', [
        '-M',
        'virt',
        '-m',
        '256',
        '-nographic',
        '-kernel',
        g.kernel,
        '-initrd',
        g.initramfs,
        '-append',
        APPEND,
        '-drive',
        `file=${qImage},format=${format},if=none,id=d0`,
        '-device',
        'virtio-blk-device,drive=d0',
        '-drive',
        `file=${binDisk},format=raw,if=none,id=d1,readonly=on`,
        '-device',
        'virtio-blk-device,drive=d1',
      ]);
    }
    if (check)
      console.log(
        `\nqemu-img check of the qcow2 image typevisor's guest wrote: exit ${check.status}, ${check.stdout.split('\n')[0]}`,
      );
    console.log(
      `\n${format} image (${values['seq-mib']} MiB sequential, ${values.ops} random 4 KiB ops over ${values['span-mib']} MiB):`,
    );
    for (let i = 0; i < tv.length; i++) {
      const t = tv[i]!;
      const q = qemu?.[i];
      const line = `  ${t.name.padEnd(14)} typevisor ${figure(t).toFixed(1).padStart(9)} ${unit(t)}`;
      console.log(
        q
          ? `${line}   qemu ${figure(q).toFixed(1).padStart(9)} ${unit(q)}   ratio qemu/typevisor ${(figure(q) / figure(t)).toFixed(1)}x`
          : line,
      );
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
