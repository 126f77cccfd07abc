/**
 * A hostile guest against the whole board: random instruction streams (mostly valid encodings drawn from the
 * opcode table, with random operands) run in M-mode on the real Machine with every device attached (CLINT,
 * PLIC, UART, RTC, syscon, virtio rng/console/balloon/blk), with registers seeded to point into device
 * registers, RAM and wild addresses. Whatever it does — device registers written with garbage, virtqueues at
 * random addresses, trap storms through a wild mtvec, interrupts left pending — the emulator must not fault,
 * nothing may throw into the host, and the board must stop cleanly when asked.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { fuzzParams } from '../helpers/fuzz.js';
import { Machine, type MachineExit } from '../../src/machine/machine.js';
import * as L from '../../src/machine/layout.js';
import { OPCODES } from '../../src/riscv/opcodes.js';
import { defaultVmConfig } from '../../src/vm/config.js';
import { defaultHartFactory } from '../../src/vm/machine-loop.js';
import { attachVirtioDevices } from '../../src/vm/virtio-devices.js';
import { mulberry32 } from '../helpers/prng.js';

const MEMORY_MIB = 16;
const PROGRAM_WORDS = 4096;
const RUN_MS = 150;
/** Every MMIO window on the board, plus RAM: what seeded registers point at. */
const TARGETS = [
  L.CLINT_BASE,
  L.PLIC_BASE,
  L.PLIC_BASE + 0x20_0000, // context registers (threshold, claim/complete)
  L.UART0_BASE,
  L.RTC_BASE,
  ...Array.from({ length: L.VIRTIO_COUNT }, (_, i) => L.VIRTIO_BASE + i * L.VIRTIO_STRIDE),
  L.DRAM_BASE,
  L.DRAM_BASE + MEMORY_MIB * 2 ** 20 - 4096,
];
const FULL = OPCODES.filter((e) => e.size === 4);
const COMPRESSED = OPCODES.filter((e) => e.size === 2);

const addi = (rd: number, rs1: number, imm: number): number => (((imm & 0xfff) << 20) | (rs1 << 15) | (rd << 7) | 0x13) >>> 0;
const sw = (rs2: number, imm: number, rs1: number): number =>
  ((((imm >> 5) & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (2 << 12) | ((imm & 31) << 7) | 0x23) >>> 0;
/** lui + addi: the low 32 bits are exact (what a 32-bit device register sees). */
const li32 = (rd: number, v: number): number[] => [
  (((((v + 0x800) >>> 12) & 0xfffff) << 12) | (rd << 7) | 0x37) >>> 0,
  addi(rd, rd, (v << 20) >> 20),
];
const BASE = 6; // x6: the device being programmed
const VAL = 31; // x31: the value being stored

/**
 * A pass over every device, in the order a driver would program it but with hostile values: each virtio
 * transport is reset, negotiated and given queues at random places (inside the random program, anywhere in
 * RAM, or outside it) and notified; every PLIC source is enabled with a random priority; the UART, CLINT and
 * RTC get interrupts enabled and deadlines in the past.
 */
function devicePass(rand: () => number): number[] {
  const out: number[] = [];
  const u32 = (): number => Math.floor(rand() * 2 ** 32) >>> 0;
  const store = (off: number, v: number): void => void out.push(...li32(VAL, v), sw(VAL, off, BASE));
  const ramAddr = (): number => {
    const k = rand();
    if (k < 0.5) return L.DRAM_BASE + (Math.floor(rand() * PROGRAM_WORDS * 4) & ~15);
    if (k < 0.8) return L.DRAM_BASE + (Math.floor(rand() * MEMORY_MIB * 2 ** 20) & ~15);
    return u32();
  };
  for (let slot = 0; slot < L.VIRTIO_COUNT; slot++) {
    out.push(...li32(BASE, L.VIRTIO_BASE + slot * L.VIRTIO_STRIDE));
    store(0x070, 0); // Status: reset
    store(0x070, 3); // ACKNOWLEDGE | DRIVER
    store(0x024, 1); // DriverFeaturesSel
    store(0x020, rand() < 0.8 ? 1 : u32()); // VERSION_1 (or garbage)
    store(0x024, 0);
    store(0x020, u32());
    store(0x070, 0xb); // | FEATURES_OK
    for (let q = 0; q < 3; q++) {
      store(0x030, q); // QueueSel
      store(0x038, rand() < 0.7 ? 1 << Math.floor(rand() * 9) : u32()); // QueueNum
      store(0x080, ramAddr()); // QueueDescLow
      store(0x090, ramAddr()); // QueueDriverLow
      store(0x0a0, ramAddr()); // QueueDeviceLow
      store(0x044, 1); // QueueReady
    }
    store(0x070, rand() < 0.9 ? 0xf : u32()); // DRIVER_OK
    for (let q = 0; q < 3; q++) store(0x050, q); // QueueNotify
    store(0x100 + (Math.floor(rand() * 64) & ~3), u32()); // device config space
  }
  out.push(...li32(BASE, L.PLIC_BASE));
  for (let src = 1; src < 32; src++) store(src * 4, Math.floor(rand() * 8)); // priorities
  out.push(...li32(BASE, L.PLIC_BASE + 0x2000));
  for (let ctx = 0; ctx < 4; ctx++) for (let w = 0; w < 3; w++) store(ctx * 0x80 + w * 4, 0xffffffff); // enables
  out.push(...li32(BASE, L.PLIC_BASE + 0x20_0000));
  for (let ctx = 0; ctx < 4; ctx++) store(ctx * 0x1000, 0); // thresholds
  out.push(...li32(BASE, L.UART0_BASE));
  store(1, 0x0f); // IER: every interrupt
  for (let i = 0; i < 4; i++) store(0, u32()); // THR
  store(3, u32()); // LCR
  out.push(...li32(BASE, L.CLINT_BASE));
  store(0, 1); // msip
  out.push(...li32(BASE, L.CLINT_BASE + 0x4000));
  store(0, 0); // mtimecmp in the past
  store(4, 0);
  out.push(...li32(BASE, L.RTC_BASE));
  for (let off = 0; off < 0x20; off += 4) store(off, u32());
  // Half the programs then take the interrupt storm (every trap restarts the pass); the other half go on into
  // the random code (which may enable interrupts itself).
  if (rand() < 0.5) {
    out.push(...li32(VAL, 0xaaa), 0x304fa073); // csrs mie, x31 (MSIE | MTIE | MEIE and the S bits)
    out.push(0x30046073); // csrsi mstatus, MIE
  }
  return out;
}

/**
 * The program: `auipc t0, 0; csrw mtvec, t0` (so every trap and interrupt restarts it), the device pass, then
 * random words: mostly valid encodings from the opcode table with random operands, compressed pairs, stores
 * through the seeded pointer registers, and raw garbage. The syscon is left out so a run is not over at its
 * first store there.
 */
function program(rand: () => number): Uint8Array {
  const words = new Uint32Array(PROGRAM_WORDS);
  const head = [0x00000297, 0x30529073, ...devicePass(rand)]; // auipc t0, 0; csrw mtvec, t0
  words.set(head);
  const u32 = (): number => Math.floor(rand() * 2 ** 32) >>> 0;
  for (let i = head.length; i < PROGRAM_WORDS; i++) {
    const r = rand();
    if (r < 0.7) {
      const e = FULL[Math.floor(rand() * FULL.length)]!;
      words[i] = (e.match | (u32() & ~e.mask)) >>> 0;
    } else if (r < 0.85) {
      const pick = (): number => {
        const e = COMPRESSED[Math.floor(rand() * COMPRESSED.length)]!;
        return (e.match | (u32() & ~e.mask)) & 0xffff;
      };
      words[i] = (pick() | (pick() << 16)) >>> 0;
    } else if (r < 0.95) {
      // sw/sd xN, imm(xM) with a seeded pointer register and a small offset
      const rs1 = 1 + Math.floor(rand() * 31);
      const rs2 = Math.floor(rand() * 32);
      const imm = Math.floor(rand() * 0x200) & ~3;
      const funct3 = rand() < 0.5 ? 2 : 3;
      words[i] = ((imm >> 5) << 25) | (rs2 << 20) | (rs1 << 15) | (funct3 << 12) | ((imm & 31) << 7) | 0x23;
    } else {
      words[i] = u32();
    }
  }
  return new Uint8Array(words.buffer);
}

function seedRegisters(machine: Machine, rand: () => number): void {
  for (const hart of machine.harts) {
    for (let r = 1; r < 32; r++) {
      if (r === 5) continue; // t0 holds the trap vector
      const k = rand();
      let v: number;
      if (k < 0.6) v = TARGETS[Math.floor(rand() * TARGETS.length)]! + (Math.floor(rand() * 0x100) & ~3);
      else if (k < 0.8) v = Math.floor(rand() * 2 ** 32);
      else v = Math.floor((rand() - 0.5) * 2 ** 53);
      hart.setX(r, v);
    }
  }
}

test(
  'a hostile guest (random code, garbage in every device register) never faults the emulator',
  { timeout: 120_000 },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'typevisor-hostile-'));
    const diskPath = join(dir, 'disk.raw');
    const diskBytes = Buffer.alloc(2 ** 20, 0x5a);
    try {
      let runs = 0;
      const params = fuzzParams(24);
      let instructions = 0;
      await fc.assert(
        fc.asyncProperty(fc.integer(), fc.constantFrom(1, 2), async (seed, harts) => {
          writeFileSync(diskPath, diskBytes);
          const rand = mulberry32(seed);
          const config = defaultVmConfig({
            cpus: harts,
            memoryMiB: MEMORY_MIB,
            firmware: { kind: 'none' },
            disks: [{ path: diskPath, format: 'raw', readOnly: rand() < 0.5 }],
          });
          const machine = new Machine({
            harts,
            memoryBytes: MEMORY_MIB * 2 ** 20,
            firmware: { kind: 'none' },
            kernel: program(rand),
            createHart: defaultHartFactory(),
          });
          const virtio = await attachVirtioDevices(machine, config);
          seedRegisters(machine, rand);
          machine.start();
          let timer: NodeJS.Timeout | undefined;
          const first = await Promise.race([
            machine.exited,
            new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), RUN_MS))),
          ]);
          clearTimeout(timer);
          machine.stop();
          const exit: MachineExit = await machine.exited;
          await virtio.close();
          runs++;
          instructions += machine.stats().instret.reduce((a, b) => a + b, 0);
          assert.notEqual(exit.kind, 'fault', `seed ${seed}, ${harts} hart(s): ${JSON.stringify(exit)}`);
          assert.ok(first === 'timeout' || first.kind !== 'fault', `seed ${seed}: ${JSON.stringify(first)}`);
          // A read-only disk keeps every byte, whatever the guest asked for.
          if (config.disks[0]!.readOnly)
            assert.ok(readFileSync(diskPath).equals(diskBytes), `seed ${seed}: read-only disk changed`);
        }),
        params,
      );
      assert.equal(runs, params.numRuns);
      // The streams really executed (not one trap and a hang): on the order of a million instructions per run.
      assert.ok(instructions > runs * 10_000, `only ${instructions} instructions in ${runs} runs`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
