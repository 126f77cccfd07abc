/**
 * The VM runtime's boards do not keep the boot images: the first board uses the bytes read at create time, later
 * ones (a guest reboot) read the file again. A bare-metal M-mode program prints a letter, spins a little and
 * resets the board through the sifive,test finisher.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRuntime } from '../../src/vm/machine-runtime.js';
import { defaultVmConfig } from '../../src/vm/config.js';
import { buildElfFile } from '../riscv/harness.js';

const REBOOTER = `
  .globl _start
_start:
  li t0, 0x10000000
  li t1, 0x41
  sb t1, 0(t0)          # 'A' on the UART
  li t2, 2000000
1:addi t2, t2, -1
  bnez t2, 1b           # a moment for the host to act between boots
  li t0, 0x100000
  li t1, 0x7777
  sw t1, 0(t0)          # finisher: reset
2:j 2b
`;

function runtimeFor(kernel: string) {
  const events: string[] = [];
  let resolveFault: (m: string) => void = () => {};
  const fault = new Promise<string>((r) => (resolveFault = r));
  const config = defaultVmConfig({
    name: 'rebooter',
    memoryMiB: 16,
    kernel,
    firmware: { kind: 'none' },
    rng: false,
    virtioConsole: false,
    balloon: false,
  });
  const hooks = {
    console: (b: Uint8Array) => events.push(`console ${String.fromCharCode(...b)}`),
    poweroff: () => events.push('poweroff'),
    rebooted: () => events.push('rebooted'),
    fault: (m: string) => {
      events.push('fault');
      resolveFault(m);
    },
  };
  return { events, fault, start: () => createRuntime(config, hooks, { nicLinks: [] }) };
}

const until = async (cond: () => boolean, what: string) => {
  for (let i = 0; i < 3000 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(cond(), what);
};

test(
  'a guest reboot reads the kernel file again; a kernel gone by then fails the reboot naming the file',
  { timeout: 120_000 },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tv-rt-'));
    try {
      const kernel = join(dir, 'rebooter.elf');
      copyFileSync(buildElfFile(REBOOTER), kernel);

      const ok = runtimeFor(kernel);
      const rt = await ok.start();
      await rt.start();
      await until(() => ok.events.filter((e) => e === 'rebooted').length >= 2, 'two reboots with the file in place');
      assert.ok(ok.events.filter((e) => e === 'console A').length >= 2, ok.events.join(', '));
      await rt.stop();

      const gone = runtimeFor(kernel);
      const rt2 = await gone.start();
      await rt2.start();
      await until(() => gone.events.includes('console A'), 'the first boot printed');
      unlinkSync(kernel); // while the first boot spins: its reboot finds no file
      const message = await gone.fault;
      assert.match(message, /reboot failed: cannot read kernel '.*rebooter\.elf'/);
      await rt2.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
