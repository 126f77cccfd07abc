import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Machine, type MachineOptions } from '../../src/machine/machine.js';
import { IMAGE_MAGIC2 } from '../../src/machine/loaders/image.js';
import { parseFdt } from '../../src/machine/fdt.js';
import { FakeHart } from './fake-hart.js';

function image(): Uint8Array {
  const b = new Uint8Array(4096);
  const dv = new DataView(b.buffer);
  dv.setUint32(8, 0x20_0000, true);
  dv.setUint32(16, 0x10_0000, true);
  dv.setUint32(0x38, IMAGE_MAGIC2, true);
  return b;
}

function machine(overrides: Partial<MachineOptions> & { onRun?: FakeHart['onRun'] } = {}) {
  const harts: FakeHart[] = [];
  const out: number[] = [];
  const m = new Machine({
    harts: 2,
    memoryBytes: 64 << 20,
    firmware: { kind: 'builtin' },
    kernel: image(),
    bootargs: 'console=ttyS0',
    onConsoleOutput: (b) => out.push(...b),
    createHart: (_bus, o) => {
      const h = new FakeHart(o.hartId);
      h.onRun = overrides.onRun;
      harts.push(h);
      return h;
    },
    ...overrides,
  });
  return { m, harts, out };
}

test('builtin boot: hart 0 in S-mode at the kernel with a0 = 0, a1 = FDT; others stopped', () => {
  const { m, harts } = machine();
  const h0 = harts[0]!;
  assert.equal(h0.mode, 'S');
  assert.equal(h0.pc, 0x8020_0000);
  assert.equal(h0.getX(10).lo, 0);
  assert.equal(h0.getX(11).lo, m.plan.fdtAddr);
  const blob = new Uint8Array(m.deviceTree.length);
  m.ram.read(m.plan.fdtAddr, blob);
  const chosen = parseFdt(blob).find('chosen')!;
  assert.equal(new TextDecoder().decode(chosen.props.find((p) => p[0] === 'bootargs')![1]), 'console=ttyS0\0');
  assert.equal(harts[1]!.mode, 'M');
  // Untouched RAM stays unallocated: only the chunks holding the kernel and the FDT.
  assert.equal(m.ram.allocatedChunks, 2);
});

test('MMIO: UART output reaches the console callback, syscon poweroff ends the run', async () => {
  let step = 0;
  const { m, out } = machine({
    onRun: (h) => {
      if (h.hartId !== 0) return 0;
      if (step++ === 0) for (const c of 'ok\n') m.bus.mmioWrite(0x1000_0000, 1, c.charCodeAt(0));
      else m.bus.mmioWrite(0x10_0000, 4, 0x5555);
      return 100;
    },
  });
  m.start();
  assert.deepEqual(await m.exited, { kind: 'poweroff' });
  assert.equal(new TextDecoder().decode(Uint8Array.from(out)), 'ok\n');
  assert.equal(m.stats().instret[0], 200);
});

test('empty virtio slots read as QEMU\'s: magic "virt", version 2, device id 0; attachVirtio fills slot 0', () => {
  const { m } = machine();
  assert.equal(m.bus.mmioRead(0x1000_1000, 4), 0x74726976);
  assert.equal(m.bus.mmioRead(0x1000_1004, 4), 2);
  assert.equal(m.bus.mmioRead(0x1000_8008, 4), 0);
  const slot = m.attachVirtio(({ name }) => ({ name, size: 0x1000, read: (o) => (o === 8 ? 2 : 0), write: () => {} }));
  assert.equal(slot, 0);
  assert.equal(m.bus.mmioRead(0x1000_1008, 4), 2);
  assert.equal(m.bus.mmioRead(0x2000_0000, 4), undefined); // unmapped: access fault
});

test('an idle machine sleeps and console input wakes it', async () => {
  let wokenWith = -1;
  const { m } = machine({
    onRun: (h) => {
      if (h.hartId !== 0) return 0;
      if (m.uart.pendingInput) {
        wokenWith = m.uart.takeInput();
        m.bus.mmioWrite(0x10_0000, 4, 0x5555);
        return 1;
      }
      h.waiting = true; // WFI
      return 1;
    },
  });
  m.harts[0]!.stimecmp = Infinity;
  m.start();
  await new Promise((r) => setTimeout(r, 50));
  const before = m.stats();
  assert.ok(before.sleeps >= 1, 'the machine went to sleep');
  assert.ok(before.slices < 20, `an idle machine should not spin (slices=${before.slices})`);
  (m.harts[0] as FakeHart).waiting = false; // what the hart does when an interrupt becomes pending
  m.sendConsoleInput([0x78]);
  assert.deepEqual(await m.exited, { kind: 'poweroff' });
  assert.equal(wokenWith, 0x78);
});

test('a hart that throws becomes a fault exit with its pc', async () => {
  const { m } = machine({
    onRun: (h) => {
      h.pc = 0x8020_0abc;
      throw new Error('decoder exploded');
    },
  });
  m.start();
  const e = await m.exited;
  assert.equal(e.kind, 'fault');
  assert.equal(e.kind === 'fault' && e.pc, 0x8020_0abc);
});

test('pause keeps guest time still; resume continues it', () => {
  let now = 1000;
  const { m } = machine({ hostNowMs: () => now });
  const t0 = m.clock.now();
  now += 10;
  assert.equal(m.clock.now() - t0, 100_000); // 10 ms at 10 MHz
  m.clock.pause();
  now += 500;
  const t1 = m.clock.now();
  assert.equal(t1 - t0, 100_000);
  m.clock.resume();
  now += 1;
  assert.equal(m.clock.now() - t1, 10_000);
});

test('a run-loop pacer rests the loop between busy slices, and console input does not cut the rest short', async () => {
  const { m } = machine({ onRun: (h) => (h.hartId === 0 ? 1000 : 0) });
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  let asked = 0;
  let rest: { at: number; slices: number } | undefined;
  m.setPacer(() => {
    if (++asked !== 3) return 0;
    rest = { at: performance.now(), slices: m.stats().slices };
    return 1000; // one long rest after the third slice
  });
  m.start();
  while (!rest) await sleep(5);
  m.sendConsoleInput([0x41]); // wakes an idle loop, but must not end a pacer rest
  await sleep(100);
  assert.equal(m.stats().slices, rest.slices, 'no slice ran during the rest');
  while (m.stats().slices === rest.slices) await sleep(10);
  assert.ok(performance.now() - rest.at >= 990, 'the loop ran again only once the rest was over');
  m.setPacer(null);
  assert.equal(m.onlineHarts(), 1, 'builtin SBI: only the boot hart runs');
  m.stop();
});
