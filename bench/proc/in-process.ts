/**
 * The shell workloads of bench/proc, in this process (board, hart and the built initramfs), with the hart's
 * instruction count and the translator's counters beside each step's time. For comparing JIT settings and for
 * CPU profiles (`node --cpu-prof`) of guest user-mode work:
 *
 *   TYPEVISOR_JIT=wasm npx tsx bench/proc/in-process.ts [--only NAME]
 */
import { parseArgs } from 'node:util';
import { loadavg } from 'node:os';
import type { HartAdapter } from '../../src/machine/hart-adapter.js';
import { defaultVmConfig } from '../../src/vm/config.js';
import { guestArtifacts } from '../../src/guests/index.js';
import { Vm } from '../../test/devices/linux-vm.js';
import { WORKLOADS } from './workloads.js';

const { values } = parseArgs({ options: { only: { type: 'string' }, repeat: { type: 'string', default: '2' } } });
const g = guestArtifacts();
const vm = await Vm.boot(defaultVmConfig({ kernel: g.kernel, initrd: g.initramfs, append: 'console=ttyS0' }));
await vm.waitFor('serial', g.marker, 600_000);
const hart = (vm.machine.harts[0] as HartAdapter).hart;
for (const w of WORKLOADS) {
  if (values.only !== undefined && !w.name.startsWith(values.only)) continue;
  for (let r = 0; r < Number(values.repeat); r++) {
    const i0 = hart.instret;
    const j0 = hart.jitStats;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await vm.sh(w.command, 600_000);
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const insns = hart.instret - i0;
    console.log(
      `${w.name.padEnd(16)} ${(ms / 1000).toFixed(2)} s wall, ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s cpu, ` +
        `${(insns / 1e6).toFixed(1)} M insns, ${(insns / ms / 1000).toFixed(1)} MIPS` +
        (hart.jitStats && j0
          ? `, ${hart.jitStats.blocks - j0.blocks} new blocks (${hart.jitStats.compiled - j0.compiled} compiled in ` +
            `${(hart.jitStats.compileMs + hart.jitStats.instantiateMs - j0.compileMs - j0.instantiateMs).toFixed(0)} ms)`
          : '') +
        `; load ${loadavg()[0]!.toFixed(1)}`,
    );
  }
}
await vm.shutdown();
process.exit(0);
