/**
 * A Linux guest whose 4 harts run on threads of their own (src/machine/parallel): it boots with 4 CPUs, a shared
 * counter incremented by 4 guest threads with amoadd and with LR/SC loops ends exact over many runs, the harts
 * share the blocks they compile (src/riscv/jit/wasm/share.ts), a pause
 * freezes every hart at a boundary (instret stands still and the states are exact enough to save), and the saved
 * state continues in a fresh threaded board.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { bufferSource, encodeStateBytes, StateFile } from '../../src/machine/snapshot/format.js';
import { captureMachineState, restoreMachineState } from '../../src/machine/snapshot/machine-state.js';
import { MiB, Vm, bootToShell, diskConfig } from '../devices/linux-vm.js';
import { requireGuest } from '../helpers/guest.js';
import { requireTool } from '../helpers/require.js';
import { repoRoot } from '../helpers/paths.js';
import { jitFromEnv } from '../../src/riscv/jit/index.js';

const STRESS = /ATOMIC-STRESS amoadd=(\d+) lrsc=(\d+) amoadd_w=(\d+) expected=(\d+) (OK|FAIL)/g;

/** test/guests/atomic-stress.c as a static binary on a small raw disk of its own (the guest reads it off /dev/vdb). */
function stressDisk(dir: string): { path: string; bytes: number } {
  requireTool('riscv64-linux-gnu-gcc', 'gcc-riscv64-linux-gnu');
  const bin = join(dir, 'atomic-stress');
  const cc = spawnSync(
    'riscv64-linux-gnu-gcc',
    ['-O2', '-static', '-pthread', '-o', bin, join(repoRoot, 'test/guests/atomic-stress.c')],
    {
      encoding: 'utf8',
    },
  );
  assert.equal(cc.status, 0, `compile failed:\n${cc.stderr}`);
  const bytes = readFileSync(bin);
  const path = join(dir, 'bin.raw');
  writeFileSync(path, Buffer.concat([bytes, Buffer.alloc(MiB - (bytes.length % MiB))]));
  return { path, bytes: bytes.length };
}

test(
  'Linux on 4 harts on threads: SMP boot, exact atomics across harts, exact pause, save and restore',
  { timeout: 900_000 },
  async (t) => {
    const guest = requireGuest();
    const dir = mkdtempSync(join(tmpdir(), 'tv-smp-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const disk = join(dir, 'root.raw');
    copyFileSync(guest.rootfs, disk);
    const stress = stressDisk(dir);
    const config = { ...diskConfig(disk, 'raw'), cpus: 4 };
    config.disks = [...config.disks, { path: stress.path, format: 'raw' as const, readOnly: true, serial: 'stress' }];

    const a = await bootToShell(config, { hartThreads: true });
    // A failed assertion must not leave the guest's threads running: the test process would never end.
    t.after(() => a.machine.stop());
    assert.equal(a.machine.hartsOnThreads, true, 'the harts run on threads of their own');
    // Kernel messages stay off the console the commands' output is read from (on a loaded host the kernel warns
    // of slow timer interrupts, and such a line once landed in a `cat`'s output). The restore keeps the level.
    await a.sh('dmesg -n 1');
    assert.equal((await a.sh('nproc')).trim(), '4');
    assert.match(await a.sh('dmesg | grep "smp: Brought up"'), /Brought up 1 node, 4 CPUs/);

    // A hart sees its external-interrupt line drop as soon as its claim returns, as a board's own hart does:
    // Linux claims until the PLIC answers 0, so about one empty claim per interrupt. A hart that kept the old
    // level until its next run re-entered the handler and claimed nothing, ~20 times per UART interrupt.
    const plic0 = a.machine.plic.metrics();
    // Printed, not counted: ~1 KiB of output is ~70 transmit interrupts at 16 bytes a FIFO (a command with a
    // short answer made fewer than 10 on some runs).
    await a.sh('seq 300');
    const plic1 = a.machine.plic.metrics();
    const claims = plic1.claims! - plic0.claims!;
    const empty = plic1.emptyClaims! - plic0.emptyClaims!;
    assert.ok(claims > 10, `UART interrupts claimed: ${claims}`);
    assert.ok(empty <= claims + 10, `claims that found nothing: ${empty}, against ${claims} that found a source`);

    await a.sh(`head -c ${stress.bytes} /dev/vdb > /tmp/as && chmod +x /tmp/as`);
    const runs = 6;
    const out = await a.sh(`for i in $(seq ${runs}); do /tmp/as 4 200000; done`, 600_000);
    const lines = [...out.matchAll(STRESS)];
    assert.equal(lines.length, runs, out);
    for (const m of lines) assert.deepEqual(m.slice(1), ['800000', '800000', '800000', '800000', 'OK'], m[0]);
    // The default engine runs on the hart threads too (npm test runs this file again on the interpreter alone).
    const { translatedBlocks: blocks, siblingBlocks } = a.machine.stats();
    if (jitFromEnv()?.backend === 'wasm') {
      assert.ok(blocks > 100, `blocks translated on the hart threads: ${blocks}`);
      // The harts run the same kernel and programs: blocks one compiled, others took over the channel.
      assert.ok(siblingBlocks > 0, `blocks taken from a sibling hart: ${siblingBlocks}`);
    } else assert.equal(blocks + siblingBlocks, 0, 'the interpreter translates nothing');
    // Every CPU took part: each answered interrupts (IPIs at least) while the stress ran.
    const ipis = (await a.sh('grep IPI /proc/interrupts | head -1')).trim().split(/\s+/).slice(1, 5).map(Number);
    assert.ok(ipis.length === 4 && ipis.every((n) => n > 0), `IPIs per CPU: ${ipis.join(' ')}`);
    // Sent through the SBI on the senders' threads, which count their calls for the board's stats.
    const ipiTotal = ipis.reduce((x, y) => x + y, 0);
    assert.ok(a.machine.stats().sbiCalls > 0, `SBI calls on the hart threads for ${ipiTotal} IPIs`);

    // A busy guest paused: every hart stops at a boundary, and nothing retires until it resumes.
    await a.sh('{ (while :; do :; done) & (while :; do :; done) & } 2>/dev/null');
    await new Promise((r) => setTimeout(r, 500));
    a.machine.pause();
    const frozen = a.machine.stats().instret;
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(a.machine.stats().instret, frozen, 'instret moved while paused');
    assert.ok(
      frozen.every((n) => n > 0),
      `instret ${frozen.join(' ')}`,
    );
    a.machine.resume();
    await a.sh('echo resumed');
    assert.ok(
      a.machine.stats().instret.some((n, i) => n > frozen[i]!),
      'the harts ran on after resume',
    );
    await a.sh('kill %1 %2 2>/dev/null; kill $(jobs -p) 2>/dev/null; echo before > /root/mark; sync');
    // Written aside and renamed: on 4 CPUs a `cat` can otherwise run between the truncation and the write.
    await a.sh(
      '{ (i=0; while :; do echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; i=$((i+1)); sleep 0.1; done) >/dev/null 2>&1 & }',
    );
    await new Promise((r) => setTimeout(r, 1000));
    const countA = Number((await a.sh('cat /tmp/count')).trim());

    a.machine.pause();
    const bytes = encodeStateBytes(captureMachineState(a.machine));
    a.machine.stop();
    await a.virtio.close();

    const b = await Vm.build(config, { hartThreads: true }, true);
    t.after(() => b.machine.stop());
    const machine = b.machine;
    restoreMachineState(machine, new StateFile(bufferSource(bytes)), { lazyRam: true });
    machine.start();
    assert.equal(machine.hartsOnThreads, true);
    const countB = Number((await b.sh('cat /tmp/count')).trim());
    assert.ok(countB >= countA && countB < countA + 100, `counter ${countA} -> ${countB}`);
    assert.equal((await b.sh('nproc')).trim(), '4');
    const again = [...(await b.sh('/tmp/as 4 100000', 300_000)).matchAll(STRESS)];
    assert.equal(again.length, 1);
    assert.equal(again[0]![5], 'OK', again[0]![0]);
    assert.equal((await b.sh('cat /root/mark')).trim(), 'before');
    await b.shutdown();
  },
);
