/**
 * A Linux boot in this process, to the guest's ready marker, with the translator's counters: how many blocks
 * were translated and compiled, and the compile time, next to the CPU time of the boot. For comparing JIT
 * settings (TYPEVISOR_JIT, TYPEVISOR_RAM) on the same kernel:
 *
 *   TYPEVISOR_JIT=wasm TYPEVISOR_RAM=linear npx tsx bench/boot/in-process.ts [--runs N]
 */
import { parseArgs } from 'node:util';
import { loadavg } from 'node:os';
import { Machine } from '../../src/machine/machine.js';
import type { HartAdapter } from '../../src/machine/hart-adapter.js';
import { defaultVmConfig } from '../../src/vm/config.js';
import { defaultHartFactory, loadBootImages } from '../../src/vm/machine-loop.js';
import { createLinearRam, linearRamWanted } from '../../src/vm/linear-ram.js';
import { guestArtifacts } from '../../src/guests/index.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '1' } } });
const g = guestArtifacts();

async function bootOnce(): Promise<void> {
  const config = defaultVmConfig({ kernel: g.kernel, initrd: g.initramfs, append: 'console=ttyS0' });
  const images = await loadBootImages(config);
  let serial = '';
  let resolveReady: () => void = () => {};
  const ready = new Promise<void>((r) => (resolveReady = r));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const machine = new Machine({
    harts: 1,
    memoryBytes: config.memoryMiB << 20,
    firmware: images.firmware,
    kernel: images.kernel,
    initrd: images.initrd,
    bootargs: config.append ?? '',
    createHart: defaultHartFactory(),
    linearRam: linearRamWanted() ? createLinearRam : undefined,
    onConsoleOutput: (b) => {
      serial += Buffer.from(b).toString('latin1');
      if (serial.includes(g.marker)) resolveReady();
    },
  });
  machine.start();
  const timeout = setTimeout(() => {
    console.error(serial.slice(-2000));
    process.exit(1);
  }, 600_000);
  await ready;
  clearTimeout(timeout);
  const cpu = process.cpuUsage(cpu0);
  const wall = performance.now() - t0;
  machine.stop();
  const hart = (machine.harts[0] as HartAdapter).hart;
  const j = hart.jitStats;
  console.log(
    `boot: wall ${(wall / 1000).toFixed(2)} s, cpu ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s, ${(hart.instret / 1e6).toFixed(0)} M insns` +
      (j
        ? `; ${j.backend} jit: ${j.blocks} blocks (${j.translatedInsns} insns), ${j.compiled} compiled in ${(j.compileMs / 1000).toFixed(2)} s, instantiated in ${(j.instantiateMs / 1000).toFixed(2)} s`
        : '; jit off') +
      `; load ${loadavg()[0]!.toFixed(1)}`,
  );
}

for (let i = 0; i < Number(values.runs); i++) await bootOnce();
process.exit(0);
