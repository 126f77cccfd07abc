/**
 * bench/smp's workload in this process (board, hart threads and the built initramfs), with the instructions each
 * hart retired and the blocks the harts compiled and took from each other beside each step's time: for telling
 * guest work (more instructions on more harts: spinning, idle, IPIs) from host work (the same instructions,
 * slower), and for comparing JIT settings. The harts' share of the step spent in runs (not asleep in WFI; a run
 * includes its waits for the board and for remote fences) and their SBI calls tell idle harts from slow ones.
 *
 *   npx tsx bench/smp/in-process.ts [--cpus N] [--repeat N] [--mib N]
 */
import { parseArgs } from 'node:util';
import { loadavg } from 'node:os';
import { defaultVmConfig } from '../../src/vm/config.js';
import { guestArtifacts } from '../../src/guests/index.js';
import { Vm } from '../../test/devices/linux-vm.js';

const { values } = parseArgs({
  options: {
    cpus: { type: 'string', default: '2' },
    repeat: { type: 'string', default: '3' },
    mib: { type: 'string', default: '3' },
  },
});
const cpus = Number(values.cpus);
const bytes = Math.round(Number(values.mib) * 2 ** 20);
const g = guestArtifacts();
const config = { ...defaultVmConfig({ kernel: g.kernel, initrd: g.initramfs, append: 'console=ttyS0' }), cpus };
const vm = await Vm.boot(config, { hartThreads: cpus > 1 });
await vm.waitFor('serial', g.marker, 600_000);
const steps: [string, string][] = [
  ['1 job', `head -c ${bytes} /dev/zero | sha256sum`],
  ...Array.from(
    { length: Number(values.repeat) },
    (_, i) =>
      [`4 jobs #${i + 1}`, `for i in $(seq 4); do head -c ${bytes} /dev/zero | sha256sum & done; wait`] as [string, string],
  ),
];
for (const [name, command] of steps) {
  const s0 = vm.machine.stats();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await vm.sh(command, 600_000);
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const s1 = vm.machine.stats();
  const perHart = s1.instret.map((n, i) => n - s0.instret[i]!);
  const insns = perHart.reduce((a, b) => a + b, 0);
  console.log(
    `${name.padEnd(10)} ${(ms / 1000).toFixed(2)} s wall, ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s cpu, ` +
      `${(insns / 1e6).toFixed(1)} M insns (${perHart.map((n) => (n / 1e6).toFixed(0)).join(' + ')}), ` +
      `${(insns / ms / 1000).toFixed(0)} MIPS; blocks ${s1.translatedBlocks - s0.translatedBlocks} new, ` +
      `${s1.siblingBlocks - s0.siblingBlocks} from siblings; decode caches ${(s1.decodeCacheBytes / 2 ** 20).toFixed(0)} MiB; ` +
      `harts running ${((100 * (s1.hostMsRun - s0.hostMsRun)) / (ms * cpus)).toFixed(0)} % of the time, ${s1.sleeps - s0.sleeps} sleeps, ` +
      `${s1.sbiCalls - s0.sbiCalls} SBI calls; ` +
      `load ${loadavg()[0]!.toFixed(1)}`,
  );
}
await vm.shutdown();
process.exit(0);
